"""Leak-free train/validation/test splits, one rule per shape of data.

A split is a table of segments ``(machine_id, split, cycle_from, cycle_to, rows)``. What
"leak-free" means depends on the shape of the data, and :func:`plan_split` decides the shape
once; :func:`assign_splits` and :func:`leakage_problems` both follow that plan, so the split
and its check cannot disagree:

* **by machine** (time series of at least ``min_machines`` machines, or a source that fixes its
  test machines, as C-MAPSS does): whole machines per split, so no machine's history is on
  two sides. Leak-free: every machine in exactly one split.
* **by time** (time series of fewer machines): each machine's history is cut into
  train | embargo | validation | embargo | test. The embargo is the label horizon in readings:
  a label looks that far ahead, into the next split's period. Leak-free: splits in time order,
  not overlapping, and at least ``horizon`` embargoed readings between two of them. Without a
  known horizon there is no safe embargo, and the plan refuses the data naming the setting.
* **by row** (independent rows: no time order, fewer than ``min_machines`` machines): a
  random split stratified by label, no embargo (no label looks ahead). Identical readings
  are kept on one side, or a model could be tested on the very rows it learned. Leak-free:
  every reading in one split, and no identical reading in two splits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pdm_core import schema

TRAIN, VALIDATION, TEST, EMBARGO = "train", "validation", "test", "embargo"
SPLITS: tuple[str, ...] = (TRAIN, VALIDATION, TEST)
SEGMENT_COLUMNS: tuple[str, ...] = (schema.MACHINE, "split", "cycle_from", "cycle_to", "rows")
BY_MACHINE, BY_TIME, BY_ROW = "by machine", "by time", "by row"


class SplitError(ValueError):
    """The data cannot be split without leaking; the message names the setting to change."""


@dataclass(frozen=True)
class SplitConfig:
    """How to split.

    Attributes:
        validation_fraction: Share of machines (or of each machine's time, or of the rows)
            for validation.
        test_fraction: Share for test (ignored when the source fixes its test set).
        seed: Seed of the machine (or row) shuffle.
        min_machines: Below this many machines, split by time (or by row) instead of by
            machine.
    """

    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 7
    min_machines: int = 5

    def __post_init__(self) -> None:
        if self.validation_fraction <= 0 or self.test_fraction <= 0:
            raise ValueError("validation_fraction and test_fraction must be > 0")
        if self.validation_fraction + self.test_fraction >= 0.9:
            raise ValueError("validation_fraction + test_fraction must leave >= 10% to train")


@dataclass(frozen=True)
class SplitPlan:
    """The shape of a split and what keeps it leak-free.

    Attributes:
        shape: :data:`BY_MACHINE`, :data:`BY_TIME` or :data:`BY_ROW`.
        embargo: Readings set aside between two time splits (the label horizon); 0 otherwise.
        reading_columns: Columns whose values make two readings identical (by-row splits).
    """

    shape: str
    embargo: int = 0
    reading_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.shape not in (BY_MACHINE, BY_TIME, BY_ROW):
            raise ValueError(f"unknown split shape {self.shape!r}")
        if self.shape == BY_TIME and self.embargo < 1:
            raise ValueError("a time split needs an embargo of at least one reading")


def plan_split(
    frame: pd.DataFrame, info: schema.DatasetInfo, config: SplitConfig | None = None
) -> SplitPlan:
    """Decides how ``frame`` is split (see the module docstring for the rules).

    Raises:
        SplitError: A time series of too few machines whose label horizon is unknown.
    """
    config = config or SplitConfig()
    machines = frame[schema.MACHINE].nunique()
    fixed_test = schema.SOURCE_SPLIT in frame and (frame[schema.SOURCE_SPLIT] == TEST).any()
    if fixed_test or machines >= config.min_machines:
        return SplitPlan(BY_MACHINE)
    if not info.ordered:
        columns = (*info.value_columns, *info.categoricals, schema.REGIME)
        return SplitPlan(BY_ROW, reading_columns=tuple(c for c in columns if c in frame))
    if not info.horizon:
        raise SplitError(
            f"{machines} machine(s), fewer than min_machines={config.min_machines}: the "
            "readings are split by time, and the embargo between splits must be the label "
            "horizon, which this source does not state. Set `horizon:` (readings the label "
            "looks ahead) in the tabular mapping, or give more machines"
        )
    return SplitPlan(BY_TIME, embargo=int(info.horizon))


def _shuffled(machines: list[str], seed: int) -> list[str]:
    """Orders machines by a seeded hash: stable across runs, platforms and row order."""

    def key(machine: str) -> str:
        return hashlib.sha256(f"{seed}:{machine}".encode()).hexdigest()

    return sorted(machines, key=key)


def _by_machine(machines: list[str], fractions: tuple[float, float], seed: int) -> dict[str, str]:
    """Assigns whole machines to splits; validation and test get at least one each."""
    val_frac, test_frac = fractions
    order = _shuffled(machines, seed)
    n = len(order)
    n_test = max(1, round(test_frac * n)) if test_frac > 0 else 0
    n_val = max(1, round(val_frac * n))
    if n - n_test - n_val < 1:
        raise ValueError(f"{n} machines are too few for train, validation and test splits")
    assignment = {m: TEST for m in order[:n_test]}
    assignment.update({m: VALIDATION for m in order[n_test : n_test + n_val]})
    assignment.update({m: TRAIN for m in order[n_test + n_val :]})
    return assignment


def _segments_by_machine(
    keys: pd.DataFrame, source: pd.Series, config: SplitConfig
) -> pd.DataFrame:
    """One segment per machine; a source's own test machines stay the test split."""
    machines = sorted(keys[schema.MACHINE].unique().tolist())
    fixed_test = set(keys.loc[source.to_numpy() == TEST, schema.MACHINE])
    if fixed_test:
        rest = [m for m in machines if m not in fixed_test]
        fraction = config.validation_fraction / (1.0 - config.test_fraction)
        assignment = _by_machine(rest, (fraction, 0.0), config.seed)
        assignment.update({m: TEST for m in fixed_test})
    else:
        assignment = _by_machine(
            machines, (config.validation_fraction, config.test_fraction), config.seed
        )
    grouped = keys.groupby(schema.MACHINE, sort=True)[schema.CYCLE].agg(["min", "max", "size"])
    return pd.DataFrame(
        {
            schema.MACHINE: grouped.index.astype(str),
            "split": [assignment[m] for m in grouped.index],
            "cycle_from": grouped["min"].to_numpy(dtype=np.int64),
            "cycle_to": grouped["max"].to_numpy(dtype=np.int64),
            "rows": grouped["size"].to_numpy(dtype=np.int64),
        }
    )


def _segments_by_time(keys: pd.DataFrame, config: SplitConfig, embargo: int) -> pd.DataFrame:
    """Cuts each machine's history into train | embargo | validation | embargo | test."""
    rows = []
    for machine, cycles in keys.groupby(schema.MACHINE, sort=True, observed=True)[schema.CYCLE]:
        c = np.sort(cycles.to_numpy())
        n = c.size
        n_test = round(config.test_fraction * n)
        n_val = round(config.validation_fraction * n)
        n_train = n - n_test - n_val - 2 * embargo
        if n_train < 1 or n_val < 1 or n_test < 1:
            raise SplitError(
                f"machine {machine} has {n} readings: too few for a time split with an "
                f"embargo of {embargo} readings between splits"
            )
        bounds = np.cumsum([0, n_train, embargo, n_val, embargo, n_test])
        for name, lo, hi in zip(
            (TRAIN, EMBARGO, VALIDATION, EMBARGO, TEST), bounds[:-1], bounds[1:], strict=True
        ):
            if hi > lo:
                rows.append((str(machine), name, int(c[lo]), int(c[hi - 1]), int(hi - lo)))
    return pd.DataFrame(rows, columns=list(SEGMENT_COLUMNS))


def reading_groups(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """A hash per row of ``columns``, equal for identical readings (kept whole by a row split)."""
    if not columns:
        return np.arange(len(frame), dtype=np.uint64)
    return pd.util.hash_pandas_object(frame[list(columns)], index=False).to_numpy()


def _rows_by_label(frame: pd.DataFrame, plan: SplitPlan, config: SplitConfig) -> np.ndarray:
    """Split name per row: groups of identical readings drawn at random within each label."""
    from sklearn.model_selection import train_test_split

    groups = pd.DataFrame(
        {"group": reading_groups(frame, plan.reading_columns), "label": frame[schema.LABEL]}
    )
    per_group = groups.groupby("group", sort=True)["label"].max()
    counts = per_group.value_counts()
    if len(counts) < 2 or counts.min() < 3:
        raise SplitError(
            f"a stratified row split needs at least 3 distinct readings of each label; "
            f"found {counts.to_dict()} in `{schema.LABEL}`"
        )
    ids = per_group.index.to_numpy()
    labels = per_group.to_numpy()
    rest, test = train_test_split(
        ids, test_size=config.test_fraction, stratify=labels, random_state=config.seed
    )
    rest_labels = per_group.loc[rest].to_numpy()
    share = config.validation_fraction / (1.0 - config.test_fraction)
    _, validation = train_test_split(
        rest, test_size=share, stratify=rest_labels, random_state=config.seed
    )
    name = pd.Series(TRAIN, index=ids, dtype=object)
    name.loc[test] = TEST
    name.loc[validation] = VALIDATION
    return name.loc[groups["group"].to_numpy()].to_numpy()


def _runs(keys: pd.DataFrame, split: np.ndarray) -> pd.DataFrame:
    """Segments of consecutive readings (per machine, by cycle) that share a split."""
    table = keys.assign(split=split).sort_values([schema.MACHINE, schema.CYCLE], kind="stable")
    machine = table[schema.MACHINE].to_numpy()
    name = table["split"].to_numpy()
    starts = np.ones(len(table), dtype=bool)
    starts[1:] = (machine[1:] != machine[:-1]) | (name[1:] != name[:-1])
    run = np.cumsum(starts)
    cycles = table[schema.CYCLE].to_numpy(dtype=np.int64)
    grouped = pd.DataFrame({"run": run, "cycle": cycles}).groupby("run", sort=True)["cycle"]
    first = np.flatnonzero(starts)
    return pd.DataFrame(
        {
            schema.MACHINE: machine[first].astype(str),
            "split": name[first],
            "cycle_from": grouped.min().to_numpy(dtype=np.int64),
            "cycle_to": grouped.max().to_numpy(dtype=np.int64),
            "rows": grouped.size().to_numpy(dtype=np.int64),
        }
    )


def assign_splits(
    frame: pd.DataFrame,
    info: schema.DatasetInfo,
    config: SplitConfig | None = None,
    plan: SplitPlan | None = None,
) -> pd.DataFrame:
    """Decides the split of every reading.

    Args:
        frame: Canonical telemetry (needs machine_id, cycle; source_split where the source
            fixes its test set; the label and reading columns for a row split).
        info: Column roles: ``info.ordered`` and ``info.horizon`` decide the shape.
        config: Split settings.
        plan: The shape to follow; :func:`plan_split` decides it when None.

    Returns:
        Segments with columns :data:`SEGMENT_COLUMNS`, sorted by machine and cycle.

    Raises:
        SplitError: The data is too small or too unlabelled for the split its shape needs.
    """
    config = config or SplitConfig()
    plan = plan or plan_split(frame, info, config)
    keys = frame[[schema.MACHINE, schema.CYCLE]].copy()
    keys[schema.MACHINE] = keys[schema.MACHINE].astype(str)
    if plan.shape == BY_TIME:
        segments = _segments_by_time(keys, config, plan.embargo)
    elif plan.shape == BY_ROW:
        segments = _runs(keys, _rows_by_label(frame, plan, config))
    else:
        source = (
            frame[schema.SOURCE_SPLIT].astype(str)
            if schema.SOURCE_SPLIT in frame
            else pd.Series("", index=frame.index)
        )
        segments = _segments_by_machine(keys, source, config)
    return segments.sort_values([schema.MACHINE, "cycle_from"], kind="stable").reset_index(
        drop=True
    )


def split_of_rows(frame: pd.DataFrame, segments: pd.DataFrame) -> np.ndarray:
    """Looks up the split of each row of ``frame`` (machine_id, cycle) in ``segments``.

    Returns:
        Object array of split names; rows outside every segment get ``""``.
    """
    keys = pd.DataFrame(
        {
            schema.MACHINE: frame[schema.MACHINE].astype(str).to_numpy(),
            schema.CYCLE: frame[schema.CYCLE].to_numpy(dtype=np.int64),
            "_row": np.arange(len(frame)),
        }
    ).sort_values(schema.CYCLE, kind="stable")
    table = segments[[schema.MACHINE, "split", "cycle_from", "cycle_to"]].astype(
        {schema.MACHINE: str, "cycle_from": np.int64, "cycle_to": np.int64}
    )
    merged = pd.merge_asof(
        keys,
        table.sort_values("cycle_from", kind="stable"),
        left_on=schema.CYCLE,
        right_on="cycle_from",
        by=schema.MACHINE,
        direction="backward",
    )
    inside = (merged[schema.CYCLE] <= merged["cycle_to"]).to_numpy()
    result = np.full(len(frame), "", dtype=object)
    result[merged["_row"].to_numpy()[inside]] = merged["split"].to_numpy()[inside]
    return result


def _overlaps(machine: str, seg: pd.DataFrame) -> list[str]:
    """Segments of one machine that share readings (a reading in two places)."""
    ordered = seg.sort_values("cycle_from")
    if np.any(ordered["cycle_from"].to_numpy()[1:] <= ordered["cycle_to"].to_numpy()[:-1]):
        return [f"machine {machine}: split segments overlap in time"]
    return []


def _time_problems(machine: str, seg: pd.DataFrame, embargo: int) -> list[str]:
    """A time split's rules for one machine: order, no overlap, enough embargo between."""
    used = seg[seg["split"].isin(SPLITS)].sort_values("cycle_from")
    if used["split"].nunique() <= 1:
        return []
    problems = []
    order = [SPLITS.index(s) for s in used["split"]]
    if order != sorted(order):
        problems.append(f"machine {machine}: splits out of time order {list(used['split'])}")
    problems += _overlaps(machine, used)
    for prev, nxt in zip(used.itertuples(), list(used.itertuples())[1:], strict=False):
        if prev.split != nxt.split:
            between = seg[(seg["cycle_from"] > prev.cycle_to) & (seg["cycle_to"] < nxt.cycle_from)]
            held = int(between.loc[between["split"] == EMBARGO, "rows"].sum())
            if held == 0:
                problems.append(
                    f"machine {machine}: no embargo between {prev.split} and {nxt.split}"
                )
            elif held < embargo:
                problems.append(
                    f"machine {machine}: {held} embargoed readings between {prev.split} and "
                    f"{nxt.split}, fewer than the horizon of {embargo}"
                )
    return problems


def _identical_across_splits(
    readings: pd.DataFrame, segments: pd.DataFrame, plan: SplitPlan
) -> list[str]:
    """Identical readings (same values in every reading column) found in two splits."""
    split = split_of_rows(readings, segments)
    groups = pd.DataFrame({"group": reading_groups(readings, plan.reading_columns), "split": split})
    groups = groups[groups["split"].isin(SPLITS)]
    spread = groups.groupby("group")["split"].nunique()
    shared = int((spread > 1).sum())
    if shared:
        return [f"{shared} identical reading(s) appear in more than one split"]
    return []


def leakage_problems(
    segments: pd.DataFrame, plan: SplitPlan, readings: pd.DataFrame | None = None
) -> list[str]:
    """Finds ways the split could leak, by the rules of its shape (module docstring).

    Args:
        segments: Split segments.
        plan: The plan the split followed.
        readings: The split telemetry; a row split needs it to find identical readings on
            two sides.

    Returns:
        Readable problems; empty when the split is clean.
    """
    problems: list[str] = []
    for machine, seg in segments.groupby(schema.MACHINE, sort=True):
        if plan.shape == BY_TIME:
            problems += _time_problems(str(machine), seg, plan.embargo)
            continue
        problems += _overlaps(str(machine), seg)
        used = sorted(set(seg["split"]) & set(SPLITS), key=SPLITS.index)
        if plan.shape == BY_MACHINE and len(used) > 1:
            problems.append(f"machine {machine}: in {len(used)} splits {used}")
    if plan.shape == BY_ROW:
        if readings is None:
            raise ValueError("a row split's check needs the readings (identical rows)")
        problems += _identical_across_splits(readings, segments, plan)
    return problems
