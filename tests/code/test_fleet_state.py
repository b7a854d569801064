"""The fleet's current state from training-source scores and live scores."""

from __future__ import annotations

import pandas as pd

from pdm_core.fleet_state import current_state, levels_count, newest_per_machine, silent_machines

T0 = pd.Timestamp("2026-01-01")


def scores(rows: list[tuple[str, int, int, str]]) -> pd.DataFrame:
    """(machine, cycle, minutes after T0, level) rows."""
    return pd.DataFrame(
        {
            "machine_id": [r[0] for r in rows],
            "cycle": [r[1] for r in rows],
            "timestamp": [T0 + pd.Timedelta(minutes=r[2]) for r in rows],
            "risk_level": [r[3] for r in rows],
        }
    )


def test_live_scores_replace_the_source_score_of_the_machines_they_cover() -> None:
    source = scores([("a", 10, 100, "LOW"), ("b", 10, 100, "LOW")])
    live = scores([("a", 12, 120, "HIGH"), ("a", 11, 110, "MEDIUM")])
    state = current_state(source, live, pd.Timedelta(hours=1)).set_index("machine_id")

    assert state.loc["a", "cycle"] == 12
    assert state.loc["a", "risk_level"] == "HIGH"
    assert state.loc["a", "scored_from"] == "live"
    assert state.loc["b", "scored_from"] == "training_source"
    assert state.loc["b", "reading_age"] == pd.Timedelta(minutes=20)


def test_a_machine_behind_the_fleet_clock_by_more_than_the_limit_is_silent() -> None:
    live = scores([("a", 5, 0, "LOW"), ("b", 50, 90, "LOW"), ("c", 59, 30, "LOW")])
    state = current_state(live.iloc[0:0], live, pd.Timedelta(minutes=60))

    assert list(silent_machines(state)["machine_id"]) == ["a"]
    assert dict(zip(state["machine_id"], state["silent"], strict=True)) == {
        "a": True, "b": False, "c": False,
    }  # fmt: skip


def test_before_any_batch_has_landed_the_source_scores_are_the_state() -> None:
    source = scores([("a", 10, 100, "CRITICAL")])
    state = current_state(source, source.iloc[0:0], pd.Timedelta(hours=1))
    assert list(state["scored_from"]) == ["training_source"]
    assert levels_count(state, ("LOW", "CRITICAL")) == {"LOW": 0, "CRITICAL": 1}


def test_newest_per_machine_takes_the_highest_cycle_whatever_the_row_order() -> None:
    live = scores([("a", 3, 3, "LOW"), ("a", 9, 9, "HIGH"), ("a", 5, 5, "LOW")])
    assert list(newest_per_machine(live)["cycle"]) == [9]
