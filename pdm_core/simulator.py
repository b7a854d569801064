"""Fleet simulator: the built-in data source.

A fleet of rotating machines (pumps, motors) sampled at a fixed interval. Each machine runs
through a sequence of component lifecycles. In every lifecycle one failure mode degrades the
machine along an accelerating curve ``damage = (age / life) ** shape`` (shape > 1), which shows up
in the sensors that mode affects. A lifecycle ends either in a failure (damage reaches 1) or in
preventive maintenance before the last ``horizon`` steps; both reset health. Machines switch
between operating regimes, which move every sensor's baseline, and every reading carries noise.

Labels per reading:

* ``rul``: steps until the installed component reaches end of life (0 on the failing reading).
  For a lifecycle cut short by maintenance this is the life it would have had.
* ``failure_within_h``: 1 when a failure happens within ``horizon`` steps (``rul <= horizon``
  and the lifecycle really ends in failure; maintenance is only ever done earlier than that, so
  the label equals ``rul <= horizon`` on every row).
* ``failure_mode``: the failure mode of the degradation under way.

Everything is vectorised with numpy: millions of readings per second on one core. The same
seed gives the same fleet, bit for bit.

**Resuming.** :func:`simulate_states` also returns where every machine stands after its last
reading (:class:`MachineStates`: the installed component's life, age, planned end, failure
mode and damage curve, and the machine's calibration offsets). Passed back as ``resume``, a
later simulation continues those machines exactly: the component under way keeps ageing to
its planned failure or maintenance, and new draws (later components, regimes, noise) come from
the later simulation's seed. The simulator feed uses this so that landed batches continue the
source's machines reading for reading, as a real fleet's telemetry does.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from pdm_core import schema

SENSORS: tuple[str, ...] = (
    "vibration",
    "temperature",
    "pressure",
    "rotational_speed",
    "motor_current",
)
"""Sensor columns, in units of mm/s, degC, bar, rpm and A."""

FAILURE_MODES: tuple[str, ...] = ("bearing_wear", "overheating", "seal_leak")
FAILURE_MODE_PROBABILITIES: tuple[float, ...] = (0.4, 0.35, 0.25)

REGIMES: tuple[str, ...] = ("low_load", "nominal", "high_load")
REGIME_PROBABILITIES: tuple[float, ...] = (0.25, 0.5, 0.25)
NEW_REGIME = "overload"
"""Regime that only appears when drift injects a new operating regime."""

# Set points per regime: rotational speed (rpm) and relative load.
_REGIME_SPEED = {"low_load": 1200.0, "nominal": 1800.0, "high_load": 2400.0, NEW_REGIME: 3000.0}
_REGIME_LOAD = {"low_load": 0.5, "nominal": 1.0, "high_load": 1.4, NEW_REGIME: 1.9}

# Noise standard deviation per sensor (same order as SENSORS).
_NOISE_SD = np.array([0.15, 0.8, 0.08, 8.0, 0.4])

# Effect of full damage (damage = 1) of each failure mode on each sensor (rows: modes in
# FAILURE_MODES order; columns: SENSORS order).
_MODE_EFFECT = np.array(
    [
        [4.0, 6.0, 0.0, -15.0, 1.5],  # bearing_wear: vibration up, some heat and current
        [0.6, 28.0, 0.0, 0.0, 5.0],  # overheating: temperature and current up
        [0.3, 3.0, -1.6, -60.0, 2.5],  # seal_leak: pressure and speed down, current up
    ]
)

SENSOR_RANGES: dict[str, tuple[float, float]] = {
    "vibration": (0.0, 50.0),
    "temperature": (-40.0, 250.0),
    "pressure": (0.0, 25.0),
    "rotational_speed": (0.0, 6_000.0),
    "motor_current": (0.0, 250.0),
}
"""Physically plausible range of each sensor; values outside mean a broken sensor or feed."""

DEFAULT_INTERACTIONS: tuple[tuple[str, str], ...] = (
    ("vibration", "temperature"),
    ("temperature", "motor_current"),
    ("pressure", "motor_current"),
)
"""Sensor pairs whose co-movement the features track for simulated data."""


@dataclass(frozen=True)
class DriftSpec:
    """Drift injected into a simulated batch (all off by default).

    Attributes:
        sensor_bias: Additive bias per sensor, in sensor units (e.g. a recalibration).
        noise_scale: Multiplier on every sensor's noise standard deviation.
        new_regime: When True, machines also run in the unseen ``"overload"`` regime.
        degradation_rate: Multiplier on wear speed (2.0 halves component lives).
    """

    sensor_bias: dict[str, float] = field(default_factory=dict)
    noise_scale: float = 1.0
    new_regime: bool = False
    degradation_rate: float = 1.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sensor_bias) - set(SENSORS))
        if unknown:
            raise ValueError(f"sensor_bias names unknown sensors {unknown}; known: {SENSORS}")
        if self.noise_scale <= 0:
            raise ValueError(f"noise_scale must be > 0, got {self.noise_scale}")
        if self.degradation_rate <= 0:
            raise ValueError(f"degradation_rate must be > 0, got {self.degradation_rate}")

    @property
    def active(self) -> bool:
        """True when any drift is injected."""
        return bool(
            any(self.sensor_bias.values())
            or self.noise_scale != 1.0
            or self.new_regime
            or self.degradation_rate != 1.0
        )


@dataclass(frozen=True)
class SimulatorConfig:
    """Configuration of a simulated fleet.

    Attributes:
        n_machines: Number of machines in the fleet.
        n_steps: Readings per machine.
        seed: Random seed; the same seed gives the same fleet.
        horizon: Horizon H of the ``failure_within_h`` label, in steps.
        mean_life: Median component life in steps.
        maintenance_probability: Chance that a lifecycle ends in preventive maintenance.
        noise: Multiplier on all sensor noise.
        start: Timestamp of step 0.
        interval_minutes: Minutes between readings.
        first_step: Step number of the first reading (to continue a fleet in a later batch).
        machine_prefix: Machine ids are ``f"{machine_prefix}{i:03d}"``.
        drift: Drift to inject.
    """

    n_machines: int = 40
    n_steps: int = 2_000
    seed: int = 42
    horizon: int = 30
    mean_life: float = 450.0
    maintenance_probability: float = 0.3
    noise: float = 1.0
    start: str = "2026-01-01T00:00:00"
    interval_minutes: int = 10
    first_step: int = 0
    machine_prefix: str = "M"
    drift: DriftSpec = field(default_factory=DriftSpec)

    def __post_init__(self) -> None:
        if self.n_machines < 1 or self.n_steps < 1:
            raise ValueError("n_machines and n_steps must be >= 1")
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.mean_life < 4 * self.horizon:
            raise ValueError(
                f"mean_life ({self.mean_life}) must be at least 4 x horizon ({self.horizon})"
            )
        if not 0.0 <= self.maintenance_probability < 1.0:
            raise ValueError("maintenance_probability must be in [0, 1)")

    def with_drift(self, drift: DriftSpec) -> SimulatorConfig:
        """Returns a copy with ``drift`` injected."""
        return replace(self, drift=drift)


def dataset_info(config: SimulatorConfig) -> schema.DatasetInfo:
    """Describes the columns of :func:`simulate` output."""
    return schema.DatasetInfo(
        name="simulator",
        sensors=SENSORS,
        ordered=True,
        has_rul=True,
        horizon=config.horizon,
        extra={
            "seed": config.seed,
            "n_machines": config.n_machines,
            "n_steps": config.n_steps,
            "drift_active": config.drift.active,
            "interactions": [list(pair) for pair in DEFAULT_INTERACTIONS],
            "sensor_ranges": {name: list(bounds) for name, bounds in SENSOR_RANGES.items()},
            "readings_per_day": 24 * 60 / config.interval_minutes,
            # Sensors whose rise means wear, with a clear rise (about 10 noise sd) that must
            # not lower a risk classifier's output (pdm_core.models.direction).
            "risk_rising": {"vibration": 1.5, "temperature": 10.0},
        },
    )


@dataclass
class _Lifecycles:
    """Flat arrays describing every (possibly truncated) lifecycle in the run."""

    machine: np.ndarray  # machine index of the lifecycle
    life: np.ndarray  # full life (steps from new to failure)
    age0: np.ndarray  # age of the component at the lifecycle's first reading
    used: np.ndarray  # readings of the lifecycle inside the simulated window
    fails: np.ndarray  # True when the lifecycle ends in failure
    mode: np.ndarray  # failure-mode index
    shape: np.ndarray  # exponent of the damage curve
    end: np.ndarray  # age after the lifecycle's last reading (its life, or the maintenance cut)


@dataclass(frozen=True)
class MachineStates:
    """Each machine's state after a simulation's last reading (index = machine number).

    Attributes:
        life: Life of the installed component.
        age: The component's age at the next reading; equal to ``end`` when the last reading
            was the component's last (the next reading starts a new one).
        end: Age after the component's last reading (its life, or a maintenance cut).
        fails: Whether the component's lifecycle ends in failure.
        mode: Failure-mode index of the component's degradation.
        shape: Exponent of its damage curve.
        offset: The machine's calibration offset per sensor, shape ``(machines, sensors)``.
        regime: Index of the machine's operating regime at its last reading (in
            :data:`REGIMES`, then the drift's new regime).
    """

    life: np.ndarray
    age: np.ndarray
    end: np.ndarray
    fails: np.ndarray
    mode: np.ndarray
    shape: np.ndarray
    offset: np.ndarray
    regime: np.ndarray


def _draw_lifecycles(
    config: SimulatorConfig, rng: np.random.Generator, resume: MachineStates | None = None
) -> _Lifecycles:
    """Draws enough lifecycles per machine to cover ``n_steps`` readings.

    With ``resume``, each machine's first lifecycle is the component under way there (or a new
    one, from age 0, where that component's last reading was the previous one).
    """
    m, n = config.n_machines, config.n_steps
    h = config.horizon
    min_life = 3 * h + 10
    mean_life = config.mean_life / config.drift.degradation_rate
    # The shortest possible lifecycle lasts >= 0.3 * its life (maintenance cut) and lives are
    # >= 0.4 * mean_life, so k lifecycles always cover n steps.
    k = int(np.ceil(n / max(0.12 * mean_life, 0.3 * min_life))) + 2
    life = np.clip(mean_life * rng.lognormal(0.0, 0.3, size=(m, k)), 0.4 * mean_life, None)
    life = np.maximum(np.rint(life), min_life).astype(np.int64)
    shape = rng.uniform(1.6, 3.2, size=(m, k))
    mode = rng.choice(len(FAILURE_MODES), size=(m, k), p=FAILURE_MODE_PROBABILITIES)
    maintained = rng.random((m, k)) < config.maintenance_probability
    # Maintenance happens between 30% of life and the last reading before the final horizon,
    # so a maintained lifecycle never has a reading with rul <= horizon.
    cut_frac = rng.uniform(0.3, 1.0, size=(m, k))
    latest_cut = life - h - 2
    cut = np.minimum(np.maximum(np.rint(cut_frac * latest_cut), 1), latest_cut).astype(np.int64)
    new_cut = cut[:, 0].copy()  # a first component that starts new (resumed machines)
    # The first component of every machine is already part-way through its life.
    age0 = np.zeros((m, k), dtype=np.int64)
    age0[:, 0] = np.floor(rng.uniform(0.0, 0.6, size=m) * life[:, 0]).astype(np.int64)
    # The first component's maintenance, if any, falls after its age at the first reading.
    room = np.maximum(latest_cut[:, 0] - age0[:, 0] - 1, 0)
    cut[:, 0] = age0[:, 0] + 1 + np.floor(cut_frac[:, 0] * room).astype(np.int64)
    end = np.where(maintained, cut, life)  # age after the lifecycle's last reading
    fails = ~maintained
    fails[:, 0] |= end[:, 0] == life[:, 0]
    if resume is not None:
        arrays = {"life": life, "age0": age0, "end": end, "fails": fails, "mode": mode,
                  "shape": shape}  # fmt: skip
        _resume_first(resume, arrays, maintained, new_cut)
    length = end - age0
    starts = np.cumsum(length, axis=1) - length
    if not np.all(starts[:, -1] + length[:, -1] >= n):  # pragma: no cover - guarded by k
        raise RuntimeError("internal error: lifecycles do not cover the simulated window")
    keep = starts < n
    used = np.minimum(length, n - starts)
    return _Lifecycles(
        machine=np.broadcast_to(np.arange(m)[:, None], (m, k))[keep],
        life=life[keep],
        age0=age0[keep],
        used=used[keep],
        fails=fails[keep],
        mode=mode[keep],
        shape=shape[keep],
        end=end[keep],
    )


def _resume_first(
    resume: MachineStates,
    lifecycles: dict[str, np.ndarray],
    maintained: np.ndarray,
    new_cut: np.ndarray,
) -> None:
    """Replaces each machine's first lifecycle (column 0 of the arrays, in place).

    Machines whose component has readings left continue it; the others (their component ended
    with the previous reading) start a new one at age 0, maintained at ``new_cut`` or failing as
    drawn, like every later lifecycle.
    """
    life, age0, end = lifecycles["life"], lifecycles["age0"], lifecycles["end"]
    if len(resume.age) != life.shape[0]:
        raise ValueError(f"resume holds {len(resume.age)} machines, the simulation {life.shape[0]}")
    going = resume.age < resume.end
    fresh_end = np.where(maintained[:, 0], new_cut, life[:, 0])
    life[:, 0] = np.where(going, resume.life, life[:, 0])
    for name in ("mode", "shape"):
        lifecycles[name][:, 0] = np.where(going, getattr(resume, name), lifecycles[name][:, 0])
    age0[:, 0] = np.where(going, resume.age, 0)
    end[:, 0] = np.where(going, resume.end, fresh_end)
    lifecycles["fails"][:, 0] = np.where(going, resume.fails, end[:, 0] == life[:, 0])


def _continue_regimes(
    regime: np.ndarray, n_machines: int, resume: MachineStates, known: int
) -> None:
    """Keeps each machine in its resumed regime until its first drawn change (in place)."""
    per_machine = regime.reshape(n_machines, -1)
    n = per_machine.shape[1]
    change = per_machine[:, 1:] != per_machine[:, :-1]
    first_change = np.where(change.any(axis=1), change.argmax(axis=1) + 1, n)
    keep = (np.arange(n)[None, :] < first_change[:, None]) & (resume.regime < known)[:, None]
    per_machine[keep] = np.broadcast_to(resume.regime[:, None], per_machine.shape)[keep]


def _end_states(
    lc: _Lifecycles, n_machines: int, offset: np.ndarray, regime: np.ndarray
) -> MachineStates:
    """Each machine's state after its last simulated reading."""
    last = np.cumsum(np.bincount(lc.machine, minlength=n_machines)) - 1
    return MachineStates(
        life=lc.life[last].copy(),
        age=lc.age0[last] + lc.used[last],
        end=lc.end[last].copy(),
        fails=lc.fails[last].copy(),
        mode=lc.mode[last].copy(),
        shape=lc.shape[last].copy(),
        offset=offset.copy(),
        regime=regime.reshape(n_machines, -1)[:, -1].copy(),
    )


def _draw_regimes(
    config: SimulatorConfig, rng: np.random.Generator, total: int
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Draws regime segments (mean length 120 steps) over the concatenated fleet timeline."""
    names = REGIMES + ((NEW_REGIME,) if config.drift.new_regime else ())
    probs = np.array(REGIME_PROBABILITIES, dtype=float)
    if config.drift.new_regime:
        probs = np.append(probs * 0.6, 0.4)
    mean_segment = 120.0
    n_seg = int(total / mean_segment * 1.5) + 16
    seg_len = np.maximum(rng.geometric(1.0 / mean_segment, size=n_seg), 1)
    while seg_len.sum() < total:  # pragma: no cover - astronomically unlikely
        seg_len = np.append(seg_len, rng.geometric(1.0 / mean_segment, size=n_seg))
    seg_regime = rng.choice(len(names), size=seg_len.size, p=probs / probs.sum())
    regime = np.repeat(seg_regime, seg_len)[:total]
    return regime.astype(np.int8), names


def simulate(config: SimulatorConfig | None = None) -> pd.DataFrame:
    """Simulates a fleet and returns it as a canonical telemetry frame.

    Args:
        config: Fleet configuration; defaults to :class:`SimulatorConfig()`.

    Returns:
        Frame sorted by (machine_id, cycle) with the columns described in
        :mod:`pdm_core.schema`; ``machine_id``, ``regime`` and ``failure_mode`` are
        categoricals of strings.
    """
    return simulate_states(config)[0]


def simulate_states(
    config: SimulatorConfig | None = None, resume: MachineStates | None = None
) -> tuple[pd.DataFrame, MachineStates]:
    """Simulates a fleet, continuing ``resume``'s machines; also returns where they end.

    Args:
        config: Fleet configuration; ``first_step`` should follow the resumed simulation's
            last step for the cycles and timestamps to continue too.
        resume: The machines' states after an earlier simulation (see :class:`MachineStates`);
            ``None`` starts every machine part-way through a first component.

    Returns:
        The frame (as :func:`simulate`) and each machine's state after its last reading.
    """
    config = config or SimulatorConfig()
    rng = np.random.default_rng(config.seed)
    m, n = config.n_machines, config.n_steps
    total = m * n

    lc = _draw_lifecycles(config, rng, resume)
    lc_index = np.repeat(np.arange(lc.used.size), lc.used)
    lc_first_row = np.cumsum(lc.used) - lc.used
    offset = np.arange(total, dtype=np.int64) - np.repeat(lc_first_row, lc.used)
    age = lc.age0[lc_index] + offset
    life = lc.life[lc_index]
    rul = (life - 1 - age).astype(np.float64)
    damage = ((age + 1) / life) ** lc.shape[lc_index]
    mode = lc.mode[lc_index]
    failure_within_h = (lc.fails[lc_index] & (rul <= config.horizon)).astype(np.int8)

    regime, regime_names = _draw_regimes(config, rng, total)
    if resume is not None:
        _continue_regimes(regime, m, resume, len(regime_names))
    speed = np.array([_REGIME_SPEED[r] for r in regime_names])[regime]
    load = np.array([_REGIME_LOAD[r] for r in regime_names])[regime]

    # Per-machine calibration offsets (a fleet is never perfectly uniform).
    machine_offset = rng.normal(0.0, 0.25, size=(m, len(SENSORS))) * _NOISE_SD * 2.0
    if resume is not None:
        machine_offset = resume.offset
    machine_of_row = np.repeat(np.arange(m), n)

    # Sensor-major layout: each sensor's column is contiguous, so the frame needs no copy.
    values = np.empty((len(SENSORS), total), dtype=np.float64)
    values[0] = 1.0 + 0.6 * load
    values[1] = 45.0 + 15.0 * load
    values[2] = 3.0 + 2.0 * load
    values[3] = speed
    values[4] = 10.0 + 12.0 * load
    wear = damage * (0.7 + 0.3 * load)
    noise_sd = _NOISE_SD * config.noise * config.drift.noise_scale
    # float32 noise halves the cost of the normal draws; it is added in float64.
    noise = rng.standard_normal((len(SENSORS), total), dtype=np.float32)
    for j, name in enumerate(SENSORS):
        values[j] += _MODE_EFFECT[mode, j] * wear
        values[j] += machine_offset[machine_of_row, j]
        values[j] += noise[j] * noise_sd[j] + config.drift.sensor_bias.get(name, 0.0)

    step = np.tile(np.arange(n, dtype=np.int64), m) + config.first_step
    start = np.datetime64(pd.Timestamp(config.start).to_datetime64(), "ns")
    timestamp = start + step * np.timedelta64(config.interval_minutes * 60 * 10**9, "ns")
    machine_names = [f"{config.machine_prefix}{i:03d}" for i in range(m)]

    frame: dict[str, Any] = {
        schema.MACHINE: pd.Categorical.from_codes(machine_of_row, machine_names),
        schema.CYCLE: step + 1,
        schema.TIMESTAMP: timestamp,
        schema.REGIME: pd.Categorical.from_codes(regime, regime_names),
    }
    for j, name in enumerate(SENSORS):
        frame[name] = values[j]
    frame[schema.TIME_SINCE_MAINTENANCE] = age.astype(np.float64)
    frame[schema.RUL] = rul
    frame[schema.LABEL] = failure_within_h
    frame[schema.FAILURE_MODE] = pd.Categorical.from_codes(mode, FAILURE_MODES)
    frame[schema.SOURCE_SPLIT] = pd.Categorical.from_codes(np.zeros(total, np.int8), [""])
    return pd.DataFrame(frame, copy=False), _end_states(lc, m, machine_offset, regime)
