"""Candidate models, tracked in MLflow: TensorFlow/Keras networks and scikit-learn baselines.

Each candidate asset trains one component on the ``training_set`` train split (early stopping
and thresholds on validation), logs params, per-epoch metrics, the component, the feature
list, the feature definition and its thresholds to one MLflow run, and registers it as
``pdm-<candidate>`` in the model registry. TensorFlow is imported inside the asset bodies only.
"""

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from pdm_core import metrics
from pdm_core.features import FeatureState
from pdm_core.models import training
from pdm_core.models.data import ModelData, TrainingDataError, model_data
from pdm_core.models.operating import choose_operating_values
from pdm_core.models.trained import TrainedModel
from pdm_core.models.training import EnsembleParams, Trainer, TrainingParams
from pdm_resources.mlflow_tracking import MlflowTracking

GROUP = "models"
COMPONENT_ARTIFACT = "component"


class TrainingSettings(dg.Config):
    """Hyperparameters of every candidate (same defaults for all data sources)."""

    seed: int = Field(42, description="Random seed (numpy, Python, TensorFlow).")
    epochs: int = Field(40, description="Maximum epochs of the networks.")
    batch_size: int = Field(256, description="Mini-batch size.")
    learning_rate: float = Field(1e-3, description="Adam learning rate.")
    patience: int = Field(6, description="Early-stopping patience (epochs).")
    rul_cap: float = Field(125.0, description="Cap of the piecewise-linear RUL target.")
    anomaly_quantile: float = Field(0.99, description="Healthy validation quantile = alert.")
    boosting_iterations: int = Field(300, description="Max iterations of the baselines.")

    def params(self) -> TrainingParams:
        """As :class:`TrainingParams`."""
        return TrainingParams(**self.model_dump())


class EnsembleSettings(TrainingSettings):
    """The averaged RUL regressor's settings (see :class:`EnsembleParams`).

    ``epochs``, ``batch_size`` and ``hidden`` are its network member's. Defaults were chosen
    on validation engines only (``benchmarks/select_rul_ensemble.py``).
    """

    epochs: int = Field(100, description="Maximum epochs of the network member.")
    batch_size: int = Field(128, description="Mini-batch size of the network member.")
    hidden: list[int] = Field([128, 64], description="Hidden widths of the network member.")
    member_stats: list[str] = Field(
        ["mean", "slope"], description="Window statistics the members read; [] reads all."
    )
    network_weight: float = Field(0.5, description="Networks' weight in the average (0-1).")
    network_members: int = Field(3, description="Networks (different seeds) sharing the weight.")

    def params(self) -> EnsembleParams:
        """As :class:`EnsembleParams`."""
        values = self.model_dump()
        values["member_stats"] = tuple(values["member_stats"])
        values["hidden"] = tuple(values["hidden"])
        return EnsembleParams(**values)


def load_component(tracking: MlflowTracking, run_id: str) -> TrainedModel:
    """Downloads a candidate's component from its MLflow run and loads it."""
    import mlflow

    tracking.activate()
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=COMPONENT_ARTIFACT)
    return TrainedModel.load(Path(local))


def validation_metrics(model: TrainedModel, data: ModelData) -> dict[str, float]:
    """Validation metrics used to pick components (at the model's operating threshold)."""
    split = data.validation
    score = model.predict(split.X)
    if model.kind == "risk_classifier":
        found = metrics.classification_metrics(split.label, score, model.extra["threshold"])
        return {k: found[k] for k in (*metrics.CLASSIFIER_METRICS, "threshold")}
    if model.kind == "rul_regressor":
        cap = float(model.extra["rul_cap"])
        return metrics.rul_metrics(split.rul.clip(max=cap), score)
    return {"threshold": float(model.extra["threshold"])}


def _log_history(history: dict[str, list[float]]) -> None:
    import mlflow
    from mlflow.entities import Metric

    now = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
    # "epoch_" keeps per-epoch curves apart from the final val_* metrics of the chosen weights.
    batch = [
        Metric(f"epoch_{key}", float(v), now, step)
        for key, values in history.items()
        for step, v in enumerate(values)
    ]
    for i in range(0, len(batch), 900):
        mlflow.MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=batch[i : i + 900])


def _register_candidate(model: TrainedModel) -> str:
    """Logs the component as a pyfunc model with a signature and registers a new version."""
    import mlflow
    from mlflow.models import infer_signature

    class _Component(mlflow.pyfunc.PythonModel):
        def load_context(self, context: Any) -> None:
            self.model = TrainedModel.load(Path(context.artifacts["component"]))

        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            return self.model.predict(model_input[self.model.features].to_numpy())

    with tempfile.TemporaryDirectory() as tmp:
        directory = model.save(Path(tmp) / "component")
        example = pd.DataFrame([[0.0] * len(model.features)], columns=model.features)
        signature = infer_signature(example, model.predict(example.to_numpy()))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=_Component(),
            artifacts={"component": str(directory)},
            signature=signature,
            code_paths=[str(Path(__file__).resolve().parents[1] / "pdm_core")],
            pip_requirements=requirements(),
            registered_model_name=f"pdm-{model.name}",
        )
    return str(info.registered_model_version)


def requirements() -> list[str]:
    """Pinned pip requirements of the logged pyfunc models (the installed versions)."""
    from importlib.metadata import version

    names = ("numpy", "pandas", "scikit-learn", "scipy", "tensorflow", "mlflow")
    return [f"{name}=={version(name)}" for name in names]


def train_candidate(
    context: dg.AssetExecutionContext,
    tracking: MlflowTracking,
    name: str,
    train: Trainer,
    params: TrainingParams,
    training_set: pd.DataFrame,
    feature_state: dict,
    data_version: str,
) -> dg.Output[dict]:
    """Trains one candidate inside an MLflow run and registers it."""
    import mlflow

    state = FeatureState.from_dict(feature_state)
    data = model_data(training_set, state.feature_names)
    tracking.activate()
    with mlflow.start_run(run_name=name) as run:
        mlflow.set_tags(
            {
                "pdm.candidate": name,
                "pdm.data_version": data_version,
                "dagster.run_id": context.run_id,
                "dagster.asset": context.asset_key.to_user_string(),
            }
        )

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            shown = ", ".join(f"{k}={v:.4f}" for k, v in logs.items())
            context.log.info(f"{name} epoch {epoch + 1}: {shown}")

        try:
            model = train(data, params, on_epoch)
        except TrainingDataError as error:
            mlflow.set_tag("pdm.skipped", str(error))
            context.log.warning(f"{name} not trained: {error}")
            return dg.Output(
                {"name": name, "skipped": str(error)}, metadata={"skipped": str(error)}
            )
        mlflow.log_params(model.params)
        _log_history(model.history)
        choose_operating_values(model, data)
        val = validation_metrics(model, data)
        mlflow.log_metrics({f"val_{k}": v for k, v in val.items() if v == v})
        mlflow.log_dict({"features": model.features}, "features.json")
        mlflow.log_text(state.to_json(), "feature_state.json")
        mlflow.log_dict(model.extra, "thresholds.json")
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.log_artifacts(str(model.save(Path(tmp) / "c")), COMPONENT_ARTIFACT)
        version = _register_candidate(model)
        run_url = (
            f"{tracking.tracking_uri} experiment {run.info.experiment_id} run {run.info.run_id}"
        )
    epochs = len(next(iter(model.history.values()), []))
    return dg.Output(
        {
            "name": name,
            "kind": model.kind,
            "framework": model.framework,
            "run_id": run.info.run_id,
            "registered_model": f"pdm-{name}",
            "version": version,
            "validation": val,
            "data_version": data_version,
        },
        metadata={
            "mlflow_run_id": run.info.run_id,
            "mlflow_run": run_url,
            "registered_model": f"pdm-{name} v{version}",
            "epochs_or_iterations": epochs,
            "validation_metrics": dg.MetadataValue.json(val),
            "params": dg.MetadataValue.json(json.loads(json.dumps(model.params, default=str))),
        },
    )


def _candidate_asset(  # type: ignore[no-untyped-def]
    name: str, description: str, train: Trainer, settings: type[TrainingSettings] = TrainingSettings
):
    """An asset that trains one candidate with ``train(data, params, on_epoch)``.

    ``settings`` is its run configuration class: ``train`` gets its ``params()`` with the
    data source's horizon.
    """

    @dg.asset(name=name, group_name=GROUP, description=description)
    def _asset(
        context: dg.AssetExecutionContext,
        config: settings,  # type: ignore[valid-type]
        mlflow_tracking: MlflowTracking,
        training_set: pd.DataFrame,
        feature_state: dict,
        dataset_info: dict,
    ) -> dg.Output[dict]:
        return train_candidate(
            context, mlflow_tracking, name, train, candidate_params(config, dataset_info),
            training_set, feature_state, training_data_version(context),
        )  # fmt: skip

    return _asset


def candidate_params(config: TrainingSettings, dataset_info: dict) -> TrainingParams:
    """The run's hyperparameters with the data source's label horizon."""
    horizon = int(dataset_info.get("horizon") or 30)
    return dataclasses.replace(config.params(), horizon=horizon)


def training_data_version(context: dg.AssetExecutionContext) -> str:
    """Data version of the training set this run read (tag on every MLflow run)."""
    record = context.instance.get_latest_materialization_event(dg.AssetKey("training_set"))
    if record is None or record.asset_materialization is None:
        return ""
    value = record.asset_materialization.metadata.get("data_version")
    return str(getattr(value, "value", value) or "")


risk_classifier_keras = _candidate_asset(
    "risk_classifier_keras",
    "TensorFlow/Keras MLP: probability of failure within the horizon; class-weighted, "
    "early-stopped on validation PR-AUC.",
    training.train_risk_classifier_keras,
)
rul_regressor_keras = _candidate_asset(
    "rul_regressor_keras",
    "TensorFlow/Keras MLP: remaining useful life, piecewise-linear target capped at rul_cap.",
    training.train_rul_regressor_keras,
)
anomaly_detector_keras = _candidate_asset(
    "anomaly_detector_keras",
    "TensorFlow/Keras autoencoder trained on healthy readings only; alert threshold from a "
    "validation quantile. Works without failure labels.",
    training.train_anomaly_detector_keras,
)
risk_classifier_sklearn = _candidate_asset(
    "risk_classifier_sklearn",
    "scikit-learn HistGradientBoosting baseline for the failure risk (class-balanced).",
    training.train_risk_classifier_sklearn,
)
rul_regressor_sklearn = _candidate_asset(
    "rul_regressor_sklearn",
    "scikit-learn HistGradientBoosting baseline for the capped RUL.",
    training.train_rul_regressor_sklearn,
)


rul_regressor_ensemble = _candidate_asset(
    "rul_regressor_ensemble",
    "Average of a scikit-learn HistGradientBoosting and a Keras MLP RUL regressor, both "
    "trained here on the window means and slopes (plus the non-window columns); weights fixed "
    "by config, chosen on validation engines. Served without TensorFlow (numpy export).",
    training.train_rul_regressor_ensemble,
    EnsembleSettings,
)

CANDIDATES = (
    "risk_classifier_keras",
    "risk_classifier_sklearn",
    "rul_regressor_keras",
    "rul_regressor_sklearn",
    "rul_regressor_ensemble",
    "anomaly_detector_keras",
)
"""Every candidate asset, in the order evaluation reports them."""
CANDIDATE_INS = {name: dg.AssetIn(name) for name in CANDIDATES}
"""The candidates as inputs of an asset that takes them all (as ``**candidates``)."""


def test_split(training_set: pd.DataFrame, feature_state: dict) -> ModelData:
    """Model matrices of the training set (the test split is what evaluation uses)."""
    return model_data(training_set, FeatureState.from_dict(feature_state).feature_names)


def last_cycle_protocol(dataset_info: dict) -> bool:
    """C-MAPSS is scored at each test engine's last cycle; other sources on every test row."""
    return str(dataset_info.get("name", "")).startswith("cmapss/")


def readings_per_day(dataset_info: dict) -> float:
    """Readings per machine-day (simulator: from its interval; cycles: one per day)."""
    return float(dataset_info.get("extra", {}).get("readings_per_day", 1.0))
