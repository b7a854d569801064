"""The live benchmark's judge of alerts against failures (``benchmarks.live_quality``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks.live_quality import (
    daily_alerts,
    failures_of,
    fit_threshold_rule,
    warning_quality,
)

HORIZON = 10


def keys(pairs: list[tuple[str, int]]) -> pd.DataFrame:
    return pd.DataFrame(pairs, columns=["machine_id", "cycle"])


def scored(machine: str, first: int, last: int) -> pd.DataFrame:
    return keys([(machine, c) for c in range(first, last + 1)])


def test_alert_inside_the_horizon_warns_with_its_lead() -> None:
    q = warning_quality(keys([("m1", 93)]), keys([("m1", 100)]), scored("m1", 1, 200), HORIZON)
    assert (q.failures, q.warned, q.median_lead) == (1, 1, 7.0)
    assert (q.true_alerts, q.false_alerts, q.censored_alerts) == (1, 0, 0)
    assert q.warned_share == 1.0 and q.precision == 1.0


def test_alert_before_the_horizon_is_false_and_does_not_warn() -> None:
    q = warning_quality(keys([("m1", 85)]), keys([("m1", 100)]), scored("m1", 1, 200), HORIZON)
    assert (q.failures, q.warned, q.median_lead) == (1, 0, None)
    assert (q.true_alerts, q.false_alerts) == (0, 1)
    assert q.false_per_1000 == pytest.approx(1000 / 200)
    # judged in twice the horizon, the same alert warns 15 readings ahead
    wide = warning_quality(keys([("m1", 85)]), keys([("m1", 100)]), scored("m1", 1, 200), 20)
    assert (wide.warned, wide.median_lead, wide.true_alerts) == (1, 15.0, 1)


def test_failures_without_a_whole_scored_horizon_and_open_ended_alerts() -> None:
    failures = keys([("m1", 5), ("m1", 100), ("m2", 50)])  # m1@5: horizon before scoring
    alerts = keys([("m1", 195), ("m3", 10)])  # m1@195: the span ends before its outcome
    q = warning_quality(alerts, failures, scored("m1", 1, 200), HORIZON)
    assert q.failures == 1  # m2 was never scored, m1@5 lacks its horizon
    assert (q.true_alerts, q.false_alerts, q.censored_alerts) == (0, 0, 2)
    assert q.precision is None


def test_failures_are_the_last_readings_of_failing_lifecycles() -> None:
    truth = pd.DataFrame(
        {
            "machine_id": ["a", "a", "a", "b"],
            "cycle": [1, 2, 3, 7],
            "rul": [1.0, 0.0, 5.0, 0.0],
            "failure_within_h": [1, 1, 0, 0],  # b's life ended in maintenance, not failure
        }
    )
    assert failures_of(truth).to_dict("records") == [{"machine_id": "a", "cycle": 2}]


def test_threshold_rule_learns_the_direction_and_fires_past_it() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    label = (rng.random(n) < 0.1).astype(int)
    training = pd.DataFrame(
        {
            "vibration": rng.normal(0, 1, n) + 4 * label,  # rises before a failure
            "pressure": rng.normal(0, 1, n) - 4 * label,  # falls before a failure
            "failure_within_h": label,
        }
    )
    rule = fit_threshold_rule(training, ["vibration", "pressure"])
    assert rule.upper == {"vibration": True, "pressure": False}
    probe = pd.DataFrame({"vibration": [0.0, 6.0, 0.0], "pressure": [0.0, 0.0, -6.0]})
    assert rule.fires(probe).tolist() == [False, True, True]


def test_daily_alerts_keep_the_first_reading_per_machine_and_day() -> None:
    readings = pd.DataFrame(
        {
            "machine_id": ["a", "a", "a", "b"],
            "cycle": [1, 2, 3, 1],
            "timestamp": pd.to_datetime(
                ["2026-01-01 10:00", "2026-01-01 23:50", "2026-01-02 00:00", "2026-01-01 10:00"]
            ),
        }
    )
    fired = np.array([True, True, True, False])
    assert daily_alerts(readings, fired).to_dict("records") == [
        {"machine_id": "a", "cycle": 1},
        {"machine_id": "a", "cycle": 3},
    ]
