"""Leak-free train/validation/test splits: by machine, or by time with an embargo.

A split is a table of segments ``(machine_id, split, cycle_from, cycle_to, rows)``. Splitting
by machine gives one segment per machine, so no machine's history is on both sides. When
there are too few machines, each machine's history is cut by time instead, and ``horizon``
readings between two splits are set aside as ``"embargo"``: their labels look ahead into the
next split's period. C-MAPSS ships its own test engines, which stay the test split.
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


@dataclass(frozen=True)
class SplitConfig:
    """How to split.

    Attributes:
        validation_fraction: Share of machines (or of each machine's time) for validation.
        test_fraction: Share for test (ignored when the source fixes its test set).
        seed: Seed of the machine shuffle.
        min_machines: Below this many machines, split by time instead of by machine.
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
            raise ValueError(
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


def assign_splits(
    frame: pd.DataFrame, info: schema.DatasetInfo, config: SplitConfig | None = None
) -> pd.DataFrame:
    """Decides the split of every reading.

    Args:
        frame: Canonical telemetry (needs machine_id, cycle, source_split).
        info: Column roles; ``info.horizon`` sets the embargo of time splits.
        config: Split settings.

    Returns:
        Segments with columns :data:`SEGMENT_COLUMNS`, sorted by machine and cycle.
    """
    config = config or SplitConfig()
    keys = frame[[schema.MACHINE, schema.CYCLE]].copy()
    keys[schema.MACHINE] = keys[schema.MACHINE].astype(str)
    source = (
        frame[schema.SOURCE_SPLIT].astype(str)
        if schema.SOURCE_SPLIT in frame
        else pd.Series("", index=frame.index)
    )
    machines = sorted(keys[schema.MACHINE].unique().tolist())
    fixed_test = set(keys.loc[source.to_numpy() == TEST, schema.MACHINE])
    if fixed_test:
        rest = [m for m in machines if m not in fixed_test]
        fraction = config.validation_fraction / (1.0 - config.test_fraction)
        assignment = _by_machine(rest, (fraction, 0.0), config.seed)
        assignment.update({m: TEST for m in fixed_test})
    elif len(machines) >= config.min_machines:
        assignment = _by_machine(
            machines, (config.validation_fraction, config.test_fraction), config.seed
        )
    else:
        return _segments_by_time(keys, config, embargo=int(info.horizon or 0))
    grouped = keys.groupby(schema.MACHINE, sort=True)[schema.CYCLE].agg(["min", "max", "size"])
    segments = pd.DataFrame(
        {
            schema.MACHINE: grouped.index.astype(str),
            "split": [assignment[m] for m in grouped.index],
            "cycle_from": grouped["min"].to_numpy(dtype=np.int64),
            "cycle_to": grouped["max"].to_numpy(dtype=np.int64),
            "rows": grouped["size"].to_numpy(dtype=np.int64),
        }
    )
    return segments.reset_index(drop=True)


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
    )
    merged = keys.merge(segments, on=schema.MACHINE, how="left")
    inside = (merged[schema.CYCLE] >= merged["cycle_from"]) & (
        merged[schema.CYCLE] <= merged["cycle_to"]
    )
    result = np.full(len(frame), "", dtype=object)
    hits = merged[inside]
    result[hits["_row"].to_numpy()] = hits["split"].to_numpy()
    return result


def leakage_problems(segments: pd.DataFrame) -> list[str]:
    """Finds ways the split could leak: a machine in two splits with overlapping or reversed time.

    Returns:
        Readable problems; empty when the split is clean.
    """
    problems = []
    for machine, seg in segments.groupby(schema.MACHINE, sort=True):
        used = seg[seg["split"].isin(SPLITS)].sort_values("cycle_from")
        if used["split"].nunique() <= 1:
            continue
        order = [SPLITS.index(s) for s in used["split"]]
        if order != sorted(order):
            problems.append(f"machine {machine}: splits out of time order {list(used['split'])}")
        ends = used["cycle_to"].to_numpy()[:-1]
        starts = used["cycle_from"].to_numpy()[1:]
        if np.any(starts <= ends):
            problems.append(f"machine {machine}: split segments overlap in time")
        for prev, nxt in zip(used.itertuples(), list(used.itertuples())[1:], strict=False):
            if prev.split != nxt.split:
                between = seg[
                    (seg["cycle_from"] > prev.cycle_to) & (seg["cycle_to"] < nxt.cycle_from)
                ]
                if not (between["split"] == EMBARGO).any():
                    problems.append(
                        f"machine {machine}: no embargo between {prev.split} and {nxt.split}"
                    )
    return problems
