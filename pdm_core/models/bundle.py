"""The fleet model: feature definition + risk classifier + RUL regressor + anomaly detector.

This is what the registry's ``champion`` alias points to and what the service will load. It is
a directory (``bundle.json``, ``feature_state.json`` and one sub-directory per component),
logged to MLflow as a pyfunc model whose input is feature rows.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pdm_core import schema
from pdm_core.alerts import RiskAlertRule
from pdm_core.features import FeatureState, compute_window_features
from pdm_core.models.rul_interval import RulInterval
from pdm_core.models.trained import TrainedModel

if TYPE_CHECKING:  # pandas stays out of the service's workers (cold start)
    import pandas as pd

RISK_LEVELS = schema.RISK_LEVELS
COMPONENTS = ("risk_classifier", "rul_regressor", "anomaly_detector")
REFERENCE_FILE = "drift_reference.parquet"


@dataclass(frozen=True)
class RiskThresholds:
    """Probability cut-offs between LOW | MEDIUM | HIGH | CRITICAL."""

    medium: float = 0.2
    high: float = 0.5
    critical: float = 0.8

    def __post_init__(self) -> None:
        if not 0.0 < self.medium < self.high < self.critical < 1.0:
            raise ValueError(
                f"risk thresholds must satisfy 0 < medium < high < critical < 1: {self}"
            )

    def level(self, probability: np.ndarray) -> np.ndarray:
        """Risk level per probability."""
        edges = np.array([self.medium, self.high, self.critical])
        return np.array(RISK_LEVELS, dtype=object)[np.searchsorted(edges, probability, "right")]


@dataclass
class FleetModel:
    """The three components and the feature definition they were trained on."""

    feature_state: FeatureState
    components: dict[str, TrainedModel]
    thresholds: RiskThresholds = field(default_factory=RiskThresholds)
    info: dict[str, Any] = field(default_factory=dict)
    example: dict[str, Any] | None = None
    """A real window of canonical readings (``readings``: list of records) with the outputs
    this model gave for it (``expected``), so a serving runtime can check itself at start."""
    reference: pd.DataFrame | None = None
    """A sample of the training rows' drift features (see :mod:`pdm_core.drift_inputs`)."""

    def __post_init__(self) -> None:
        missing = [c for c in ("risk_classifier",) if c not in self.components]
        if missing:
            raise ValueError(f"a fleet model needs components {missing}")

    @property
    def horizon(self) -> int | None:
        """The label horizon (readings) the risk classifier was trained for, where recorded."""
        value = self.info.get("horizon")
        return int(value) if value else None

    @property
    def alert_rule(self) -> RiskAlertRule:
        """When this model's scores raise a high-risk alert (RUL gate from its horizon)."""
        return RiskAlertRule.for_horizon(self.horizon)

    @property
    def rul_interval(self) -> RulInterval | None:
        """The RUL regressor's prediction interval, where it has one."""
        regressor = self.components.get("rul_regressor")
        if regressor is None or "rul_interval" not in regressor.extra:
            return None
        return RulInterval.from_dict(regressor.extra["rul_interval"])

    @property
    def features(self) -> list[str]:
        """Feature columns the components read."""
        return self.components["risk_classifier"].features

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Scores feature rows (output of ``compute_features``).

        Returns:
            One row per input row with :data:`pdm_core.schema.SCORE_COLUMNS` (``rul`` and
            anomaly columns are NaN / False when the bundle has no such component).
        """
        missing = [c for c in self.features if c not in features.columns]
        if missing:
            raise ValueError(f"feature rows lack {len(missing)} column(s), e.g. {missing[:5]}")
        import pandas as pd

        return pd.DataFrame(self.score(features[self.features].to_numpy(dtype=np.float32)))

    def score(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Scores a feature matrix (columns in :attr:`features` order), without pandas.

        Returns:
            :data:`pdm_core.schema.SCORE_COLUMNS` -> one value per row (``rul`` and anomaly
            values are NaN / False when the bundle has no such component).
        """
        X = np.asarray(X, dtype=np.float32)
        probability = self.components["risk_classifier"].predict(X)
        n = len(X)
        rul = (
            self.components["rul_regressor"].predict(X)
            if "rul_regressor" in self.components
            else np.full(n, np.nan)
        )
        interval = self.rul_interval
        low, high = interval.bounds(rul) if interval else (np.full(n, np.nan),) * 2
        detector = self.components.get("anomaly_detector")
        score = detector.predict(X) if detector else np.full(n, np.nan)
        alert = score > detector.extra["threshold"] if detector else np.zeros(n, dtype=bool)
        return {
            "failure_probability": probability,
            "risk_level": self.thresholds.level(probability),
            "rul": rul,
            "rul_lower": low,
            "rul_upper": high,
            "anomaly_score": score,
            "anomaly_alert": alert,
        }

    def save(self, directory: Path) -> Path:
        """Writes the bundle directory (replacing an existing one)."""
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        (directory / "feature_state.json").write_text(self.feature_state.to_json())
        meta = {
            "components": sorted(self.components),
            "thresholds": self.thresholds.__dict__,
            "info": self.info,
        }
        (directory / "bundle.json").write_text(json.dumps(meta, indent=1, default=str))
        if self.example is not None:
            (directory / "example.json").write_text(json.dumps(self.example, default=str))
        if self.reference is not None:
            self.reference.to_parquet(directory / REFERENCE_FILE, index=False)
        for kind, component in self.components.items():
            component.save(directory / kind)
        return directory

    @classmethod
    def load(
        cls, directory: Path, serving: bool = False, with_reference: bool | None = None
    ) -> FleetModel:
        """Reads a bundle written by :meth:`save`.

        Args:
            directory: The bundle directory.
            serving: Use the numpy runtime of Keras networks (no TensorFlow import); see
                :meth:`TrainedModel.load`.
            with_reference: Read the drift reference too (default: unless ``serving``).
        """
        if with_reference is None:
            with_reference = not serving
        if with_reference:
            import pandas as pd
        directory = Path(directory)
        meta = json.loads((directory / "bundle.json").read_text())
        example = directory / "example.json"
        reference = directory / REFERENCE_FILE
        return cls(
            feature_state=FeatureState.from_json((directory / "feature_state.json").read_text()),
            components={
                k: TrainedModel.load(directory / k, serving=serving) for k in meta["components"]
            },
            thresholds=RiskThresholds(**meta["thresholds"]),
            info=meta.get("info", {}),
            example=json.loads(example.read_text()) if example.exists() else None,
            reference=pd.read_parquet(reference) if with_reference and reference.exists() else None,
        )


def make_example(
    model: FleetModel, telemetry: pd.DataFrame, machine_id: str, end_cycle: int | None = None
) -> dict[str, Any]:
    """A self-test example: one machine's last full window and the model's outputs for it.

    Args:
        model: The fleet model.
        telemetry: Canonical telemetry containing the machine.
        machine_id: Machine to take the window from.
        end_cycle: Last cycle of the window (default: the machine's last reading).

    Returns:
        ``{"machine_id", "readings": [records], "expected": {output: value}}``.
    """
    rows = telemetry[telemetry[schema.MACHINE].astype(str) == str(machine_id)]
    if end_cycle is not None:
        rows = rows[rows[schema.CYCLE] <= end_cycle]
    window = rows.tail(model.feature_state.window_length)
    scored = model.predict(compute_window_features(window, model.feature_state)).iloc[0]
    expected = {k: (v.item() if hasattr(v, "item") else v) for k, v in scored.items()}
    readings = window.drop(columns=list(schema.LABEL_COLUMNS), errors="ignore")
    readings = readings.assign(**{schema.MACHINE: readings[schema.MACHINE].astype(str)})
    return {
        "machine_id": str(machine_id),
        "readings": json.loads(readings.to_json(orient="records", date_format="iso")),
        "expected": expected,
    }


def pyfunc_model() -> Any:
    """Returns the MLflow ``PythonModel`` wrapper class (mlflow imported lazily)."""
    import mlflow.pyfunc

    class FleetPyfunc(mlflow.pyfunc.PythonModel):
        """MLflow wrapper: feature rows in, risk/RUL/anomaly out."""

        def load_context(self, context: Any) -> None:
            self.model = FleetModel.load(Path(context.artifacts["bundle"]))

        def predict(
            self, context: Any, model_input: pd.DataFrame, params: Any = None
        ) -> pd.DataFrame:
            return self.model.predict(model_input)

    return FleetPyfunc()
