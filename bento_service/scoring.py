"""The served model: validated windows in, predictions out, with a self-test.

Features come from :func:`pdm_core.features.latest_window_features`, the pipeline's own
feature code on arrays (no pandas per request); predictions from
:class:`pdm_core.models.bundle.FleetModel` loaded with its serving runtime (numpy for the
networks, ONNX Runtime for the gradient-boosting models: neither TensorFlow nor scikit-learn).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bento_service.convert import arrays_from_windows, window_from_records
from bento_service.schemas import (
    MAX_BATCH,
    MAX_READINGS,
    MachineWindow,
    ModelInfo,
    Prediction,
    WindowContract,
    set_contract,
)
from pdm_core.features import WindowArrays, latest_window_features
from pdm_core.models.bundle import FleetModel

SELF_TEST_TOLERANCE = 1e-5
"""Largest self-test difference, as a share of each output's scale (1; RUL: its cap)."""


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
    columns: np.ndarray = field(init=False)
    """Positions of the model's input features among the feature definition's outputs."""

    def __post_init__(self) -> None:
        # One model per process: requests are validated against the model loaded last.
        self.contract = WindowContract.of(self.fleet.feature_state)
        set_contract(self.contract)
        names = {name: i for i, name in enumerate(self.fleet.feature_state.feature_names)}
        self.columns = np.array([names[f] for f in self.fleet.features], dtype=np.int64)

    @classmethod
    def from_bundle(cls, directory: Path, **identity: Any) -> ServedModel:
        """Loads a bundle directory with the serving runtime."""
        return cls(FleetModel.load(Path(directory), serving=True), **identity)

    def predict(self, windows: list[MachineWindow]) -> list[Prediction]:
        """Scores each window's latest reading; results follow the request order.

        Raises:
            OutOfRangeError: A window's values produce non-finite model outputs.
        """
        arrays = arrays_from_windows(windows, self.contract)
        return self.predict_arrays([w.machine_id for w in windows], arrays)

    def predict_arrays(self, machine_ids: list[str], arrays: WindowArrays) -> list[Prediction]:
        """Scores windows already in array form (one per machine id, in that order).

        Raises:
            OutOfRangeError: A window's values produce non-finite model outputs.
        """
        # Every value is already checked and typed: build the answers without re-validating.
        return [
            Prediction.model_construct(**row) for row in self.prediction_rows(machine_ids, arrays)
        ]

    def prediction_rows(self, machine_ids: list[str], arrays: WindowArrays) -> list[dict[str, Any]]:
        """:meth:`predict_arrays` as plain dicts (the fields of :class:`Prediction`).

        Raises:
            OutOfRangeError: A window's values produce non-finite model outputs.
        """
        features = latest_window_features(arrays, self.fleet.feature_state)
        scored = self.fleet.score(features[:, self.columns])
        probability = scored["failure_probability"]
        if not np.isfinite(probability).all():
            bad = machine_ids[int(np.argmin(np.isfinite(probability)))]
            raise OutOfRangeError(
                f"machine_id '{bad}': readings drive the model out of its numeric range"
            )
        rows = zip(
            machine_ids,
            probability.tolist(),
            scored["risk_level"].tolist(),
            scored["rul"].tolist(),
            scored["rul_lower"].tolist(),
            scored["rul_upper"].tolist(),
            scored["anomaly_score"].tolist(),
            scored["anomaly_alert"].tolist(),
            strict=True,
        )
        name, version = self.name, self.version
        return [
            {
                "machine_id": machine_id,
                "failure_probability": p,
                "risk_level": level,
                "rul": r if math.isfinite(r) else None,
                "rul_lower": low if math.isfinite(low) else None,
                "rul_upper": high if math.isfinite(high) else None,
                "anomaly_score": a if math.isfinite(a) else None,
                "anomaly_alert": bool(alert),
                "model_name": name,
                "model_version": version,
            }
            for machine_id, p, level, r, low, high, a, alert in rows
        ]

    def self_test(self) -> Prediction:
        """Scores the example window stored with the model through the request path.

        Returns:
            The prediction for the example.

        Raises:
            SelfTestError: No example, or outputs differ from the stored ones by more than
                :data:`SELF_TEST_TOLERANCE` of their scale (or another risk level): the
                serving runtimes sum trees in float32 (:mod:`pdm_core.models.tree_export`).
        """
        example = self.fleet.example
        if not example:
            raise SelfTestError("the model bundle carries no self-test example window")
        body = window_from_records(example["readings"], self.contract)
        window = MachineWindow.model_validate(body)
        got = self.predict([window])[0]
        want = example["expected"]
        regressor = self.fleet.components.get("rul_regressor")
        scale = {"rul": float(regressor.extra.get("rul_cap", 1.0)) if regressor else 1.0}
        for key in ("failure_probability", "rul", "anomaly_score"):
            a, b = getattr(got, key), want.get(key)
            a = np.nan if a is None else a
            b = np.nan if b is None else b
            tolerance = SELF_TEST_TOLERANCE * max(1.0, scale.get(key, 1.0))
            if not np.isclose(a, b, rtol=0.0, atol=tolerance, equal_nan=True):
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
            accepted_sensors=sorted(set(self.contract.known_sensors)),
            derived_sensors=dict(fleet.feature_state.derived),
            required_settings=list(self.contract.settings),
            requires_regime=self.contract.needs_regime,
            requires_time_since_maintenance=self.contract.needs_time_since_maintenance,
            required_categories=list(self.contract.categoricals),
            window_length=self.contract.window_length,
            max_readings=MAX_READINGS,
            max_batch=MAX_BATCH,
            risk_thresholds=dict(fleet.thresholds.__dict__),
            rul_interval_level=fleet.rul_interval.level if fleet.rul_interval else None,
            anomaly_threshold=float(detector.extra["threshold"]) if detector else None,
            test_metrics={k: float(v) for k, v in metrics.items() if v == v},
            components={kind: c.name for kind, c in fleet.components.items()},
        )
