"""The fleet model candidate, the champion/challenger decision, and the champion alias.

``fleet_model_candidate`` bundles the best classifier and RUL regressor (chosen on
validation: a baseline that beats the network is chosen, an honest outcome) with the anomaly
detector and the feature definition, registers it as a new version of ``pdm-fleet-model`` and
compares it with the current ``champion`` **on the same test data**. Its blocking check
``not_worse_than_champion`` fails when the candidate is worse, so nothing downstream (the
alias, packaging) runs with a worse model. ``champion_model`` moves the alias when the
candidate won.
"""

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from pdm_assets.metadata import check_result
from pdm_assets.models import (
    GROUP,
    last_cycle_protocol,
    load_component,
    requirements,
    test_split,
    training_data_version,
)
from pdm_core import metrics, schema
from pdm_core.drift_inputs import reference_sample
from pdm_core.features import FeatureState, compute_features
from pdm_core.models.bundle import FleetModel, RiskThresholds, make_example, pyfunc_model
from pdm_core.models.data import ModelData, SplitData
from pdm_core.models.direction import check_directions, sample_windows
from pdm_core.models.evaluation import rul_protocol_rows
from pdm_core.models.trained import TrainedModel
from pdm_core.promotion import PromotionDecision, PromotionPolicy, decide
from pdm_core.registry import download_bundle
from pdm_resources.mlflow_tracking import CHAMPION, MlflowTracking


class PromotionSettings(dg.Config):
    """Champion/challenger policy and the risk-level cut-offs of the served model."""

    primary: str = Field("pr_auc", description="Metric the challenger must beat.")
    guards: list[str] = Field(["rmse", "roc_auc"], description="Metrics that must not regress.")
    min_improvement: float = Field(0.0, description="Margin the primary must win by.")
    guard_tolerance: float = Field(0.02, description="Relative regression allowed on guards.")
    risk_medium: float = Field(0.2, description="Probability from which risk is MEDIUM.")
    risk_high: float = Field(0.5, description="Probability from which risk is HIGH.")
    risk_critical: float = Field(0.8, description="Probability from which risk is CRITICAL.")

    def policy(self) -> PromotionPolicy:
        """As :class:`PromotionPolicy`."""
        return PromotionPolicy(
            primary=self.primary,
            guards=tuple(self.guards),
            min_improvement=self.min_improvement,
            guard_tolerance=self.guard_tolerance,
        )


def bundle_metrics(bundle: FleetModel, data: ModelData, last_cycle: bool) -> dict[str, float]:
    """Test metrics of a fleet model: classifier metrics plus RUL metrics (protocol rows)."""
    test = data.test
    scored = bundle.predict(pd.DataFrame(test.X, columns=data.features))
    threshold = float(bundle.components["risk_classifier"].extra.get("threshold", 0.5))
    result = metrics.classification_metrics(test.label, scored["failure_probability"], threshold)
    if "rul_regressor" in bundle.components and np.isfinite(test.rul).all():
        cap = float(bundle.components["rul_regressor"].extra["rul_cap"])
        rows = rul_protocol_rows(test, last_cycle)
        result.update(
            metrics.rul_metrics(np.minimum(test.rul[rows], cap), scored["rul"].to_numpy()[rows])
        )
    return result


def direction_checks(
    candidates: dict[str, dict],
    component: Callable[[str], TrainedModel],
    state: FeatureState,
    data: ModelData,
    raw_telemetry: pd.DataFrame,
    dataset_info: dict,
) -> dict[str, list[dict]]:
    """Direction check (:mod:`pdm_core.models.direction`) of every risk classifier candidate.

    Runs on validation machines' windows near failure (RUL up to 10 horizons), for the sensors
    the source declares in ``extra["risk_rising"]``; none declared, no check.

    Returns:
        Candidate name -> one result dict per declared sensor.
    """
    rising = (dataset_info.get("extra") or {}).get("risk_rising") or {}
    names = [
        n
        for n, c in candidates.items()
        if c.get("kind") == "risk_classifier" and not c.get("skipped")
    ]
    if not rising or not names:
        return {}
    horizon = dataset_info.get("horizon")
    windows = sample_windows(
        raw_telemetry, data.validation.keys, data.validation.rul, state.window_length,
        max_rul=10.0 * horizon if horizon else np.inf,
    )  # fmt: skip
    if not windows:
        return {}
    steps = {sensor: float(step) for sensor, step in rising.items()}
    return {
        name: [r.to_dict() for r in check_directions(component(name), state, windows, steps)]
        for name in names
    }


def _best(candidates: dict[str, dict], kind: str, metric: str) -> str | None:
    usable = [c for c in candidates.values() if c.get("kind") == kind and not c.get("skipped")]
    if not usable:
        return None
    higher = metrics.HIGHER_IS_BETTER[metric]
    chosen = sorted(usable, key=lambda c: c["validation"][metric], reverse=higher)[0]
    return str(chosen["name"])


def load_fleet_model(
    tracking: MlflowTracking, alias: str = CHAMPION, serving: bool = False
) -> tuple[FleetModel, Any]:
    """Loads the fleet model that holds ``alias`` (and its drift reference); raises if none does.

    Args:
        tracking: The MLflow resource.
        alias: Registry alias.
        serving: Use the numpy runtime of Keras networks (no TensorFlow import).
    """
    tracking.activate()
    directory, version = download_bundle(tracking.tracking_uri, tracking.registered_model, alias)
    return FleetModel.load(directory, serving=serving, with_reference=True), version


def champion_test_matrix(
    champion: FleetModel, raw_telemetry: pd.DataFrame, data: ModelData
) -> ModelData:
    """The current test rows, featurised with the champion's own feature definition."""
    keys = data.test.keys
    machines = set(keys["machine_id"].astype(str))
    raw = raw_telemetry[raw_telemetry["machine_id"].astype(str).isin(machines)]
    features = compute_features(raw, champion.feature_state)
    features["machine_id"] = features["machine_id"].astype(str)
    aligned = keys.astype({"machine_id": str}).merge(
        features, on=["machine_id", "cycle"], how="left"
    )
    X = aligned[champion.features].to_numpy(dtype=np.float32)
    test = SplitData(X=X, label=data.test.label, rul=data.test.rul, keys=keys)
    return ModelData(list(champion.features), data.train, data.validation, test)


@dg.asset(
    group_name=GROUP,
    check_specs=[
        dg.AssetCheckSpec(
            "not_worse_than_champion", asset="fleet_model_candidate", blocking=True,
            description="On the same test data the candidate beats the champion on the primary "
            "metric without regressing a guard, or ties with it (same model retrained).",
        )
    ],
)  # fmt: skip
def fleet_model_candidate(
    context: dg.AssetExecutionContext,
    config: PromotionSettings,
    mlflow_tracking: MlflowTracking,
    model_evaluation: dict,
    training_set: pd.DataFrame,
    feature_state: dict,
    dataset_info: dict,
    raw_telemetry: pd.DataFrame,
    risk_classifier_keras: dict,
    risk_classifier_sklearn: dict,
    rul_regressor_keras: dict,
    rul_regressor_sklearn: dict,
    rul_regressor_ensemble: dict,
    anomaly_detector_keras: dict,
):  # type: ignore[no-untyped-def]
    """Best components bundled, registered, and judged against the champion."""
    import mlflow

    candidates = {
        c["name"]: c
        for c in (
            risk_classifier_keras,
            risk_classifier_sklearn,
            rul_regressor_keras,
            rul_regressor_sklearn,
            rul_regressor_ensemble,
            anomaly_detector_keras,
        )
    }
    state = FeatureState.from_dict(feature_state)
    data = test_split(training_set, feature_state)
    loaded: dict[str, TrainedModel] = {}

    def component(name: str) -> TrainedModel:
        if name not in loaded:
            loaded[name] = load_component(mlflow_tracking, candidates[name]["run_id"])
        return loaded[name]

    directions = direction_checks(candidates, component, state, data, raw_telemetry, dataset_info)
    failed = {n for n, results in directions.items() if not all(r["passed"] for r in results)}
    if failed:
        context.log.warning(f"risk classifiers failing the direction check: {sorted(failed)}")
    eligible = {n: c for n, c in candidates.items() if n not in failed}
    if not any(c.get("kind") == "risk_classifier" for c in eligible.values()):
        context.log.warning("every risk classifier fails the direction check; choosing among all")
        eligible = candidates
    chosen = {
        "risk_classifier": _best(eligible, "risk_classifier", "pr_auc"),
        "rul_regressor": _best(candidates, "rul_regressor", "rmse"),
        "anomaly_detector": None
        if anomaly_detector_keras.get("skipped")
        else str(anomaly_detector_keras["name"]),
    }
    if chosen["risk_classifier"] is None:
        raise ValueError("no risk classifier was trained; see the candidate assets' logs")
    components = {kind: component(name) for kind, name in chosen.items() if name is not None}
    thresholds = RiskThresholds(config.risk_medium, config.risk_high, config.risk_critical)
    bundle = FleetModel(
        state, components, thresholds, info={"chosen": chosen, "direction_checks": directions}
    )
    last_cycle = last_cycle_protocol(dataset_info)
    challenger = bundle_metrics(bundle, data, last_cycle)
    bundle.info.update(data_version=training_data_version(context), test_metrics=challenger)
    bundle.example = example_window(bundle, raw_telemetry, data)
    bundle.reference = reference_sample(training_set, state)

    client = mlflow_tracking.client()
    champion_metrics: dict[str, float] | None = None
    champion_version = None
    try:
        champion, version = load_fleet_model(mlflow_tracking)
        champion_version = str(version.version)
        champion_data = champion_test_matrix(champion, raw_telemetry, data)
        champion_metrics = bundle_metrics(champion, champion_data, last_cycle)
    except mlflow.exceptions.MlflowException as error:
        context.log.info(f"no current champion ({error.error_code})")
    policy = applicable_policy(config.policy(), challenger)
    decision = decide(challenger, champion_metrics, policy)
    tie = _ties(decision, policy)

    with mlflow.start_run(run_name="fleet_model") as run:
        mlflow.set_tags({**decision.to_tags(), "dagster.run_id": context.run_id,
                         "pdm.chosen": str(chosen)})  # fmt: skip
        mlflow.log_metrics({f"test_{k}": v for k, v in challenger.items() if v == v})
        with tempfile.TemporaryDirectory() as tmp:
            directory = bundle.save(Path(tmp) / "bundle")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=pyfunc_model(),
                artifacts={"bundle": str(directory)},
                code_paths=[str(Path(__file__).resolve().parents[1] / "pdm_core")],
                pip_requirements=requirements(),
                registered_model_name=mlflow_tracking.registered_model,
            )
    version = str(info.registered_model_version)
    for key, value in decision.to_tags().items():
        client.set_model_version_tag(mlflow_tracking.registered_model, version, key, value)
    context.log.info(f"fleet model v{version}: {decision.reason}")
    yield dg.Output(
        {
            "version": version,
            "run_id": run.info.run_id,
            "promote": decision.promote,
            "tie": tie,
            "reason": decision.reason,
            "champion_version": champion_version,
            "test": challenger,
            "chosen": chosen,
            "direction_checks": directions,
        },
        metadata={
            "registered_model": f"{mlflow_tracking.registered_model} v{version}",
            "decision": "promote" if decision.promote else ("tie" if tie else "reject"),
            "reason": decision.reason,
            "chosen_components": dg.MetadataValue.json(chosen),
            "direction_checks": dg.MetadataValue.json(directions),
            "challenger_test_metrics": dg.MetadataValue.json(challenger),
            "champion_test_metrics": dg.MetadataValue.json(champion_metrics or {}),
            "champion_version": champion_version or "none",
        },
    )
    primary = config.primary
    yield check_result(
        "not_worse_than_champion", decision.promote or tie,
        observed=challenger.get(primary), threshold=(champion_metrics or {}).get(primary),
        reason=decision.reason, champion_version=champion_version or "none",
    )  # fmt: skip


def example_window(bundle: FleetModel, raw_telemetry: pd.DataFrame, data: ModelData) -> dict:
    """The bundle's self-test example: the first test machine's last full window."""
    counts = raw_telemetry[schema.MACHINE].astype(str).value_counts()
    test_machines = data.test.keys[schema.MACHINE].astype(str).unique()
    for machine in test_machines:
        if counts.get(machine, 0) >= bundle.feature_state.window_length:
            return make_example(bundle, raw_telemetry, machine)
    raise ValueError("no test machine has a full feature window to serve as self-test example")


def applicable_policy(policy: PromotionPolicy, challenger: dict[str, float]) -> PromotionPolicy:
    """Drops guards the data cannot measure (no RUL labels: no ``rmse``).

    A guard that was measured but came out NaN stays, and the decision names it.
    """
    guards = tuple(g for g in policy.guards if g in challenger)
    return PromotionPolicy(policy.primary, guards, policy.min_improvement, policy.guard_tolerance)


def _ties(decision: PromotionDecision, policy: PromotionPolicy) -> bool:
    """Same primary value as the champion and no guard regression (e.g. a seeded retrain)."""
    if decision.champion is None or decision.promote:
        return False
    a = decision.challenger.get(policy.primary)
    b = decision.champion.get(policy.primary)
    same = a is not None and b is not None and abs(a - b) <= 1e-9 * max(1.0, abs(b))
    return bool(same and not decision.regressions)


@dg.asset(group_name=GROUP)
def champion_model(
    context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking, fleet_model_candidate: dict
) -> dg.Output[dict]:
    """Moves the ``champion`` alias to the candidate when it won; otherwise keeps it."""
    client = mlflow_tracking.client()
    name = mlflow_tracking.registered_model
    previous = fleet_model_candidate.get("champion_version")
    if fleet_model_candidate["promote"]:
        client.set_registered_model_alias(name, CHAMPION, fleet_model_candidate["version"])
        current = fleet_model_candidate["version"]
        context.log.info(f"{name}@{CHAMPION}: v{previous} -> v{current}")
    else:
        current = previous
        context.log.info(f"{name}@{CHAMPION} stays v{current}: {fleet_model_candidate['reason']}")
    return dg.Output(
        {"version": current, "previous": previous, "promoted": fleet_model_candidate["promote"]},
        metadata={
            "champion": f"{name}@{CHAMPION} = v{current}",
            "previous": f"v{previous}" if previous else "none",
            "reason": fleet_model_candidate["reason"],
        },
    )
