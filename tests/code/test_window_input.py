"""``window_input`` (plain arrays) against the obvious pandas statement of the same rule.

The batch's readings must come back with, per machine, the ``window_length - 1`` readings
before its first new cycle, sorted by machine and cycle, ``_new`` marking the batch's rows and
``_position`` counting each machine's readings from 1, older ones included.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pdm_core import schema
from pdm_core.live_scoring import window_input


def reference(batch: pd.DataFrame, history: pd.DataFrame, window_length: int) -> pd.DataFrame:
    """The same rows with groupby/sort, one machine at a time."""
    parts = []
    for machine, new in batch.groupby(schema.MACHINE):
        past = history[(history[schema.MACHINE] == machine)]
        past = past[past[schema.CYCLE] < new[schema.CYCLE].min()].sort_values(schema.CYCLE)
        kept = past.tail(window_length - 1)
        rows = pd.concat([kept.assign(_new=False), new.assign(_new=True)])
        rows = rows.sort_values(schema.CYCLE)
        rows["_position"] = np.arange(1, len(rows) + 1) + len(past) - len(kept)
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)


def readings(machines: list[str], cycles: list[np.ndarray]) -> pd.DataFrame:
    frames = [
        pd.DataFrame({schema.MACHINE: m, schema.CYCLE: c, "s1": c * 0.5})
        for m, c in zip(machines, cycles, strict=True)
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("seed", range(8))
def test_window_input_matches_the_pandas_statement(seed: int) -> None:
    rng = np.random.default_rng(seed)
    window_length = int(rng.integers(1, 12))
    machines = [f"M{i:02d}" for i in rng.permutation(9)]
    past, new = [], []
    for _ in machines:
        total = int(rng.integers(1, 60))
        cycles = np.sort(rng.choice(np.arange(1, 200), size=total, replace=False))
        cut = int(rng.integers(0, total))  # 0: a machine with no history at all
        past.append(cycles[:cut])
        new.append(cycles[cut:])
    history = readings(machines, past).sample(frac=1.0, random_state=seed)  # any row order
    # Readings of a machine the batch does not hold, and some after its first new cycle.
    stray = readings(["ZZ"], [np.arange(1, 30)])
    later = readings(machines[:1], [new[0][-1:] + 500])
    history = pd.concat([history, stray, later], ignore_index=True)
    batch = readings(machines, new).sample(frac=1.0, random_state=seed + 100)

    got = window_input(batch, history, window_length)
    want = reference(batch, history, window_length)
    columns = [schema.MACHINE, schema.CYCLE, "s1", "_new", "_position"]
    pd.testing.assert_frame_equal(
        got[columns].reset_index(drop=True), want[columns], check_dtype=False
    )


def test_window_input_without_history_marks_every_row_new() -> None:
    batch = readings(["B", "A"], [np.arange(5, 8), np.arange(1, 3)])
    got = window_input(batch, batch.iloc[:0], window_length=4)
    assert list(zip(got[schema.MACHINE], got[schema.CYCLE], strict=True)) == [
        ("A", 1), ("A", 2), ("B", 5), ("B", 6), ("B", 7),
    ]  # fmt: skip
    assert got["_new"].all()
    assert got["_position"].tolist() == [1, 2, 1, 2, 3]
