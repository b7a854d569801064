"""The one feature definition, shared by the pipeline and the serving path.

:func:`fit_feature_state` learns what the features need from training rows (active sensors,
per-regime normalisation, categorical levels). :func:`compute_features` turns canonical
telemetry into one feature row per reading, for a whole fleet at once.
:func:`compute_window_features` scores one machine's recent readings (a frame) at its latest
reading; it calls :func:`compute_features`, so the two cannot disagree.
:func:`latest_window_features` is the service's path: many machines' equal-length windows as
arrays, no pandas. It shares the normalisation, the feature layout and the row features with
:func:`compute_features` and evaluates the window statistics at the last reading only
(:class:`pdm_core.rolling.LastWindows`). ``tests/code/test_feature_parity.py`` proves all three
agree within 1e-9 on real and simulated data.

Features per reading (``s`` a sensor, ``w`` a window length):

* ``{s}__z``: the reading normalised by its operating regime's training mean and std
  (per-condition normalisation; a single regime means plain standardisation);
* ``{s}__{stat}_w{w}`` for stat in mean, std, min, max, slope, roc (rate of change) over the
  trailing window of the normalised values (partial windows at a machine's first readings);
* ``{a}__x__{b}_w{w}``: windowed mean of the product of two normalised sensors (co-movement);
* ``time_since_maintenance`` where the source knows it;
* ``regime_known``: 0 when the reading's regime was never seen in training (normalised with
  global statistics instead);
* ``{c}={level}``: one-hot categorical levels seen in training.

This module must not import Dagster: the BentoML service imports it.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from pdm_core import schema
from pdm_core.derived import (
    DerivedColumn,
    evaluate,
    measured_columns,
    parse_derived,
    raw_inputs,
)
from pdm_core.rolling import STATS, Groups, LastWindows, TrailingWindows

if TYPE_CHECKING:  # pandas stays out of the service's workers (cold start)
    import pandas as pd

_CONSTANT_RTOL = 1e-9
_CHUNK_ROWS = 1 << 15
_THREADS = min(4, os.cpu_count() or 1)


class FeatureInputError(ValueError):
    """Telemetry handed to the feature code breaks a rule (names the column and row)."""


@dataclass(frozen=True)
class FeatureConfig:
    """User-facing feature settings.

    Attributes:
        windows: Trailing window lengths in readings.
        stats: Window statistics, a subset of :data:`pdm_core.rolling.STATS`.
        interactions: Sensor pairs for interaction features; None takes the dataset's
            default (``DatasetInfo.extra["interactions"]``) or consecutive sensor pairs.
        max_auto_interactions: Cap on automatically chosen pairs.
        normalize: Normalise sensors per operating regime before windowing.
    """

    windows: tuple[int, ...] = (10, 30)
    stats: tuple[str, ...] = STATS
    interactions: tuple[tuple[str, str], ...] | None = None
    max_auto_interactions: int = 4
    normalize: bool = True

    def __post_init__(self) -> None:
        if not self.windows or any(int(w) < 1 for w in self.windows):
            raise ValueError(f"windows must be positive integers, got {self.windows}")
        unknown = sorted(set(self.stats) - set(STATS))
        if unknown:
            raise ValueError(f"unknown stats {unknown}; known: {STATS}")


@dataclass(frozen=True)
class RegimeTable:
    """Per-regime normalisation statistics, indexed by regime code.

    Attributes:
        names: Fitted regimes, sorted; code ``i`` is ``names[i]``, code ``len(names)`` an
            unseen regime.
        lookup: Code of each fitted regime.
        means: Shape (regimes + 1, sensors); the last row holds the global means.
        stds: Shape (regimes + 1, sensors); the last row holds the global sds.
    """

    names: tuple[str, ...]
    lookup: dict[str, int]
    means: np.ndarray
    stds: np.ndarray


@dataclass(frozen=True)
class FeatureState:
    """Everything needed to compute features: the config plus what was fitted on training data.

    JSON-serialisable via :meth:`to_json` so that it can travel with a model to the service.
    """

    config: FeatureConfig
    sensors: tuple[str, ...]
    dropped_sensors: tuple[str, ...]
    interactions: tuple[tuple[str, str], ...]
    regime_mean: dict[str, list[float]]
    regime_std: dict[str, list[float]]
    global_mean: list[float]
    global_std: list[float]
    ordered: bool
    use_time_since_maintenance: bool
    categoricals: dict[str, list[str]] = field(default_factory=dict)
    settings: tuple[str, ...] = ()
    regime_rounding: tuple[int, ...] = ()
    derived: tuple[tuple[str, str], ...] = ()

    # Derived values are cached on first use (the state is frozen): the service reads them
    # on every request.
    @cached_property
    def windows(self) -> tuple[int, ...]:
        """Window lengths in effect (none for unordered data)."""
        return tuple(int(w) for w in self.config.windows) if self.ordered else ()

    @cached_property
    def derived_columns(self) -> tuple[DerivedColumn, ...]:
        """The derived sensors, compiled (their inputs may include dropped sensors)."""
        if not self.derived:
            return ()
        known = measured_columns((*self.sensors, *self.dropped_sensors), self.derived)
        return parse_derived(self.derived, known)

    @cached_property
    def input_sensors(self) -> tuple[str, ...]:
        """The sensors a reading must carry: active ones, derived ones replaced by their inputs.

        Equal to ``sensors`` without derived columns. Derived values are always computed from
        these, never read, so training, live scoring and the service cannot disagree on them.
        """
        if not self.derived:
            return self.sensors
        needed = set(raw_inputs(self.derived_columns, self.sensors))
        return tuple(s for s in (*self.sensors, *self.dropped_sensors) if s in needed)

    def sensor_values(self, column: Callable[[str], np.ndarray]) -> list[np.ndarray]:
        """The active sensors' values in ``sensors`` order, derived ones computed from inputs.

        Args:
            column: Returns the float64 values of an input sensor (any shape, equal for all).
        """
        if not self.derived:
            return [column(s) for s in self.sensors]
        values = {s: column(s) for s in self.input_sensors}
        values.update(evaluate(self.derived_columns, values))
        return [values[s] for s in self.sensors]

    @property
    def window_length(self) -> int:
        """Readings a machine needs for full windows (what the service asks for)."""
        return max(self.windows, default=1)

    @property
    def feature_names(self) -> list[str]:
        """Feature column names, in output order."""
        return list(self._feature_names)

    @cached_property
    def _feature_names(self) -> tuple[str, ...]:
        names = [f"{s}__z" for s in self.sensors]
        for w in self.windows:
            names += [f"{s}__{stat}_w{w}" for stat in self.config.stats for s in self.sensors]
            names += [f"{a}__x__{b}_w{w}" for a, b in self.interactions]
        if self.use_time_since_maintenance:
            names.append(schema.TIME_SINCE_MAINTENANCE)
        names.append("regime_known")
        for column, levels in self.categoricals.items():
            names += [f"{column}={level}" for level in levels]
        return tuple(names)

    @cached_property
    def regime_table(self) -> RegimeTable:
        """The fitted regimes' statistics as arrays (see :class:`RegimeTable`)."""
        names = tuple(sorted(self.regime_mean))
        return RegimeTable(
            names=names,
            lookup={name: i for i, name in enumerate(names)},
            means=np.vstack([*(self.regime_mean[r] for r in names), self.global_mean]),
            stds=np.vstack([*(self.regime_std[r] for r in names), self.global_std]),
        )

    @property
    def required_columns(self) -> list[str]:
        """Input columns :func:`compute_features` needs besides machine and cycle."""
        columns = list(self.input_sensors) + list(self.categoricals)
        if self.use_time_since_maintenance:
            columns.append(schema.TIME_SINCE_MAINTENANCE)
        return columns

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-serialisable dict."""
        return asdict(self)

    def to_json(self) -> str:
        """Returns the state as a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureState:
        """Rebuilds a state from :meth:`to_dict` output."""
        raw = dict(data)
        cfg = dict(raw.pop("config"))
        cfg["windows"] = tuple(cfg["windows"])
        cfg["stats"] = tuple(cfg["stats"])
        if cfg.get("interactions") is not None:
            cfg["interactions"] = tuple(tuple(p) for p in cfg["interactions"])
        raw["config"] = FeatureConfig(**cfg)
        raw["interactions"] = tuple(tuple(p) for p in raw["interactions"])
        for key in ("sensors", "dropped_sensors", "settings", "regime_rounding"):
            raw[key] = tuple(raw.get(key, ()))
        raw["derived"] = tuple((str(n), str(e)) for n, e in raw.get("derived", ()))
        return cls(**raw)

    @classmethod
    def from_json(cls, text: str) -> FeatureState:
        """Rebuilds a state from :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))


def _choose_interactions(
    config: FeatureConfig, info: schema.DatasetInfo, sensors: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    if config.interactions is not None:
        pairs = tuple(tuple(p) for p in config.interactions)
        missing = sorted({s for p in pairs for s in p} - set(sensors))
        if missing:
            raise ValueError(f"interaction pairs name sensors that are not active: {missing}")
        return pairs  # type: ignore[return-value]
    default = info.extra.get("interactions")
    if default:
        return tuple((a, b) for a, b in default if a in sensors and b in sensors)
    pairs = tuple(itertools.pairwise(sensors))
    return pairs[: config.max_auto_interactions]


def fit_feature_state(
    frame: pd.DataFrame,
    info: schema.DatasetInfo,
    config: FeatureConfig | None = None,
    train_mask: np.ndarray | pd.Series | None = None,
) -> FeatureState:
    """Fits the feature definition on training rows.

    Sensors that are constant over the training rows carry no information and are dropped
    (listed in ``dropped_sensors``). Normalisation statistics are computed per regime; a regime
    with fewer than two training rows or zero spread falls back to the global statistics.

    Args:
        frame: Canonical telemetry frame.
        info: Column roles of ``frame``.
        config: Feature settings; defaults to :class:`FeatureConfig()`.
        train_mask: Boolean mask of training rows; all rows when None.

    Returns:
        The fitted state.
    """
    config = config or FeatureConfig()
    train = frame if train_mask is None else frame.loc[np.asarray(train_mask, dtype=bool)]
    if train.empty:
        raise FeatureInputError("no training rows to fit the features on")
    carried = measured_columns(info.sensors, info.derived)
    _check_columns(train, carried, "training telemetry")
    columns = {s: train[s].to_numpy(dtype=np.float64) for s in carried}
    columns.update(evaluate(parse_derived(info.derived, carried), columns))
    values = np.column_stack([columns[s] for s in info.sensors])
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    constant = std <= _CONSTANT_RTOL * np.maximum(1.0, np.abs(mean))
    sensors = tuple(s for s, c in zip(info.sensors, constant, strict=True) if not c)
    dropped = tuple(s for s, c in zip(info.sensors, constant, strict=True) if c)
    if not sensors:
        raise FeatureInputError(f"every sensor is constant in the training rows: {info.sensors}")
    keep = ~constant
    global_mean, global_std = mean[keep], std[keep]

    regime_mean: dict[str, list[float]] = {}
    regime_std: dict[str, list[float]] = {}
    if config.normalize:
        regimes = train[schema.REGIME].astype(str).to_numpy()
        for regime in sorted(set(regimes)):
            rows = values[regimes == regime][:, keep]
            r_mean = rows.mean(axis=0)
            r_std = rows.std(axis=0) if rows.shape[0] > 1 else global_std
            flat = r_std <= _CONSTANT_RTOL * np.maximum(1.0, np.abs(r_mean))
            r_std = np.where(flat, global_std, r_std)
            regime_mean[regime] = r_mean.tolist()
            regime_std[regime] = r_std.tolist()

    tsm = frame.get(schema.TIME_SINCE_MAINTENANCE)
    use_tsm = tsm is not None and bool(np.isfinite(tsm.to_numpy(dtype=np.float64)).all())
    categoricals = {c: sorted(train[c].astype(str).unique().tolist()) for c in info.categoricals}
    return FeatureState(
        config=config,
        sensors=sensors,
        dropped_sensors=dropped,
        interactions=_choose_interactions(config, info, sensors),
        regime_mean=regime_mean,
        regime_std=regime_std,
        global_mean=global_mean.tolist(),
        global_std=np.where(global_std > 0, global_std, 1.0).tolist(),
        ordered=info.ordered,
        use_time_since_maintenance=use_tsm,
        categoricals=categoricals,
        settings=info.settings,
        regime_rounding=info.regime_rounding,
        derived=info.derived,
    )


def _check_columns(frame: pd.DataFrame, columns: tuple[str, ...] | list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FeatureInputError(f"{what} lacks column(s) {missing}")


def _raise_non_finite(frame: pd.DataFrame, values: np.ndarray, columns: list[str]) -> None:
    """Raises for the first NaN/inf in ``values`` (shape rows x columns)."""
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        machine = frame[schema.MACHINE].iloc[row]
        cycle = frame[schema.CYCLE].iloc[row]
        raise FeatureInputError(
            f"column '{columns[col]}' has a non-finite value ({values[row, col]}) at "
            f"machine_id={machine}, cycle={cycle}; {int(bad.sum())} such value(s) in total"
        )


def regimes_of(frame: pd.DataFrame, state: FeatureState) -> pd.Series:
    """Returns each row's regime label, deriving it from settings where the state says so."""
    import pandas as pd

    if schema.REGIME in frame.columns:
        return frame[schema.REGIME]
    if state.regime_rounding:
        _check_columns(frame, state.settings, "telemetry")
        return schema.regime_from_settings(frame[list(state.settings)], state.regime_rounding)
    return pd.Series(schema.NO_REGIME, index=frame.index)


def _regime_codes(frame: pd.DataFrame, state: FeatureState) -> tuple[np.ndarray, int]:
    """Codes into ``sorted(state.regime_mean)``; unseen regimes get the extra last code."""
    import pandas as pd

    regimes = regimes_of(frame, state)
    if isinstance(regimes.dtype, pd.CategoricalDtype):
        codes, uniques = regimes.cat.codes.to_numpy(), regimes.cat.categories.astype(str)
    else:
        codes, uniques = pd.factorize(regimes.astype(str), sort=False)
    return _known_codes(codes, list(uniques), state)


def _known_codes(
    codes: np.ndarray, uniques: list[str], state: FeatureState
) -> tuple[np.ndarray, int]:
    """Maps codes into ``uniques`` to codes into ``sorted(state.regime_mean)`` (unseen: last)."""
    table = state.regime_table
    names, lookup = table.names, table.lookup
    mapping = np.array([lookup.get(u, len(names)) for u in uniques] + [len(names)])
    return mapping[codes], len(names)


def normalize(frame: pd.DataFrame, state: FeatureState) -> tuple[np.ndarray, np.ndarray]:
    """Normalises the active sensors per regime.

    Args:
        frame: Telemetry with the state's sensor columns (and regime or settings).
        state: Fitted feature state.

    Returns:
        ``(z, known)``: channels-first normalised values of shape (sensors, rows) and a
        boolean array that is False where the row's regime was unseen in training (global
        statistics were used instead).
    """
    columns = list(state.sensors)
    z = np.empty((len(columns), len(frame)), dtype=np.float64)
    for i, values in enumerate(state.sensor_values(lambda c: frame[c].to_numpy(np.float64))):
        z[i] = values
    bad = ~np.isfinite(z)
    if bad.any():
        _raise_non_finite(frame, z.T, columns)
    if not state.config.normalize:
        return z, np.ones(len(frame), dtype=bool)
    codes, unseen = _regime_codes(frame, state)
    _standardise(z, codes, state)
    return z, codes != unseen


def _standardise(z: np.ndarray, codes: np.ndarray, state: FeatureState) -> None:
    """In place: ``z[i]`` minus its regime's mean, over its regime's sd (global if unseen)."""
    means, stds = state.regime_table.means, state.regime_table.stds
    for i in range(z.shape[0]):  # a sensor at a time: no (rows x sensors) temporaries
        z[i] -= means[codes, i]
        z[i] /= stds[codes, i]


def _group_codes(frame: pd.DataFrame) -> np.ndarray:
    import pandas as pd

    machines = frame[schema.MACHINE]
    if isinstance(machines.dtype, pd.CategoricalDtype):
        return machines.cat.codes.to_numpy(dtype=np.int64)
    return pd.factorize(machines, sort=False)[0].astype(np.int64)


def _ensure_sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Returns rows grouped by machine in ascending cycle order; rejects duplicate keys."""
    codes = _group_codes(frame)
    cycles = frame[schema.CYCLE].to_numpy(dtype=np.int64)
    same = codes[1:] == codes[:-1]
    runs = int(np.count_nonzero(~same)) + (1 if len(codes) else 0)
    grouped = runs == (int(codes.max()) + 1 if len(codes) else 0)
    if grouped and np.all(np.diff(cycles)[same] > 0):
        return frame
    ordered = frame.sort_values([schema.MACHINE, schema.CYCLE], kind="stable")
    dup = ordered.duplicated([schema.MACHINE, schema.CYCLE])
    if dup.any():
        row = ordered[dup].iloc[0]
        raise FeatureInputError(
            f"duplicate reading for machine_id={row[schema.MACHINE]}, cycle={row[schema.CYCLE]}"
        )
    return ordered.reset_index(drop=True)


def _window_features(z: np.ndarray, codes: np.ndarray, state: FeatureState) -> np.ndarray:
    """Normalised values, window statistics and interactions for a run of rows.

    Args:
        z: Channels-first normalised sensors, shape (sensors, rows).
        codes: Machine code per row (rows grouped by machine).
        state: Fitted feature state.

    Returns:
        Channels-first array in ``state.feature_names`` order, up to the interactions.
    """
    groups = Groups.from_codes(codes)
    return _window_block(z, z, lambda w: TrailingWindows(groups, w), state)


def _window_block(
    z: np.ndarray,
    current: np.ndarray,
    windows_of: Callable[[int], TrailingWindows | LastWindows],
    state: FeatureState,
) -> np.ndarray:
    """The window block of the features, in ``state.feature_names`` order.

    Args:
        z: Normalised sensors, sensors first (``(sensors, rows)`` for :class:`TrailingWindows`,
            ``(sensors, machines, readings)`` for :class:`LastWindows`).
        current: ``z`` at the output rows (sensors, output rows).
        windows_of: The windows of one length over ``z``.
        state: Fitted feature state.

    Returns:
        Channels-first array (block features, output rows).
    """
    k = len(state.sensors)
    index = {s: i for i, s in enumerate(state.sensors)}
    pairs = state.interactions
    products = np.stack([z[index[a]] * z[index[b]] for a, b in pairs]) if pairs else None
    width = k * (1 + len(state.windows) * len(state.config.stats)) + len(state.windows) * len(pairs)
    out = np.empty((width, current.shape[1]), dtype=np.float64)
    out[:k] = current
    at = k
    for w in state.windows:
        windows = windows_of(w)
        stats = windows.stats(z, state.config.stats)
        for name in state.config.stats:
            out[at : at + k] = stats.pop(name)
            at += k
        if products is not None:
            out[at : at + len(pairs)] = windows.mean(products)
            at += len(pairs)
    return out


def compute_features(frame: pd.DataFrame, state: FeatureState) -> pd.DataFrame:
    """Computes the feature row of every reading.

    Args:
        frame: Canonical telemetry (any number of machines). Rows need not be sorted; the
            output is in (machine_id, cycle) order.
        state: Fitted feature state.

    Returns:
        Frame with ``machine_id``, ``cycle`` and the float64 columns named by
        ``state.feature_names``.

    Raises:
        FeatureInputError: A required column is missing, a value is NaN or infinite, or a
            (machine_id, cycle) key repeats.
    """
    import pandas as pd

    _check_columns(frame, [schema.MACHINE, schema.CYCLE, *state.required_columns], "telemetry")
    frame = _ensure_sorted(frame)
    n = len(frame)
    names = state.feature_names
    # Channels-first result: one contiguous row per feature, wrapped by pandas without a copy.
    matrix = np.empty((len(names), n), dtype=np.float64)
    z, known = normalize(frame, state)
    codes = _group_codes(frame)
    # Rows are processed in chunks that fit in cache; each chunk carries the window_length - 1
    # rows before it as history, so results do not depend on where chunks are cut.
    halo = state.window_length - 1

    def fill(lo: int) -> None:
        hi = min(lo + _CHUNK_ROWS, n)
        first = max(lo - halo, 0)
        block = _window_features(z[:, first:hi], codes[first:hi], state)
        matrix[: block.shape[0], lo:hi] = block[:, lo - first :]

    starts = range(0, n, _CHUNK_ROWS)
    if len(starts) > 1 and _THREADS > 1:
        # numpy and scipy release the GIL in these loops, so threads use every core.
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            list(pool.map(fill, starts))
    else:
        for lo in starts:
            fill(lo)
    tsm = None
    if state.use_time_since_maintenance:
        tsm = frame[schema.TIME_SINCE_MAINTENANCE].to_numpy(dtype=np.float64)
        if not np.isfinite(tsm).all():
            _raise_non_finite(frame, tsm[:, None], [schema.TIME_SINCE_MAINTENANCE])
    categories = {c: frame[c].astype(str).to_numpy() for c in state.categoricals}
    _fill_row_features(matrix, state, tsm, known, categories)
    features = pd.DataFrame(matrix.T, columns=names, copy=False)
    features.insert(0, schema.CYCLE, frame[schema.CYCLE].to_numpy(dtype=np.int64))
    features.insert(0, schema.MACHINE, frame[schema.MACHINE].array)
    return features


def _fill_row_features(
    matrix: np.ndarray,
    state: FeatureState,
    tsm: np.ndarray | None,
    known: np.ndarray,
    categories: dict[str, np.ndarray],
) -> None:
    """Writes the row features after the window block into a channels-first ``matrix``.

    They are time since maintenance, ``regime_known`` and the categorical indicators.
    """
    at = len(state.sensors) * (1 + len(state.windows) * len(state.config.stats))
    at += len(state.windows) * len(state.interactions)
    if state.use_time_since_maintenance:
        matrix[at] = tsm
        at += 1
    matrix[at] = known
    at += 1
    for column, levels in state.categoricals.items():
        for level in levels:
            matrix[at] = categories[column] == level
            at += 1


@dataclass(frozen=True)
class WindowArrays:
    """Equal-length recent windows of several machines, as arrays: the service's input.

    Attributes:
        sensors: Raw values in ``state.input_sensors`` order, shape (sensors, machines,
            readings), oldest reading first.
        regimes: Regime label of every reading, shape (machines, readings); None where the
            state derives regimes from ``settings`` or has a single regime. With
            ``regime_levels`` set, integer codes into it instead (a dictionary-encoded column:
            no string work per reading).
        settings: Operating settings in ``state.settings`` order, shape (settings, machines,
            readings), where the state derives regimes from them.
        time_since_maintenance: Value at each machine's latest reading, shape (machines,),
            where the state uses it.
        categories: Level at each machine's latest reading, per categorical column.
        regime_levels: The labels that integer ``regimes`` codes stand for.
    """

    sensors: np.ndarray
    regimes: np.ndarray | None = None
    settings: np.ndarray | None = None
    time_since_maintenance: np.ndarray | None = None
    categories: dict[str, np.ndarray] = field(default_factory=dict)
    regime_levels: tuple[str, ...] | None = None


def latest_window_features(windows: WindowArrays, state: FeatureState) -> np.ndarray:
    """Serving path without pandas: the feature row of each machine's latest reading.

    The same computation as :func:`compute_features` (its normalisation, window block and
    row features), applied to each machine's window and read at its last reading.

    Args:
        windows: Each machine's last readings (at least ``state.window_length`` of them).
        state: Fitted feature state.

    Returns:
        Array (machines x ``len(state.feature_names)``), rows in input order, equal to the
        pipeline's row for each machine's latest reading.

    Raises:
        FeatureInputError: Windows shorter than the state's window length, or a value is NaN
            or infinite (named by sensor, machine and reading).
    """
    given, n, length = windows.sensors.shape
    if given != len(state.input_sensors):
        raise FeatureInputError(f"expected {len(state.input_sensors)} sensors, got {given}")
    if length < state.window_length:
        raise FeatureInputError(
            f"need at least {state.window_length} readings for full windows, got {length}"
        )
    k = len(state.sensors)
    raw = dict(zip(state.input_sensors, np.asarray(windows.sensors, np.float64), strict=True))
    z = np.stack(state.sensor_values(raw.__getitem__)).reshape(k, n * length)
    bad = ~np.isfinite(z)
    if bad.any():
        sensor, at = np.argwhere(bad)[0]
        raise FeatureInputError(
            f"sensor '{state.sensors[sensor]}' has a non-finite value at machine {at // length}, "
            f"reading {at % length}"
        )
    if state.config.normalize:
        if windows.regimes is not None and windows.regime_levels is not None:
            inverse = np.asarray(windows.regimes, dtype=np.intp).reshape(n * length)
            levels = list(windows.regime_levels)
        else:
            if windows.regimes is not None:
                labels = np.asarray(windows.regimes, dtype=str).reshape(n * length)
            elif state.regime_rounding and windows.settings is not None:
                values = np.asarray(windows.settings, dtype=np.float64).reshape(-1, n * length)
                labels = schema.regime_labels(values.T, state.regime_rounding)
            else:
                labels = np.full(n * length, schema.NO_REGIME)
            uniques, inverse = np.unique(labels, return_inverse=True)
            levels = [str(u) for u in uniques]
        codes, unseen = _known_codes(inverse, levels, state)
        _standardise(z, codes, state)
        known = codes != unseen
    else:
        known = np.ones(n * length, dtype=bool)
    last = np.arange(1, n + 1) * length - 1
    series = z.reshape(k, n, length)
    block = _window_block(series, series[:, :, -1], LastWindows, state)
    matrix = np.empty((len(state.feature_names), n), dtype=np.float64)
    matrix[: block.shape[0]] = block
    tsm = windows.time_since_maintenance
    if state.use_time_since_maintenance:
        tsm = np.asarray(tsm, dtype=np.float64)
        if tsm.shape != (n,) or not np.isfinite(tsm).all():
            raise FeatureInputError("time_since_maintenance needs a finite value per machine")
    categories = {c: np.asarray(windows.categories[c]).astype(str) for c in state.categoricals}
    _fill_row_features(matrix, state, tsm, known[last], categories)
    return matrix.T


def compute_latest_features(frame: pd.DataFrame, state: FeatureState) -> pd.DataFrame:
    """Serving path for many machines: the feature row of each machine's latest reading.

    Args:
        frame: Recent readings of one or more machines (canonical column names).
        state: Fitted feature state.

    Returns:
        One row per machine, in ``machine_id`` order, equal to the pipeline's row for that
        machine's latest cycle whenever the pipeline had at least ``state.window_length``
        readings of history there.
    """
    features = compute_features(frame, state)
    machines = features[schema.MACHINE].to_numpy()
    last = np.ones(len(features), dtype=bool)
    if len(features) > 1:
        last[:-1] = machines[1:] != machines[:-1]
    return features[last].reset_index(drop=True)


def compute_window_features(readings: pd.DataFrame, state: FeatureState) -> pd.DataFrame:
    """Serving path: the feature row of one machine's latest reading.

    Args:
        readings: One machine's recent readings (canonical column names), at least
            ``state.window_length`` of them.
        state: Fitted feature state.

    Returns:
        A one-row frame, equal to the pipeline's row for that machine and cycle whenever the
        pipeline had at least ``state.window_length`` readings of history there.

    Raises:
        FeatureInputError: More than one machine, too few readings, or bad values.
    """
    import pandas as pd

    if schema.MACHINE not in readings.columns:
        raise FeatureInputError(f"readings lack column '{schema.MACHINE}'")
    machines = pd.unique(readings[schema.MACHINE])
    if len(machines) != 1:
        raise FeatureInputError(f"expected readings of one machine, got {len(machines)}")
    if len(readings) < state.window_length:
        raise FeatureInputError(
            f"need at least {state.window_length} readings for full windows, got {len(readings)}"
        )
    return compute_latest_features(readings, state)
