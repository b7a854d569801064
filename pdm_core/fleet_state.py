"""The fleet's current state: each machine's newest score, how old it is, and who went silent.

``fleet_health`` is what a maintenance engineer opens in the morning. It merges two sources
of scores: the champion's score of each machine's latest window in the training source (so
the report exists right after the first training, before any batch has landed) and the live
scores in ``pdm.risk_history``, which win for every machine they cover because they are newer.

Age and silence are measured on the fleet's own clock, the newest reading of any machine,
not on the wall clock: a replayed history or a simulator feed then reads the same as a live
fleet, and one machine that stops reporting stands out against the others that do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pdm_core import schema

if TYPE_CHECKING:
    import pandas as pd

SOURCE_COLUMN = "scored_from"
"""``training_source`` or ``live`` (a row of ``pdm.risk_history``)."""
AGE_COLUMN = "reading_age"
SILENT_COLUMN = "silent"


def newest_per_machine(scores: pd.DataFrame) -> pd.DataFrame:
    """Each machine's row with the highest cycle (ties: the later row wins)."""
    if scores.empty:
        return scores
    ordered = scores.sort_values([schema.MACHINE, schema.CYCLE], kind="stable")
    return ordered.groupby(schema.MACHINE, sort=False, observed=True).tail(1)


def current_state(
    source_scores: pd.DataFrame,
    live_scores: pd.DataFrame,
    silent_after: pd.Timedelta,
) -> pd.DataFrame:
    """One row per machine: its newest score, the reading's age and whether it is silent.

    Args:
        source_scores: Scores of each machine's latest window in the training source.
        live_scores: Rows of ``pdm.risk_history`` (any number per machine).
        silent_after: A machine whose newest reading is older than this on the fleet's
            clock is silent.

    Returns:
        The rows of both inputs' columns plus ``scored_from``, ``reading_age`` (a timedelta,
        NaT where the source has no timestamps) and ``silent``.
    """
    import pandas as pd

    live = newest_per_machine(live_scores).assign(**{SOURCE_COLUMN: "live"})
    source = source_scores.assign(**{SOURCE_COLUMN: "training_source"})
    covered = set(live[schema.MACHINE].astype(str)) if not live.empty else set()
    source = source[~source[schema.MACHINE].astype(str).isin(covered)]
    parts = [frame for frame in (live, source) if not frame.empty]
    if not parts:
        return source.assign(
            **{AGE_COLUMN: pd.Series(dtype="timedelta64[ns]"), SILENT_COLUMN: False}
        )
    state = pd.concat(parts, ignore_index=True)
    state[schema.MACHINE] = state[schema.MACHINE].astype(str)
    if schema.TIMESTAMP in state.columns:
        stamps = pd.to_datetime(state[schema.TIMESTAMP])
        age = stamps.max() - stamps
    else:
        age = pd.Series(pd.NaT, index=state.index, dtype="timedelta64[ns]")
    state[AGE_COLUMN] = age
    state[SILENT_COLUMN] = (age > silent_after).fillna(False).to_numpy(dtype=bool)
    return state


def silent_machines(state: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`current_state` whose machine is silent, oldest reading first."""
    silent = state[state[SILENT_COLUMN].to_numpy(dtype=bool)]
    return silent.sort_values(AGE_COLUMN, ascending=False, kind="stable")


def levels_count(state: pd.DataFrame, levels: tuple[str, ...]) -> dict[str, int]:
    """Machines per risk level, every level listed (zeros included)."""
    counts = state["risk_level"].value_counts() if len(state) else {}
    return {level: int(np.int64(counts.get(level, 0))) for level in levels}
