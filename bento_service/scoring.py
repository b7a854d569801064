"""The served model: validated windows in, predictions out, with a self-test.

Features come from :func:`pdm_core.features.compute_latest_features`, the pipeline's own
feature code; predictions from :class:`pdm_core.models.bundle.FleetModel` loaded with its
serving runtime (numpy for the networks, no TensorFlow).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bento_service.convert import frame_from_windows, window_from_frame
from bento_service.schemas import (
    MAX_BATCH,
    MAX_READINGS,
    MachineWindow,
    ModelInfo,
    Prediction,
    WindowContract,
    set_contract,
)
from pdm_core.features import compute_latest_features
from pdm_core.models.bundle import FleetModel

SELF_TEST_TOLERANCE = 1e-5


class SelfTestError(RuntimeError):
    """The loaded model does not reproduce the outputs stored with it."""


class OutOfRangeError(ValueError):
    """Inputs valid by the schema drove the model to non-finite outputs."""


@dataclass
class ServedModel:
    """A fleet model ready to answer requests.

    Attributes:
        fleet: The loaded fleet model (serving runtime).
        name: Registered model name.
        version: Registry version (or BentoML model version) being served.
        alias: Registry alias it was resolved from, if any.
        source: Where it was loaded from (for ``/model_info`` and logs).
    """

    fleet: FleetModel
    name: str
    version: str
    alias: str | None = None
    source: str = ""
    contract: WindowContract = field(init=False)

    def __post_init__(self) -> None:
        # One model per process: requests are validated against the model loaded last.
        self.contract = WindowContract.of(self.fleet.feature_state)
        set_contract(self.contract)

    @classmethod
    def from_bundle(cls, directory: Path, **identity: Any) -> ServedModel:
        """Loads a bundle directory with the serving runtime."""
        return cls(FleetModel.load(Path(directory), serving=True), **identity)

    def predict(self, windows: list[MachineWindow]) -> list[Prediction]:
        """Scores each window's latest reading; results follow the request order.

        Raises:
            OutOfRangeError: A window's values produce non-finite model outputs.
        """
        frame = frame_from_windows(windows, self.contract)
        features = compute_latest_features(frame, self.fleet.feature_state)
        scored = self.fleet.predict(features)
        scored.index = features["machine_id"].to_numpy()
        scored = scored.loc[[w.machine_id for w in windows]]
        probability = scored["failure_probability"].to_numpy()
        if not np.isfinite(probability).all():
            bad = scored.index[~np.isfinite(probability)][0]
            raise OutOfRangeError(
                f"machine_id '{bad}': readings drive the model out of its numeric range"
            )
        rul = scored["rul"].to_numpy()
        anomaly = scored["anomaly_score"].to_numpy()
        return [
            Prediction(
                machine_id=machine,
                failure_probability=float(p),
                risk_level=level,
                rul=float(r) if np.isfinite(r) else None,
                anomaly_score=float(a) if np.isfinite(a) else None,
                anomaly_alert=bool(alert),
                model_name=self.name,
                model_version=self.version,
            )
            for machine, p, level, r, a, alert in zip(
                scored.index,
                probability,
                scored["risk_level"],
                rul,
                anomaly,
                scored["anomaly_alert"],
                strict=True,
            )
        ]

    def self_test(self) -> Prediction:
        """Scores the example window stored with the model through the request path.

        Returns:
            The prediction for the example.

        Raises:
            SelfTestError: No example, or outputs differ from the stored ones by more than
                :data:`SELF_TEST_TOLERANCE` (or another risk level).
        """
        example = self.fleet.example
        if not example:
            raise SelfTestError("the model bundle carries no self-test example window")
        readings = pd.DataFrame.from_records(example["readings"])
        window = MachineWindow.model_validate(window_from_frame(readings, self.contract))
        got = self.predict([window])[0]
        want = example["expected"]
        for key in ("failure_probability", "rul", "anomaly_score"):
            a, b = getattr(got, key), want.get(key)
            a = np.nan if a is None else a
            b = np.nan if b is None else b
            if not np.isclose(a, b, rtol=0.0, atol=SELF_TEST_TOLERANCE, equal_nan=True):
                raise SelfTestError(f"self-test {key}: served {a!r}, model stored {b!r}")
        if got.risk_level != want["risk_level"]:
            raise SelfTestError(f"self-test risk_level: {got.risk_level} vs {want['risk_level']}")
        return got

    def info(self) -> ModelInfo:
        """What ``/model_info`` answers."""
        fleet = self.fleet
        detector = fleet.components.get("anomaly_detector")
        metrics = fleet.info.get("test_metrics", {})
        return ModelInfo(
            model_name=self.name,
            model_version=self.version,
            alias=self.alias,
            training_data_version=fleet.info.get("data_version") or None,
            required_sensors=list(self.contract.sensors),
            accepted_sensors=sorted({*self.contract.sensors, *self.contract.ignored_sensors}),
            required_settings=list(self.contract.settings),
            requires_regime=self.contract.needs_regime,
            requires_time_since_maintenance=self.contract.needs_time_since_maintenance,
            required_categories=list(self.contract.categoricals),
            window_length=self.contract.window_length,
            max_readings=MAX_READINGS,
            max_batch=MAX_BATCH,
            risk_thresholds=dict(fleet.thresholds.__dict__),
            anomaly_threshold=float(detector.extra["threshold"]) if detector else None,
            test_metrics={k: float(v) for k, v in metrics.items() if v == v},
            components={kind: c.name for kind, c in fleet.components.items()},
        )
