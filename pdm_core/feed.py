"""The simulator feed: new simulated telemetry batches for the landing zone, optionally drifted.

The feed continues the fleet that the default simulator source describes (``n_machines``
machines ``M000``.., seed 42, horizon 30, 2000 readings each): batch ``k`` holds the readings
of every machine for the steps ``[start_step + k * steps_per_batch, start_step + (k + 1) *
steps_per_batch)``, so with the default ``start_step`` of 2000 the first landed reading of each
machine is cycle 2001, ten minutes after the source's last reading. Rows carry the labels
(``rul``, ``failure_within_h``, ``failure_mode``), the regime and the time since maintenance;
the simulator's ``source_split`` column is dropped (it is not part of the landing contract).

**Continuity.** The feed continues the source's machines reading for reading, as a real
fleet's telemetry does: batch 0 resumes the state each machine is in after the source's last
reading (the source is ``simulate(SimulatorConfig(n_machines, start_step, seed, horizon))``,
the default source for the default config), so a component under way keeps ageing towards
its planned failure or maintenance, and a window that spans the source's last readings and the
first landed ones is one machine's history, not two. The feed's timeline is cut into
*segments* of ``batches_per_segment`` batches (``segment_steps // steps_per_batch``, at least
1; 40 batches of 50 readings by default). Each segment is ONE call of
:func:`pdm_core.simulator.simulate_states`, seeded from ``(seed, segment number)`` and resumed
from the machines' states at the end of the segment before, and its batches are consecutive
slices of it. Therefore:

* Machine histories are continuous across batches and segments: damage keeps growing, lifecycles
  run across boundaries; new draws (later components, regimes, noise) come from the segment's
  seed. Regimes are redrawn at a segment boundary (a regime change is an ordinary event).
* A batch's content depends only on the configuration and its batch number, never on how many
  batches one call asks for: ``batch_frame(config, 7)`` equals batch 7 of
  ``feed_batches(config, 0, 10)`` bit for bit. Producing one batch costs simulating its whole
  segment (about 20 ms for 40 machines x 2000 readings), plus, once per process, the source and
  the segments before it (their end states are cached).

Limits, honestly:

* The continuation is exact only for a source simulated with the feed's machines, seed, horizon
  and ``start_step`` readings and default simulator settings; other sources get the machine
  ids, cycles and timestamps continued, not their states.
* Drift starting mid-segment (``drift_from_batch``): clean batches are slices of the segment
  simulated without drift, drifted batches slices of the same segment simulated with it. For a
  sensor bias or a noise scale the simulator's random draws are identical with and without
  drift, so the machine states continue exactly and only the measurements change (a drifted
  batch is the clean batch plus the bias, with the noise scaled). A new regime also leaves the
  lifecycles (``rul``, damage, time since maintenance) and the noise draws unchanged, but the
  regime sequence is redrawn from the drift boundary on. A changed degradation rate draws other
  later component lives (the component under way keeps its own).

**Bias in sd units.** ``bias_sd`` gives a sensor bias in units of that sensor's standard
deviation, see :func:`sensor_sd`: the sample standard deviation (``ddof=1``) of the sensor over
all rows of the stationary reference simulation ``simulate(SimulatorConfig(n_machines, 2000,
seed, horizon))``, i.e. the default source's fleet. That sd includes the spread across regimes
and degradation (for ``rotational_speed`` it is mostly the regime set points), not just the
measurement noise.

**Numbering.** :func:`run_feed` numbers files ``feed-<batch:06d>.parquet`` and keeps the next
batch number in ``<landing_root>/.feed-state.json``, so successive runs continue the feed. Two
runs at the same time are not coordinated; they would write the same batch numbers (with the
same content when their configurations agree).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from pdm_core import schema
from pdm_core.landing import write_batch
from pdm_core.simulator import (
    SENSORS,
    DriftSpec,
    MachineStates,
    SimulatorConfig,
    simulate,
    simulate_states,
)

REFERENCE_STEPS = 2_000
"""Readings per machine of the default source, and of the reference simulation behind sd units."""

STATE_FILE = ".feed-state.json"
"""Name of the feed's state file in the landing root (hidden, so never taken for a batch)."""

FILE_PREFIX = "feed-"

_SEED_TAG = 0x46454544  # "FEED": keeps segment seeds apart from plain simulator seeds


@dataclass(frozen=True)
class FeedConfig:
    """What the feed simulates.

    Attributes:
        n_machines: Machines in the fleet (ids ``M000``.. as in the source).
        steps_per_batch: Readings per machine in one batch.
        seed: Seed of the fleet; segments derive their own seeds from it.
        horizon: Horizon H of the ``failure_within_h`` label, in steps.
        start_step: Step of batch 0's first reading (0-based; its cycle is ``start_step + 1``).
            The default continues after the default source's 2000 readings.
        drift: Drift injected into drifted batches (sensor bias in sensor units).
        drift_from_batch: Batches with a number >= this carry the drift.
        bias_sd: Additional bias per sensor in units of the sensor's sd (see
            :func:`sensor_sd`); added to ``drift.sensor_bias``.
        segment_steps: Length in readings of one simulation call; rounded down to whole
            batches (at least one batch).
    """

    n_machines: int = 40
    steps_per_batch: int = 50
    seed: int = 42
    horizon: int = 30
    start_step: int = REFERENCE_STEPS
    drift: DriftSpec = field(default_factory=DriftSpec)
    drift_from_batch: int = 0
    bias_sd: dict[str, float] = field(default_factory=dict)
    segment_steps: int = REFERENCE_STEPS

    def __post_init__(self) -> None:
        for name in ("n_machines", "steps_per_batch", "horizon", "segment_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("seed", "start_step", "drift_from_batch"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        unknown = sorted(set(self.bias_sd) - set(SENSORS))
        if unknown:
            raise ValueError(f"bias_sd names unknown sensors {unknown}; known: {SENSORS}")
        if not all(np.isfinite(v) for v in self.bias_sd.values()):
            raise ValueError(f"bias_sd values must be finite numbers, got {self.bias_sd}")

    @property
    def batches_per_segment(self) -> int:
        """Batches simulated together as one continuous stretch."""
        return max(1, self.segment_steps // self.steps_per_batch)

    @property
    def drifted(self) -> bool:
        """True when drifted batches differ from clean ones."""
        return self.drift.active or any(self.bias_sd.values())

    def is_drifted(self, batch: int) -> bool:
        """True when batch number ``batch`` carries the drift."""
        return self.drifted and batch >= self.drift_from_batch

    def effective_drift(self) -> DriftSpec:
        """The drift in sensor units: ``drift`` with ``bias_sd`` converted and added."""
        if not any(self.bias_sd.values()):
            return self.drift
        bias = dict(self.drift.sensor_bias)
        sd = sensor_sd(self)
        for name, amount in self.bias_sd.items():
            if amount:
                bias[name] = bias.get(name, 0.0) + amount * sd[name]
        return DriftSpec(
            sensor_bias=bias,
            noise_scale=self.drift.noise_scale,
            new_regime=self.drift.new_regime,
            degradation_rate=self.drift.degradation_rate,
        )

    def describe_drift(self) -> str:
        """The drift in words, e.g. ``"bias vibration +0.5 sd, noise x2 from batch 3"``."""
        if not self.drifted:
            return "no drift"
        parts = [f"bias {name} {value:+g} sd" for name, value in self.bias_sd.items() if value]
        parts += [
            f"bias {name} {value:+g}" for name, value in self.drift.sensor_bias.items() if value
        ]
        if self.drift.noise_scale != 1.0:
            parts.append(f"noise x{self.drift.noise_scale:g}")
        if self.drift.new_regime:
            parts.append("new regime 'overload'")
        if self.drift.degradation_rate != 1.0:
            parts.append(f"degradation x{self.drift.degradation_rate:g}")
        return f"{', '.join(parts)} from batch {self.drift_from_batch}"


def sensor_sd(config: FeedConfig) -> dict[str, float]:
    """The sd behind ``bias_sd``: each sensor's spread in the stationary reference fleet.

    The reference is ``simulate(SimulatorConfig(config.n_machines, 2000, config.seed,
    config.horizon))`` without drift (the default source's fleet for the default config); the
    sd is pandas' sample standard deviation (``ddof=1``) over all its rows.

    Args:
        config: Feed configuration (only machines, seed and horizon matter).

    Returns:
        Standard deviation per sensor, in sensor units.
    """
    return dict(_reference_sd(config.n_machines, config.seed, config.horizon))


@lru_cache(maxsize=8)
def _reference_sd(n_machines: int, seed: int, horizon: int) -> tuple[tuple[str, float], ...]:
    reference = simulate(
        SimulatorConfig(n_machines=n_machines, n_steps=REFERENCE_STEPS, seed=seed, horizon=horizon)
    )
    return tuple((name, float(reference[name].std(ddof=1))) for name in SENSORS)


def segment_seed(seed: int, segment: int) -> int:
    """Seed of one segment's simulation, derived from the feed's seed and the segment number."""
    state = np.random.SeedSequence([_SEED_TAG, seed, segment]).generate_state(1, np.uint32)
    return int(state[0])


def _segment_config(config: FeedConfig, segment: int, drift: DriftSpec) -> SimulatorConfig:
    """The simulation of one segment (its seed, steps and first step)."""
    n_steps = config.batches_per_segment * config.steps_per_batch
    return SimulatorConfig(
        n_machines=config.n_machines,
        n_steps=n_steps,
        seed=segment_seed(config.seed, segment),
        horizon=config.horizon,
        first_step=config.start_step + segment * n_steps,
        drift=drift,
    )


def _segment(config: FeedConfig, segment: int, drift: DriftSpec) -> pd.DataFrame:
    """One segment's frame, resumed from the machines' states after the segment before."""
    resume = _segment_start(config, segment)
    return simulate_states(_segment_config(config, segment, drift), resume)[0]


_STARTS: dict[tuple[str, int], MachineStates] = {}
"""Machines' states at the start of a segment, by (config, segment): later batches of a long
feed would otherwise re-simulate every segment before theirs on each call."""
_MAX_STARTS = 4096


def _segment_start(config: FeedConfig, segment: int) -> MachineStates | None:
    """The machines' states before ``segment``'s first reading (``None``: nothing to resume).

    A segment ends as the simulation its last batch was cut from ends (drifted or not).
    """
    key = repr(config)
    known = next((s for s in range(segment, 0, -1) if (key, s) in _STARTS), 0)
    state = (
        _STARTS[(key, known)]
        if known
        else _source_end(config.n_machines, config.start_step, config.seed, config.horizon)
    )
    if len(_STARTS) > _MAX_STARTS:
        _STARTS.clear()
    drift = config.effective_drift() if config.drifted else DriftSpec()
    for done in range(known, segment):
        last_batch = (done + 1) * config.batches_per_segment - 1
        chosen = drift if config.is_drifted(last_batch) else DriftSpec()
        state = simulate_states(_segment_config(config, done, chosen), state)[1]
        _STARTS[(key, done + 1)] = state
    return state


@lru_cache(maxsize=8)
def _source_end(n_machines: int, steps: int, seed: int, horizon: int) -> MachineStates | None:
    """The machines' states after the source's last reading (``None`` when it has none)."""
    if steps == 0:
        return None
    source = SimulatorConfig(n_machines=n_machines, n_steps=steps, seed=seed, horizon=horizon)
    return simulate_states(source)[1]


def _slice(frame: pd.DataFrame, config: FeedConfig, offset: int) -> pd.DataFrame:
    """Batch at ``offset`` (batch index inside its segment) of a segment's frame."""
    n_steps = config.batches_per_segment * config.steps_per_batch
    first = offset * config.steps_per_batch
    rows = (
        np.arange(config.n_machines)[:, None] * n_steps
        + np.arange(first, first + config.steps_per_batch)[None, :]
    ).ravel()
    return frame.take(rows).drop(columns=[schema.SOURCE_SPLIT]).reset_index(drop=True)


def feed_batches(
    config: FeedConfig, first_batch: int, n_batches: int
) -> Iterator[tuple[int, pd.DataFrame]]:
    """Yields batches ``first_batch .. first_batch + n_batches - 1`` of the feed.

    Each segment the span touches is simulated once (twice when it holds both clean and drifted
    batches: once without and once with the drift) and sliced into its batches.

    Args:
        config: Feed configuration.
        first_batch: Number of the first batch (0-based).
        n_batches: How many batches.

    Yields:
        ``(batch number, frame)``; the frame is sorted by machine and cycle and holds the
        landing contract's columns (sensors, timestamp, regime, time since maintenance, labels).
    """
    if first_batch < 0 or n_batches < 0:
        raise ValueError(f"first_batch and n_batches must be >= 0, got {first_batch}, {n_batches}")
    per_segment = config.batches_per_segment
    drift = config.effective_drift() if config.drifted else DriftSpec()
    batch, end = first_batch, first_batch + n_batches
    while batch < end:
        segment = batch // per_segment
        stop = min(end, (segment + 1) * per_segment)
        frames: dict[bool, pd.DataFrame] = {}
        for number in range(batch, stop):
            drifted = config.is_drifted(number)
            if drifted not in frames:
                frames[drifted] = _segment(config, segment, drift if drifted else DriftSpec())
            yield number, _slice(frames[drifted], config, number - segment * per_segment)
        batch = stop


def batch_frame(config: FeedConfig, batch: int) -> pd.DataFrame:
    """Batch number ``batch`` (0-based) of the feed; the same config and number give the same frame.

    Args:
        config: Feed configuration.
        batch: Batch number.

    Returns:
        Readings of every machine for the batch's steps (see :func:`feed_batches`).
    """
    return next(feed_batches(config, batch, 1))[1]


@dataclass(frozen=True)
class FeedState:
    """What the feed remembers between runs.

    Attributes:
        next_batch: Number of the next batch to write.
    """

    next_batch: int = 0


def state_path(landing_root: Path) -> Path:
    """The feed's state file in the landing root."""
    return Path(landing_root) / STATE_FILE


def load_state(landing_root: Path) -> FeedState:
    """Reads the feed's state (a fresh state when there is no state file).

    Raises:
        ValueError: The state file exists but is not valid (the message names it).
    """
    path = state_path(landing_root)
    if not path.exists():
        return FeedState()
    try:
        value = json.loads(path.read_text(encoding="utf-8"))["next_batch"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: unreadable feed state ({error}); fix or delete it") from error
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{path}: next_batch must be a non-negative integer, got {value!r}")
    return FeedState(next_batch=value)


def next_batch(landing_root: Path) -> int:
    """Number of the next batch the feed writes into ``landing_root`` (0 for a new feed)."""
    return load_state(landing_root).next_batch


def record_batches(landing_root: Path, next_batch: int) -> None:
    """Stores the next batch number atomically (temporary file, fsync, rename).

    Args:
        landing_root: Landing zone root (created if needed).
        next_batch: Number of the next batch to write.
    """
    if next_batch < 0:
        raise ValueError(f"next_batch must be >= 0, got {next_batch}")
    path = state_path(landing_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump({"next_batch": next_batch}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def batch_name(batch: int) -> str:
    """File stem of batch number ``batch``, e.g. ``"feed-000042"``."""
    return f"{FILE_PREFIX}{batch:06d}"


def run_feed(
    config: FeedConfig,
    incoming_dir: Path,
    landing_root: Path,
    n_batches: int = 1,
    progress: bool = False,
    on_batch: Callable[[int, Path, int], None] | None = None,
) -> list[Path]:
    """Writes the feed's next ``n_batches`` batches into the landing zone.

    Numbering continues from the state in ``landing_root`` (see :func:`next_batch`); the state
    is updated after each file, so an interrupted run resumes after its last complete file.

    Args:
        config: Feed configuration (``drift_from_batch`` is an absolute batch number).
        incoming_dir: The landing zone's incoming directory.
        landing_root: Landing zone root holding the state file.
        n_batches: Files to write.
        progress: Show a tqdm progress bar (on stderr).
        on_batch: Called as ``on_batch(batch number, path, rows)`` after each file.

    Returns:
        Paths of the written files, in order.
    """
    if n_batches < 1:
        raise ValueError(f"n_batches must be >= 1, got {n_batches}")
    from tqdm import tqdm

    first = next_batch(landing_root)
    written: list[Path] = []
    with tqdm(total=n_batches, disable=not progress, unit="batch", desc="fleet-feed") as bar:
        for number, frame in feed_batches(config, first, n_batches):
            path = write_batch(frame, Path(incoming_dir), batch_name(number))
            record_batches(landing_root, number + 1)
            written.append(path)
            if on_batch is not None:
                on_batch(number, path, len(frame))
            bar.update(1)
    return written
