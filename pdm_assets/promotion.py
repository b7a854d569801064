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
    CANDIDATE_INS,
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
from pdm_core.promotion import (
    PromotionDecision,
    PromotionPolicy,
    applicable_policy,
    choose_components,
    decide,
    ties,
)
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
    ins=CANDIDATE_INS,
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
    **candidates: dict,
):  # type: ignore[no-untyped-def]
    """Best components bundled, registered, and judged against the champion."""
    state = FeatureState.from_dict(feature_state)
    data = test_split(training_set, feature_state)
    bundle = assemble_bundle(
        context, config, mlflow_tracking, candidates, state, data, raw_telemetry, dataset_info
    )
    bundle.reference = reference_sample(training_set, state)
    last_cycle = last_cycle_protocol(dataset_info)
    challenger = bundle.info["test_metrics"]
    champion_version, champion_metrics = champion_on_same_test(
        context, mlflow_tracking, raw_telemetry, data, last_cycle
    )
    policy = applicable_policy(config.policy(), challenger)
    decision = decide(challenger, champion_metrics, policy)
    tie = ties(decision, policy)
    version, run_id = register_bundle(context, mlflow_tracking, bundle, decision)
    chosen, directions = bundle.info["chosen"], bundle.info["direction_checks"]
    yield dg.Output(
        {
            "version": version,
            "run_id": run_id,
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


def assemble_bundle(
    context: dg.AssetExecutionContext,
    config: PromotionSettings,
    mlflow_tracking: MlflowTracking,
    candidates: dict[str, dict],
    state: FeatureState,
    data: ModelData,
    raw_telemetry: pd.DataFrame,
    dataset_info: dict,
) -> FleetModel:
    """The fleet model of the chosen components, with its test metrics and self-test example.

    Risk classifiers are direction-checked first (:func:`direction_checks`); the choice itself
    is :func:`pdm_core.promotion.choose_components`.
    """
    loaded: dict[str, TrainedModel] = {}

    def component(name: str) -> TrainedModel:
        if name not in loaded:
            loaded[name] = load_component(mlflow_tracking, candidates[name]["run_id"])
        return loaded[name]

    directions = direction_checks(candidates, component, state, data, raw_telemetry, dataset_info)
    failed = {n for n, results in directions.items() if not all(r["passed"] for r in results)}
    if failed:
        context.log.warning(f"risk classifiers failing the direction check: {sorted(failed)}")
    chosen = choose_components(candidates, failed)
    if chosen["risk_classifier"] in failed:
        context.log.warning("every risk classifier fails the direction check; choosing among all")
    components = {kind: component(name) for kind, name in chosen.items() if name is not None}
    thresholds = RiskThresholds(config.risk_medium, config.risk_high, config.risk_critical)
    horizon = dataset_info.get("horizon")
    info = {"chosen": chosen, "direction_checks": directions, "horizon": horizon}
    bundle = FleetModel(state, components, thresholds, info=info)
    test_metrics = bundle_metrics(bundle, data, last_cycle_protocol(dataset_info))
    bundle.info.update(data_version=training_data_version(context), test_metrics=test_metrics)
    bundle.example = example_window(bundle, raw_telemetry, data)
    return bundle


def champion_on_same_test(
    context: dg.AssetExecutionContext,
    mlflow_tracking: MlflowTracking,
    raw_telemetry: pd.DataFrame,
    data: ModelData,
    last_cycle: bool,
) -> tuple[str | None, dict[str, float] | None]:
    """The current champion's version and its metrics on the candidate's test rows.

    The champion is featurised with its own feature definition. ``(None, None)`` when there
    is no champion yet.
    """
    import mlflow

    try:
        champion, version = load_fleet_model(mlflow_tracking)
    except mlflow.exceptions.MlflowException as error:
        context.log.info(f"no current champion ({error.error_code})")
        return None, None
    champion_data = champion_test_matrix(champion, raw_telemetry, data)
    return str(version.version), bundle_metrics(champion, champion_data, last_cycle)


def register_bundle(
    context: dg.AssetExecutionContext,
    mlflow_tracking: MlflowTracking,
    bundle: FleetModel,
    decision: PromotionDecision,
) -> tuple[str, str]:
    """Logs the bundle as an MLflow pyfunc model and registers it; returns (version, run id).

    The decision is recorded as tags on both the run and the model version.
    """
    import mlflow

    with mlflow.start_run(run_name="fleet_model") as run:
        mlflow.set_tags({**decision.to_tags(), "dagster.run_id": context.run_id,
                         "pdm.chosen": str(bundle.info["chosen"])})  # fmt: skip
        test_metrics = bundle.info["test_metrics"]
        mlflow.log_metrics({f"test_{k}": v for k, v in test_metrics.items() if v == v})
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
    client = mlflow_tracking.client()
    for key, value in decision.to_tags().items():
        client.set_model_version_tag(mlflow_tracking.registered_model, version, key, value)
    context.log.info(f"fleet model v{version}: {decision.reason}")
    return version, run.info.run_id


def example_window(bundle: FleetModel, raw_telemetry: pd.DataFrame, data: ModelData) -> dict:
    """The bundle's self-test example: the first test machine's last full window."""
    counts = raw_telemetry[schema.MACHINE].astype(str).value_counts()
    test_machines = data.test.keys[schema.MACHINE].astype(str).unique()
    for machine in test_machines:
        if counts.get(machine, 0) >= bundle.feature_state.window_length:
            return make_example(bundle, raw_telemetry, machine)
    raise ValueError("no test machine has a full feature window to serve as self-test example")


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
