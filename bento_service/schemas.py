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

import itertools
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from bento_service.settings import serve_settings
from pdm_core.schema import REGIME, TIME_SINCE_MAINTENANCE

if TYPE_CHECKING:  # pandas and scipy stay out of BentoML's main process (cold start)
    from pdm_core.features import FeatureState

MAX_READINGS = serve_settings().max_readings
"""Most readings accepted in one machine's window (``PDM_SERVE_MAX_READINGS``)."""
MAX_BATCH = serve_settings().max_batch
"""Most machines accepted in one ``/predict_batch`` call (``PDM_SERVE_MAX_BATCH``)."""
ARROW_STREAM = "application/vnd.apache.arrow.stream"
"""``/predict_batch`` also takes the fleet's readings as an Arrow IPC stream (or file)."""
ARROW_MEDIA_TYPES = (ARROW_STREAM, "application/vnd.apache.arrow.file")
MAX_VALUE = 1e12
"""Largest magnitude accepted for a reading: beyond it features overflow in float64 sums."""

Value = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_VALUE, le=MAX_VALUE)]
Name = Annotated[str, Field(min_length=1, max_length=128)]
RiskLevel = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]


@dataclass(frozen=True)
class WindowContract:
    """What one machine's window must contain for the served model.

    Attributes:
        sensors: Sensors each reading needs: the model's, with a derived sensor's inputs in its
            place (the service computes derived sensors itself).
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

    @property
    def known_sensors(self) -> tuple[str, ...]:
        """Every sensor a reading may give: the model's and the ignored ones."""
        return (*self.sensors, *self.ignored_sensors)

    def first_missing(
        self,
        sensors: Collection[str],
        settings: Collection[str],
        categoricals: Collection[str],
        regime: bool,
        time_since_maintenance: bool,
    ) -> tuple[str, list[str]] | None:
        """The first input the model needs that is not given, as (rule, missing names).

        The one statement of these rules and their order, for every form a request takes
        (readings, columns, an Arrow table). None when nothing is missing.
        """
        needed = (
            ("missing_sensor", self.sensors, sensors),
            ("missing_setting", self.settings, settings),
            ("missing_regime", (REGIME,) if self.needs_regime else (), (REGIME,) * regime),
            (
                "missing_time_since_maintenance",
                (TIME_SINCE_MAINTENANCE,) if self.needs_time_since_maintenance else (),
                (TIME_SINCE_MAINTENANCE,) * time_since_maintenance,
            ),
            ("missing_category", self.categoricals, categoricals),
        )
        for rule, required, given in needed:
            absent = sorted(set(required) - set(given))
            if absent:
                return rule, absent
        return None

    @classmethod
    def of(cls, state: FeatureState) -> WindowContract:
        """The contract implied by a fitted feature definition.

        A reading carries the sensors derived ones are computed from, not the derived ones.
        """
        inputs = set(state.input_sensors)
        return cls(
            sensors=tuple(state.input_sensors),
            ignored_sensors=tuple(s for s in state.dropped_sensors if s not in inputs),
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


def _seconds(stamps: list[datetime]) -> list[float]:
    # Naive timestamps are read as UTC-less local times by datetime.timestamp(); only their
    # order matters here.
    return [t.timestamp() for t in stamps]


def _check_order(order: list[float] | list[int], where: Callable[[int], str]) -> None:
    """Rules ``duplicate_time`` and ``unsorted`` on the readings' order key."""
    if all(a < b for a, b in itertools.pairwise(order)):  # the common case, cheap in Python
        return
    steps = np.diff(np.asarray(order, dtype=np.float64))
    if (steps == 0).any():
        i = int(np.argmax(steps == 0)) + 1
        raise _fail("duplicate_time", f"{where(i)} repeats {where(i - 1)}")
    i = int(np.argmax(steps < 0)) + 1
    raise _fail(
        "unsorted", f"{where(i)} is earlier than {where(i - 1)}; send readings oldest first"
    )


def _check_too_short(count: int, contract: WindowContract, field: str) -> None:
    if count < contract.window_length:
        raise _fail(
            "window_too_short",
            f"{field}: {count} given, the model needs at least "
            f"{contract.window_length} (its longest feature window)",
        )


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
    _check_too_short(len(readings), contract, "readings")
    cycles = [r.cycle for r in readings]
    if all(c is not None for c in cycles):
        _check_order(cycles, lambda i: f"readings[{i}].cycle")  # type: ignore[arg-type]
    else:
        stamps = [r.timestamp for r in readings]
        missing = [i for i, t in enumerate(stamps) if t is None]
        if missing:
            raise _fail(
                "ordering_key",
                f"readings[{missing[0]}] has no timestamp and not every reading has a cycle: "
                "every reading needs a cycle, or every reading a timestamp",
            )
        _check_order(_seconds(stamps), lambda i: f"readings[{i}].timestamp")  # type: ignore[arg-type]
    required, known = frozenset(contract.sensors), frozenset(contract.known_sensors)
    settings, categoricals = frozenset(contract.settings), frozenset(contract.categoricals)
    regime, tsm = contract.needs_regime, contract.needs_time_since_maintenance
    for i, reading in enumerate(readings):
        if not (  # every rule holds (the common case); else find and name the broken one
            required <= reading.sensors.keys() <= known
            and settings <= reading.settings.keys()
            and categoricals <= reading.categories.keys()
            and not (regime and reading.regime is None)
            and not (tsm and reading.time_since_maintenance is None)
        ):
            _check_reading(reading, contract, i)
    return readings


def _check_reading(reading: Reading, contract: WindowContract, i: int) -> None:
    """The per-reading rules of :func:`check_window`, each raising with its name."""
    _check_inputs(
        contract, f"readings[{i}]", reading.sensors, reading.settings, reading.categories,
        regime=reading.regime is not None,
        time_since_maintenance=reading.time_since_maintenance is not None,
    )  # fmt: skip


_FIELDS = {
    "missing_sensor": "sensors",
    "missing_setting": "settings",
    "missing_category": "categories",
    "missing_regime": REGIME,
    "missing_time_since_maintenance": TIME_SINCE_MAINTENANCE,
}
"""The request field each missing-input rule names."""


def _check_inputs(
    contract: WindowContract,
    where: str,
    sensors: Collection[str],
    settings: Collection[str],
    categoricals: Collection[str],
    *,
    regime: bool,
    time_since_maintenance: bool,
) -> None:
    """Raises for the first missing input, or else for sensors unknown to the model.

    The missing-input rules are :meth:`WindowContract.first_missing`; ``where`` prefixes the
    field each message names.
    """
    missing = contract.first_missing(
        sensors, settings, categoricals, regime, time_since_maintenance
    )
    if missing is not None:
        rule, names = missing
        field = f"{where}.{_FIELDS[rule]}"
        if rule in ("missing_regime", "missing_time_since_maintenance"):
            raise _fail(rule, f"{field} is required by the model")
        raise _fail(rule, f"{field} lacks {names}")
    unknown = set(sensors) - set(contract.known_sensors)
    if unknown:
        raise _fail(
            "unknown_sensor",
            f"{where}.sensors has {sorted(unknown)}, unknown to the model "
            f"(known: {sorted(contract.known_sensors)})",
        )


Column = Annotated[list[Value], Field(max_length=MAX_READINGS)]


class WindowColumns(BaseModel):
    """One machine's readings as columns, oldest first: one list per field, all one length.

    The compact form of ``readings``: the same rules apply, and large batches parse several
    times faster.
    """

    model_config = ConfigDict(extra="forbid")

    cycle: list[Annotated[int, Field(ge=0, le=2**53)]] | None = Field(
        None, max_length=MAX_READINGS, description="Cycle of each reading; or timestamp."
    )
    timestamp: list[datetime] | None = Field(
        None, max_length=MAX_READINGS, description="Wall-clock time of each reading (ISO 8601)."
    )
    sensors: dict[Name, Column] = Field(
        min_length=1, max_length=256, description="Sensor name -> value of each reading."
    )
    settings: dict[Name, Column] = Field(
        default_factory=dict, max_length=64, description="Operating setting -> values."
    )
    regime: list[Name] | None = Field(
        None, max_length=MAX_READINGS, description="Operating regime of each reading."
    )
    time_since_maintenance: list[Annotated[Value, Field(ge=0)] | None] | None = Field(
        None, max_length=MAX_READINGS, description="Steps since service, per reading."
    )
    categories: dict[Name, Annotated[list[Name], Field(max_length=MAX_READINGS)]] = Field(
        default_factory=dict, max_length=64, description="Categorical field -> levels."
    )

    def __len__(self) -> int:
        return len(next(iter(self.sensors.values())))


def check_columns(columns: WindowColumns) -> WindowColumns:
    """The rules of :func:`check_window` for the columnar form, plus ``ragged_columns``.

    Every list must hold one value per reading (``ragged_columns`` otherwise, applied even
    before a model is loaded); the model-dependent rules then follow :func:`check_window`.
    """
    lengths = {f"columns.sensors.{k}": len(v) for k, v in columns.sensors.items()}
    lengths.update({f"columns.settings.{k}": len(v) for k, v in columns.settings.items()})
    lengths.update({f"columns.categories.{k}": len(v) for k, v in columns.categories.items()})
    for name in ("cycle", "timestamp", "regime", "time_since_maintenance"):
        values = getattr(columns, name)
        if values is not None:
            lengths[f"columns.{name}"] = len(values)
    first, count = next(iter(lengths.items()))
    for field, length in lengths.items():
        if length != count:
            raise _fail(
                "ragged_columns",
                f"{field} has {length} values, {first} has {count}: one value per reading",
            )
    contract = current_contract()
    if contract is None:
        return columns
    _check_too_short(count, contract, "columns")
    if columns.cycle is not None:
        _check_order(columns.cycle, lambda i: f"columns.cycle[{i}]")
    elif columns.timestamp is not None:
        _check_order(_seconds(columns.timestamp), lambda i: f"columns.timestamp[{i}]")
    else:
        raise _fail("ordering_key", "columns needs cycle or timestamp to order the readings")
    values = columns.time_since_maintenance
    _check_inputs(
        contract, "columns", columns.sensors, columns.settings, columns.categories,
        regime=columns.regime is not None, time_since_maintenance=values is not None,
    )  # fmt: skip
    if contract.needs_time_since_maintenance and values is not None and None in values:
        raise _fail(
            "missing_time_since_maintenance",
            f"columns.time_since_maintenance[{values.index(None)}] is required by the model",
        )
    return columns


class MachineWindow(BaseModel):
    """One machine's most recent readings, oldest first: ``readings`` or ``columns``."""

    model_config = ConfigDict(extra="forbid")

    machine_id: Name = Field(description="Machine identifier.")
    readings: list[Reading] | None = Field(
        None,
        min_length=1,
        max_length=MAX_READINGS,
        description="Readings oldest first; at least the model's window length.",
    )
    columns: WindowColumns | None = Field(
        None, description="The same readings as columns (give readings or columns)."
    )

    @field_validator("readings")
    @classmethod
    def _rules(cls, readings: list[Reading] | None) -> list[Reading] | None:
        return None if readings is None else check_window(readings)

    @field_validator("columns")
    @classmethod
    def _column_rules(cls, columns: WindowColumns | None) -> WindowColumns | None:
        return None if columns is None else check_columns(columns)

    @model_validator(mode="after")
    def _one_form(self) -> MachineWindow:
        if (self.readings is None) == (self.columns is None):
            raise _fail(
                "one_form", "give the window as readings or as columns, not both or neither"
            )
        return self


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
    rul_lower: float | None = Field(
        None, description="Lower end of the RUL prediction interval (model_info: its level)."
    )
    rul_upper: float | None = Field(None, description="Upper end of the RUL prediction interval.")
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
    derived_sensors: dict[str, str] = Field(
        default_factory=dict,
        description="Sensors the service computes from the required ones: name -> expression.",
    )
    required_settings: list[str]
    requires_regime: bool
    requires_time_since_maintenance: bool
    required_categories: list[str]
    window_length: int
    max_readings: int
    max_batch: int
    risk_thresholds: dict[str, float]
    rul_interval_level: float | None = Field(
        None, description="Nominal coverage of rul_lower..rul_upper (split-conformal)."
    )
    anomaly_threshold: float | None
    test_metrics: dict[str, float]
    components: dict[str, str]
