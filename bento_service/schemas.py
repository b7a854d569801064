"""Request and response models of the risk service, and the rules a request must follow.

Type rules (a number where a number belongs, finite values, sizes) live in the pydantic
types, so they also appear in the OpenAPI schema. Rules that depend on the served model
(which sensors, how many readings) are checked against the :class:`WindowContract` of the
loaded model, registered with :func:`set_contract` when the service starts. Every rule
violation is a pydantic error whose ``type`` names the rule and whose ``loc``/``msg`` name
the field, so BentoML answers it with HTTP 400 and a JSON body listing them.

This module must not import Dagster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:  # pandas and scipy stay out of BentoML's main process (cold start)
    from pdm_core.features import FeatureState

MAX_READINGS = int(os.environ.get("PDM_SERVE_MAX_READINGS", "1000"))
"""Most readings accepted in one machine's window."""
MAX_BATCH = int(os.environ.get("PDM_SERVE_MAX_BATCH", "5000"))
"""Most machines accepted in one ``/predict_batch`` call."""
MAX_VALUE = 1e12
"""Largest magnitude accepted for a reading: beyond it features overflow in float64 sums."""

Value = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_VALUE, le=MAX_VALUE)]
Name = Annotated[str, Field(min_length=1, max_length=128)]
RiskLevel = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]


@dataclass(frozen=True)
class WindowContract:
    """What one machine's window must contain for the served model.

    Attributes:
        sensors: Sensors the model reads (each reading needs all of them).
        ignored_sensors: Sensors known from training but unused (accepted, not required).
        settings: Operating settings each reading needs (regime derived from them).
        needs_regime: Each reading names its operating regime.
        needs_time_since_maintenance: Each reading gives ``time_since_maintenance``.
        categoricals: Categorical fields each reading needs.
        window_length: Fewest readings per window.
    """

    sensors: tuple[str, ...]
    ignored_sensors: tuple[str, ...]
    settings: tuple[str, ...]
    needs_regime: bool
    needs_time_since_maintenance: bool
    categoricals: tuple[str, ...]
    window_length: int

    @classmethod
    def of(cls, state: FeatureState) -> WindowContract:
        """The contract implied by a fitted feature definition."""
        return cls(
            sensors=tuple(state.sensors),
            ignored_sensors=tuple(state.dropped_sensors),
            settings=tuple(state.settings) if state.regime_rounding else (),
            needs_regime=not state.regime_rounding and len(state.regime_mean) > 1,
            needs_time_since_maintenance=state.use_time_since_maintenance,
            categoricals=tuple(state.categoricals),
            window_length=state.window_length,
        )


_contract: WindowContract | None = None


def set_contract(contract: WindowContract | None) -> None:
    """Registers the contract of the model being served (None clears it)."""
    global _contract
    _contract = contract


def current_contract() -> WindowContract | None:
    """The registered contract; None before a model is loaded."""
    return _contract


class Reading(BaseModel):
    """One reading of one machine."""

    model_config = ConfigDict(extra="forbid")

    cycle: int | None = Field(
        None, ge=0, le=2**53, description="Time step (cycle) number; give this or timestamp."
    )
    timestamp: datetime | None = Field(None, description="Wall-clock time (ISO 8601).")
    sensors: dict[Name, Value] = Field(
        min_length=1, max_length=256, description="Sensor name -> value."
    )
    settings: dict[Name, Value] = Field(
        default_factory=dict, max_length=64, description="Operating setting name -> value."
    )
    regime: Name | None = Field(None, description="Operating regime, where the model uses one.")
    time_since_maintenance: Value | None = Field(None, ge=0, description="Steps since service.")
    categories: dict[Name, Name] = Field(
        default_factory=dict, max_length=64, description="Categorical field -> level."
    )


def _fail(rule: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(rule, message)


def check_window(readings: list[Reading]) -> list[Reading]:
    """Applies the model-dependent rules to one machine's readings.

    Rules (the error ``type``): ``window_too_short``, ``ordering_key`` (every reading gives
    a cycle, or every reading a timestamp), ``unsorted``, ``duplicate_time``,
    ``missing_sensor``, ``unknown_sensor``, ``missing_setting``, ``missing_regime``,
    ``missing_time_since_maintenance``, ``missing_category``. Before a model is loaded
    they are not applied (the service answers 503 then, not a client error).
    """
    contract = current_contract()
    if contract is None:
        return readings
    if len(readings) < contract.window_length:
        raise _fail(
            "window_too_short",
            f"readings: {len(readings)} given, the model needs at least "
            f"{contract.window_length} (its longest feature window)",
        )
    cycles = [r.cycle for r in readings]
    if all(c is not None for c in cycles):
        order = np.asarray(cycles, dtype=np.float64)
        key = "cycle"
    else:
        stamps = [r.timestamp for r in readings]
        missing = [i for i, t in enumerate(stamps) if t is None]
        if missing:
            raise _fail(
                "ordering_key",
                f"readings[{missing[0]}] has no timestamp and not every reading has a cycle: "
                "every reading needs a cycle, or every reading a timestamp",
            )
        # Naive timestamps are read as UTC-less local times by datetime.timestamp(); only their
        # order matters here.
        order = np.asarray([t.timestamp() for t in stamps], dtype=np.float64)  # type: ignore[union-attr]
        key = "timestamp"
    steps = np.diff(order)
    if (steps == 0).any():
        i = int(np.argmax(steps == 0)) + 1
        raise _fail("duplicate_time", f"readings[{i}].{key} repeats readings[{i - 1}].{key}")
    if (steps < 0).any():
        i = int(np.argmax(steps < 0)) + 1
        raise _fail(
            "unsorted", f"readings[{i}].{key} is earlier than readings[{i - 1}].{key}; "
            "send readings oldest first",
        )  # fmt: skip
    required = set(contract.sensors)
    known = required | set(contract.ignored_sensors)
    for i, reading in enumerate(readings):
        names = reading.sensors.keys()
        if not required <= names:
            missing = sorted(required - names)
            raise _fail("missing_sensor", f"readings[{i}].sensors lacks {missing}")
        if not names <= known:
            unknown = sorted(names - known)
            raise _fail(
                "unknown_sensor",
                f"readings[{i}].sensors has {unknown}, unknown to the model "
                f"(known: {sorted(known)})",
            )
        if contract.settings and not set(contract.settings) <= reading.settings.keys():
            missing = sorted(set(contract.settings) - reading.settings.keys())
            raise _fail("missing_setting", f"readings[{i}].settings lacks {missing}")
        if contract.needs_regime and reading.regime is None:
            raise _fail("missing_regime", f"readings[{i}].regime is required by the model")
        if contract.needs_time_since_maintenance and reading.time_since_maintenance is None:
            raise _fail(
                "missing_time_since_maintenance",
                f"readings[{i}].time_since_maintenance is required by the model",
            )
        if contract.categoricals and not set(contract.categoricals) <= reading.categories.keys():
            missing = sorted(set(contract.categoricals) - reading.categories.keys())
            raise _fail("missing_category", f"readings[{i}].categories lacks {missing}")
    return readings


class MachineWindow(BaseModel):
    """One machine's most recent readings, oldest first."""

    model_config = ConfigDict(extra="forbid")

    machine_id: Name = Field(description="Machine identifier.")
    readings: list[Reading] = Field(
        min_length=1,
        max_length=MAX_READINGS,
        description="Readings oldest first; at least the model's window length.",
    )

    @field_validator("readings")
    @classmethod
    def _rules(cls, readings: list[Reading]) -> list[Reading]:
        return check_window(readings)


class FleetWindows(BaseModel):
    """Many machines' windows in one call."""

    model_config = ConfigDict(extra="forbid")

    machines: list[MachineWindow] = Field(
        min_length=1, max_length=MAX_BATCH, description="One window per machine."
    )

    @field_validator("machines")
    @classmethod
    def _unique(cls, machines: list[MachineWindow]) -> list[MachineWindow]:
        seen: set[str] = set()
        for i, window in enumerate(machines):
            if window.machine_id in seen:
                raise _fail(
                    "duplicate_machine",
                    f"machines[{i}].machine_id '{window.machine_id}' appears twice",
                )
            seen.add(window.machine_id)
        return machines


class Prediction(BaseModel):
    """The model's answer for one machine's latest reading."""

    machine_id: str
    failure_probability: float = Field(description="P(failure within the horizon).")
    risk_level: RiskLevel
    rul: float | None = Field(description="Remaining useful life (steps); null without RUL.")
    anomaly_score: float | None = Field(description="Reconstruction error; null without one.")
    anomaly_alert: bool = Field(description="anomaly_score is above the alert threshold.")
    model_name: str
    model_version: str


class FleetPredictions(BaseModel):
    """Predictions for each machine of a batch, in request order."""

    predictions: list[Prediction]
    model_name: str
    model_version: str


class ModelInfo(BaseModel):
    """What is being served."""

    model_name: str
    model_version: str
    alias: str | None
    training_data_version: str | None
    required_sensors: list[str]
    accepted_sensors: list[str]
    required_settings: list[str]
    requires_regime: bool
    requires_time_since_maintenance: bool
    required_categories: list[str]
    window_length: int
    max_readings: int
    max_batch: int
    risk_thresholds: dict[str, float]
    anomaly_threshold: float | None
    test_metrics: dict[str, float]
    components: dict[str, str]
