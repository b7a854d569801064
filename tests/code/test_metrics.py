"""Tests for the evaluation metrics: known values, edge cases and input validation."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from pdm_core import schema
from pdm_core.metrics import (
    ANOMALY_METRICS,
    CLASSIFIER_METRICS,
    HIGHER_IS_BETTER,
    RUL_METRICS,
    anomaly_metrics,
    best_f1_threshold,
    classification_metrics,
    last_cycle_rows,
    nasa_score,
    rul_metrics,
)

E1 = math.e - 1.0


def test_metric_names_all_have_a_direction() -> None:
    names = set(CLASSIFIER_METRICS) | set(RUL_METRICS) | set(ANOMALY_METRICS)
    assert names == set(HIGHER_IS_BETTER)
    assert not HIGHER_IS_BETTER["rmse"]
    assert not HIGHER_IS_BETTER["brier"]
    assert not HIGHER_IS_BETTER["false_alarms_per_machine_day"]
    assert HIGHER_IS_BETTER["pr_auc"]
    assert HIGHER_IS_BETTER["anomaly_lead_time"]


@pytest.mark.parametrize(
    ("y_true", "y_pred", "expected"),
    [
        ([50.0], [37.0], E1),  # d = -13: early, exp(1) - 1
        ([50.0], [60.0], E1),  # d = 10: late, exp(1) - 1
        ([50.0], [50.0], 0.0),  # d = 0
        ([50.0], [24.0], math.exp(2) - 1),  # d = -26
        ([50.0], [70.0], math.exp(2) - 1),  # d = 20
    ],
)
def test_nasa_score_known_values(y_true: list[float], y_pred: list[float], expected: float) -> None:
    assert nasa_score(y_true, y_pred) == pytest.approx(expected)


def test_nasa_score_sums_and_penalises_late_more() -> None:
    assert nasa_score([50, 50, 50], [37, 60, 50]) == pytest.approx(2 * E1)
    assert nasa_score([50], [55]) > nasa_score([50], [45])


def test_rul_metrics_tiny_example() -> None:
    result = rul_metrics([10, 20, 30, 40], [12, 18, 30, 44])  # errors 2, -2, 0, 4
    assert set(result) == set(RUL_METRICS)
    assert result["rmse"] == pytest.approx(math.sqrt((4 + 4 + 0 + 16) / 4))
    assert result["mae"] == pytest.approx(2.0)
    expected_nasa = math.expm1(0.2) + math.expm1(2 / 13) + 0.0 + math.expm1(0.4)
    assert result["nasa_score"] == pytest.approx(expected_nasa)
    assert all(isinstance(v, float) for v in result.values())


def test_classification_metrics_match_manual_computation() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.6, 0.3, 0.7, 0.2, 0.1, 0.4, 0.05])
    result = classification_metrics(y, p, threshold=0.5)
    assert set(CLASSIFIER_METRICS) <= set(result)
    # Predicted positive (p >= 0.5): 0.9, 0.6 (true), 0.7 (false) -> TP=2, FP=1, FN=1.
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 / 3)
    # ROC AUC: share of (pos, neg) pairs ranked correctly. Positives 0.9 > all 5 negatives,
    # 0.6 > 4 (not 0.7), 0.3 > 3 (0.2, 0.1, 0.05) -> 12 / 15.
    assert result["roc_auc"] == pytest.approx(12 / 15)
    # Average precision: ranking 0.9(+), 0.7(-), 0.6(+), 0.4(-), 0.3(+) ->
    # precision at each positive 1, 2/3, 3/5, each recall step 1/3.
    assert result["pr_auc"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert result["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert result["threshold"] == 0.5
    assert result["positives"] == 3
    assert result["n"] == 8


def test_classification_threshold_is_inclusive() -> None:
    result = classification_metrics([1, 0], [0.5, 0.4], threshold=0.5)
    assert result["recall"] == 1.0
    assert result["precision"] == 1.0


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_gives_nan_aucs(label: int) -> None:
    y = [label] * 4
    p = [0.1, 0.6, 0.2, 0.9]
    result = classification_metrics(y, p, threshold=0.5)
    assert math.isnan(result["roc_auc"])
    assert math.isnan(result["pr_auc"])
    assert result["brier"] == pytest.approx(np.mean((np.array(p) - label) ** 2))
    assert result["positives"] == 4 * label
    if label == 0:
        assert result["f1"] == 0.0
        assert result["precision"] == 0.0
        assert result["recall"] == 0.0
    else:
        assert result["precision"] == 1.0
        assert result["recall"] == 0.5


def test_best_f1_threshold_separates_a_separable_example() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    p = np.array([0.05, 0.2, 0.3, 0.35, 0.6, 0.8, 0.95])
    threshold = best_f1_threshold(y, p)
    assert 0.35 < threshold <= 0.6
    assert classification_metrics(y, p, threshold)["f1"] == 1.0


def test_best_f1_threshold_maximises_f1() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=200)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, size=200), 0, 1)
    best = best_f1_threshold(y, p)
    f1_best = f1_score(y, p >= best)
    assert f1_best == pytest.approx(classification_metrics(y, p, best)["f1"])
    for candidate in np.unique(p):
        assert f1_score(y, p >= candidate) <= f1_best + 1e-12


def test_best_f1_threshold_without_positives_is_half() -> None:
    assert best_f1_threshold([0, 0, 0], [0.1, 0.9, 0.4]) == 0.5


def test_last_cycle_rows() -> None:
    frame = pd.DataFrame(
        {
            schema.MACHINE: ["b", "a", "a", "b", "a", "c"],
            schema.CYCLE: [5, 1, 3, 2, 2, 7],
            "value": [10.0, 1.0, 3.0, 20.0, 2.0, 70.0],
        }
    )
    last = last_cycle_rows(frame)
    assert last[schema.MACHINE].tolist() == ["a", "b", "c"]
    assert last[schema.CYCLE].tolist() == [3, 5, 7]
    assert last["value"].tolist() == [3.0, 10.0, 70.0]


def test_last_cycle_rows_works_with_categorical_machine_ids() -> None:
    frame = pd.DataFrame({schema.MACHINE: ["x", "y", "x"], schema.CYCLE: [1, 4, 2]})
    frame[schema.MACHINE] = frame[schema.MACHINE].astype("category")
    assert last_cycle_rows(frame)[schema.CYCLE].tolist() == [2, 4]


HORIZON = 3


def machine_rows(machine: str, rul: list[float], fails: bool = True) -> pd.DataFrame:
    rul_array = np.asarray(rul, dtype=float)
    return pd.DataFrame(
        {
            schema.MACHINE: machine,
            schema.CYCLE: np.arange(1, len(rul) + 1, dtype=np.int64),
            schema.RUL: rul_array,
            schema.LABEL: ((rul_array <= HORIZON) & fails).astype(np.int8),
        }
    )


def scored(frame: pd.DataFrame, alarms: dict[tuple[str, int], float]) -> np.ndarray:
    keys = zip(frame[schema.MACHINE], frame[schema.CYCLE], strict=True)
    return np.array([alarms.get((m, int(c)), 0.0) for m, c in keys])


def test_anomaly_metrics_two_machines() -> None:
    # Machine a: rul 7..0. Alarms at rul 6 and 4 (label 0: false alarms) and at rul 2 and 1
    # (inside the 3-reading window): detected, lead time 2.
    # Machine b: rul 7..0. Alarms at rul 7 and 5 only (false alarms): the failure is missed.
    frame = pd.concat(
        [machine_rows("a", [7, 6, 5, 4, 3, 2, 1, 0]), machine_rows("b", [7, 6, 5, 4, 3, 2, 1, 0])],
        ignore_index=True,
    )
    alarms = {("a", 2): 0.9, ("a", 4): 0.8, ("a", 6): 0.7, ("a", 7): 0.95}
    alarms |= {("b", 1): 0.6, ("b", 3): 0.99}
    # Shuffle the rows: the function must not rely on the input order.
    frame = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    score = scored(frame, alarms)
    result = anomaly_metrics(frame, score, threshold=0.5, horizon=HORIZON, readings_per_day=4)
    assert set(result) == set(ANOMALY_METRICS)
    assert result["anomaly_detection_rate"] == 0.5
    assert result["anomaly_lead_time"] == 2.0
    # 4 false alarms over 2 machines x 8 readings / 4 per day = 4 machine-days.
    assert result["false_alarms_per_machine_day"] == pytest.approx(1.0)


def test_anomaly_threshold_is_strict() -> None:
    frame = machine_rows("a", [3, 2, 1, 0])
    result = anomaly_metrics(
        frame, [0.5, 0.5, 0.5, 0.5], threshold=0.5, horizon=HORIZON, readings_per_day=1
    )
    assert result["anomaly_detection_rate"] == 0.0
    assert math.isnan(result["anomaly_lead_time"])
    assert result["false_alarms_per_machine_day"] == 0.0


def test_anomaly_windows_respect_lifecycles() -> None:
    # One machine, three lifecycles: maintained at rul 2 (no failure), then two failures, every
    # boundary inside the warning band. The alarm at rul 2 of the maintained lifecycle is a false
    # alarm and must not count for the first failure, which is missed; the second failure is
    # detected at rul 3.
    rul = [5, 4, 3, 2, 3, 2, 1, 0, 3, 2, 1, 0]
    fails = np.array([False] * 4 + [True] * 8)
    frame = machine_rows("m", rul)
    frame[schema.LABEL] = ((frame[schema.RUL] <= HORIZON) & fails).astype(np.int8)
    score = np.zeros(len(rul))
    score[3] = 1.0
    score[8] = 1.0
    result = anomaly_metrics(frame, score, threshold=0.5, horizon=HORIZON, readings_per_day=12)
    assert result["anomaly_detection_rate"] == 0.5
    assert result["anomaly_lead_time"] == 3.0
    assert result["false_alarms_per_machine_day"] == pytest.approx(1.0)


def test_anomaly_lead_time_averages_detected_events() -> None:
    frame = pd.concat(
        [machine_rows("a", [4, 3, 2, 1, 0]), machine_rows("b", [4, 3, 2, 1, 0])],
        ignore_index=True,
    )
    score = scored(frame, {("a", 2): 1.0, ("a", 5): 1.0, ("b", 4): 1.0})  # rul 3, 0 and 1
    result = anomaly_metrics(frame, score, threshold=0.5, horizon=HORIZON, readings_per_day=1)
    assert result["anomaly_detection_rate"] == 1.0
    assert result["anomaly_lead_time"] == pytest.approx((3 + 1) / 2)
    assert result["false_alarms_per_machine_day"] == 0.0


def test_anomaly_metrics_without_failures_are_nan() -> None:
    frame = machine_rows("a", [9, 8, 7, 6], fails=False)
    result = anomaly_metrics(frame, [0, 1, 0, 0], threshold=0.5, horizon=3, readings_per_day=2)
    assert math.isnan(result["anomaly_detection_rate"])
    assert math.isnan(result["anomaly_lead_time"])
    assert result["false_alarms_per_machine_day"] == pytest.approx(1 / 2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: nasa_score([1, 2], [1]), "different lengths"),
        (lambda: nasa_score([], []), "empty"),
        (lambda: rul_metrics([1, 2], [1, float("nan")]), "NaN"),
        (lambda: rul_metrics([1, 2], [1, float("inf")]), "NaN/inf"),
        (lambda: rul_metrics([[1, 2]], [[1, 2]]), "1-dimensional"),
        (lambda: classification_metrics([0, 1], [0.2], 0.5), "different lengths"),
        (lambda: classification_metrics([0, 1], [0.2, float("nan")], 0.5), "NaN"),
        (lambda: classification_metrics([0, 2], [0.2, 0.4], 0.5), "0/1"),
        (lambda: classification_metrics([0, 1], [0.2, 1.4], 0.5), r"\[0, 1\]"),
        (lambda: classification_metrics([0, 1], [0.2, 0.4], 1.5), "threshold"),
        (lambda: best_f1_threshold([], []), "empty"),
        (lambda: best_f1_threshold([0, 1], [0.3, float("nan")]), "NaN"),
        (lambda: last_cycle_rows(pd.DataFrame({schema.MACHINE: ["a"]})), "cycle"),
        (lambda: last_cycle_rows(pd.DataFrame({schema.MACHINE: [], schema.CYCLE: []})), "empty"),
    ],
)
def test_input_validation(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_anomaly_input_validation() -> None:
    frame = machine_rows("a", [3, 2, 1, 0])
    with pytest.raises(ValueError, match="4 rows"):
        anomaly_metrics(frame, [0.1, 0.2], 0.5, HORIZON, 1)
    with pytest.raises(ValueError, match="NaN"):
        anomaly_metrics(frame, [0.1, 0.2, float("nan"), 0.3], 0.5, HORIZON, 1)
    with pytest.raises(ValueError, match="failure_within_h"):
        anomaly_metrics(frame.drop(columns=schema.LABEL), [0.0] * 4, 0.5, HORIZON, 1)
    with pytest.raises(ValueError, match="empty"):
        anomaly_metrics(frame.iloc[:0], [], 0.5, HORIZON, 1)
    with pytest.raises(ValueError, match="readings_per_day"):
        anomaly_metrics(frame, [0.0] * 4, 0.5, HORIZON, 0)
    with pytest.raises(ValueError, match="horizon"):
        anomaly_metrics(frame, [0.0] * 4, 0.5, -1, 1)
