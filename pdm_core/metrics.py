"""Metrics that evaluate the models: RUL regression, failure classification, anomaly alarms.

Metric names are fixed: they are logged to MLflow as ``test_<name>`` and compared by
:mod:`pdm_core.promotion`, which reads their direction from :data:`HIGHER_IS_BETTER`.

Every function validates its inputs and raises :class:`ValueError` with a readable message on
mismatched lengths, empty inputs or non-finite values.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from pdm_core import schema

CLASSIFIER_METRICS: tuple[str, ...] = ("roc_auc", "pr_auc", "f1", "precision", "recall", "brier")
"""Metrics of the failure-within-horizon classifier."""

RUL_METRICS: tuple[str, ...] = ("rmse", "mae", "nasa_score")
"""Metrics of the remaining-useful-life regressor."""

ANOMALY_METRICS: tuple[str, ...] = (
    "anomaly_detection_rate",
    "anomaly_lead_time",
    "false_alarms_per_machine_day",
)
"""Metrics of the anomaly detector's alarms."""

HIGHER_IS_BETTER: dict[str, bool] = {
    "roc_auc": True,
    "pr_auc": True,
    "f1": True,
    "precision": True,
    "recall": True,
    "brier": False,
    "rmse": False,
    "mae": False,
    "nasa_score": False,
    "anomaly_detection_rate": True,
    "anomaly_lead_time": True,
    "false_alarms_per_machine_day": False,
}
"""Direction of every metric above: True when a larger value is better."""

# Constants of the C-MAPSS scoring function (Saxena et al., 2008).
_NASA_EARLY = 13.0
_NASA_LATE = 10.0


def _as_array(name: str, values: ArrayLike) -> np.ndarray:
    """Converts ``values`` to a finite, non-empty 1-D float64 array.

    Args:
        name: Argument name, used in error messages.
        values: Array-like of numbers.

    Returns:
        The values as a 1-D float64 array.

    Raises:
        ValueError: If the values are not numeric, not 1-D, empty, or contain NaN/inf.
    """
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numeric: {error}") from error
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    bad = ~np.isfinite(array)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN/inf value(s) (first at position {first})"
        )
    return array


def _paired(
    names: tuple[str, str], first: ArrayLike, second: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Validates two arrays of the same length.

    Args:
        names: Argument names of ``first`` and ``second``, used in error messages.
        first: First array-like.
        second: Second array-like.

    Returns:
        Both as 1-D float64 arrays.

    Raises:
        ValueError: If either is invalid (see :func:`_as_array`) or the lengths differ.
    """
    a = _as_array(names[0], first)
    b = _as_array(names[1], second)
    if a.size != b.size:
        raise ValueError(f"{names[0]} and {names[1]} have different lengths: {a.size} != {b.size}")
    return a, b


def _binary_labels(name: str, values: np.ndarray) -> np.ndarray:
    """Checks that labels are 0/1 and returns them as int8.

    Args:
        name: Argument name, used in error messages.
        values: Validated float array.

    Returns:
        The labels as an int8 array.

    Raises:
        ValueError: If a value other than 0 or 1 occurs.
    """
    bad = (values != 0) & (values != 1)
    if bad.any():
        raise ValueError(
            f"{name} must contain only 0/1 labels, found e.g. {values[bad][:5].tolist()}"
        )
    return values.astype(np.int8)


def _probabilities(name: str, values: np.ndarray) -> np.ndarray:
    """Checks that values are probabilities in [0, 1].

    Args:
        name: Argument name, used in error messages.
        values: Validated float array.

    Returns:
        ``values`` unchanged.

    Raises:
        ValueError: If a value lies outside [0, 1].
    """
    if values.min() < 0.0 or values.max() > 1.0:
        raise ValueError(
            f"{name} must lie in [0, 1], got range [{values.min():.6g}, {values.max():.6g}]"
        )
    return values


def nasa_score(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """The asymmetric C-MAPSS scoring function (lower is better, 0 is perfect).

    With ``d = y_pred - y_true``, each sample contributes ``exp(-d / 13) - 1`` when the
    prediction is early (``d < 0``) and ``exp(d / 10) - 1`` when it is late (``d >= 0``): a
    late prediction, which lets a machine fail, costs more than an early one.

    Args:
        y_true: True remaining useful life per sample.
        y_pred: Predicted remaining useful life per sample.

    Returns:
        The summed score.

    Raises:
        ValueError: On empty or mismatched inputs, or NaN/inf values.
    """
    true, pred = _paired(("y_true", "y_pred"), y_true, y_pred)
    d = pred - true
    penalty = np.where(d < 0, np.expm1(-d / _NASA_EARLY), np.expm1(d / _NASA_LATE))
    return float(penalty.sum())


def rul_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """Regression metrics of a remaining-useful-life model.

    Args:
        y_true: True remaining useful life per sample.
        y_pred: Predicted remaining useful life per sample.

    Returns:
        ``{"rmse", "mae", "nasa_score"}`` (see :data:`RUL_METRICS`).

    Raises:
        ValueError: On empty or mismatched inputs, or NaN/inf values.
    """
    import sklearn.metrics as skm  # imported here: sklearn costs seconds to import

    true, pred = _paired(("y_true", "y_pred"), y_true, y_pred)
    return {
        "rmse": float(skm.root_mean_squared_error(true, pred)),
        "mae": float(skm.mean_absolute_error(true, pred)),
        "nasa_score": nasa_score(true, pred),
    }


def classification_metrics(
    y_true: ArrayLike, proba: ArrayLike, threshold: float
) -> dict[str, float]:
    """Metrics of a failure-within-horizon classifier.

    A sample is predicted positive when ``proba >= threshold`` (the convention of
    :func:`sklearn.metrics.precision_recall_curve`, hence of :func:`best_f1_threshold`).

    Args:
        y_true: True 0/1 labels.
        proba: Predicted probability of the positive class, in [0, 1].
        threshold: Decision threshold, in [0, 1].

    Returns:
        ``roc_auc``, ``pr_auc`` (average precision), ``f1``, ``precision``, ``recall``,
        ``brier`` (Brier score of ``proba``), plus ``threshold``, ``positives`` (number of
        positive labels) and ``n`` (number of samples). When ``y_true`` holds a single class,
        ``roc_auc`` and ``pr_auc`` are NaN; the threshold metrics use ``zero_division=0``.

    Raises:
        ValueError: On empty or mismatched inputs, NaN/inf values, labels other than 0/1,
            probabilities or a threshold outside [0, 1].
    """
    import sklearn.metrics as skm  # imported here: sklearn costs seconds to import

    true, prob = _paired(("y_true", "proba"), y_true, proba)
    labels = _binary_labels("y_true", true)
    prob = _probabilities("proba", prob)
    if not (isinstance(threshold, int | float) and 0.0 <= float(threshold) <= 1.0):
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    predicted = (prob >= threshold).astype(np.int8)
    positives = int(labels.sum())
    both_classes = 0 < positives < labels.size
    return {
        "roc_auc": float(skm.roc_auc_score(labels, prob)) if both_classes else math.nan,
        "pr_auc": float(skm.average_precision_score(labels, prob)) if both_classes else math.nan,
        "f1": float(skm.f1_score(labels, predicted, labels=[0, 1], zero_division=0)),
        "precision": float(skm.precision_score(labels, predicted, labels=[0, 1], zero_division=0)),
        "recall": float(skm.recall_score(labels, predicted, labels=[0, 1], zero_division=0)),
        "brier": float(skm.brier_score_loss(labels, prob, pos_label=1)),
        "threshold": float(threshold),
        "positives": float(positives),
        "n": float(labels.size),
    }


def best_f1_threshold(y_true: ArrayLike, proba: ArrayLike) -> float:
    """The probability threshold that maximises F1 (predict positive when ``proba >= it``).

    Candidates are the thresholds of :func:`sklearn.metrics.precision_recall_curve`; on ties
    the lowest threshold (highest recall) wins.

    Args:
        y_true: True 0/1 labels.
        proba: Predicted probability of the positive class, in [0, 1].

    Returns:
        The best threshold, or 0.5 when ``y_true`` has no positives.

    Raises:
        ValueError: On empty or mismatched inputs, NaN/inf values, labels other than 0/1 or
            probabilities outside [0, 1].
    """
    import sklearn.metrics as skm  # imported here: sklearn costs seconds to import

    true, prob = _paired(("y_true", "proba"), y_true, proba)
    labels = _binary_labels("y_true", true)
    prob = _probabilities("proba", prob)
    if labels.sum() == 0:
        return 0.5
    precision, recall, thresholds = skm.precision_recall_curve(labels, prob)
    # The last (precision=1, recall=0) point has no threshold.
    precision, recall = precision[:-1], recall[:-1]
    denominator = precision + recall
    f1 = np.divide(
        2 * precision * recall,
        denominator,
        out=np.zeros_like(denominator),
        where=denominator > 0,
    )
    return float(thresholds[int(np.argmax(f1))])


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    """Raises ValueError naming the columns of ``columns`` missing from ``frame``."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks required column(s): {missing}")


def last_cycle_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The row with the largest cycle of every machine.

    This is the C-MAPSS test protocol: each test engine is scored at its last cycle.

    Args:
        frame: Frame with ``machine_id`` and ``cycle`` columns, in any order.

    Returns:
        One row per machine (original index kept), sorted by ``machine_id``.

    Raises:
        ValueError: If the frame is empty or lacks the columns.
    """
    _require_columns(frame, (schema.MACHINE, schema.CYCLE))
    if frame.empty:
        raise ValueError("frame is empty")
    last = frame.groupby(schema.MACHINE, observed=True, sort=True)[schema.CYCLE].idxmax()
    return frame.loc[last.to_numpy()]


def anomaly_metrics(
    frame: pd.DataFrame,
    score: ArrayLike,
    threshold: float,
    horizon: int,
    readings_per_day: float,
) -> dict[str, float]:
    """How well the anomaly detector's alarms (``score > threshold``) warn of failures.

    A failure event is a row with ``rul == 0``, identified by its machine and cycle. Its
    warning window is the contiguous run of that machine's rows (ordered by cycle) that ends at
    the failure row and has ``rul <= horizon``, within the same lifecycle (a lifecycle ends at
    a failure or where ``rul`` increases, i.e. after maintenance).

    Args:
        frame: Scored readings with ``machine_id``, ``cycle``, ``rul`` and
            ``failure_within_h``, in any order.
        score: Anomaly score per row of ``frame`` (same order).
        threshold: A row raises an alarm when its score is strictly above this.
        horizon: Length of the warning window, in readings before the failure.
        readings_per_day: Readings per machine per day, to turn rows into machine-days.

    Returns:
        * ``anomaly_detection_rate``: share of failure events with at least one alarm in their
          window (NaN when there is no failure event).
        * ``anomaly_lead_time``: mean over detected events of the ``rul`` at the first alarm
          in the window, i.e. readings of warning (NaN when none is detected).
        * ``false_alarms_per_machine_day``: alarms on rows with ``failure_within_h == 0``
          divided by the machine-days covered (rows of each machine / ``readings_per_day``,
          summed over machines).

    Raises:
        ValueError: On an empty frame, missing columns, a score of the wrong length or with
            NaN/inf values, or a non-positive ``horizon``/``readings_per_day``.
    """
    _require_columns(frame, (schema.MACHINE, schema.CYCLE, schema.RUL, schema.LABEL))
    if frame.empty:
        raise ValueError("frame is empty")
    scores = _as_array("score", score)
    if scores.size != len(frame):
        raise ValueError(f"score has {scores.size} values but frame has {len(frame)} rows")
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    if horizon < 0:
        raise ValueError(f"horizon must be >= 0, got {horizon}")
    if not readings_per_day > 0:
        raise ValueError(f"readings_per_day must be > 0, got {readings_per_day}")

    data = pd.DataFrame(
        {
            "machine": frame[schema.MACHINE].to_numpy(),
            "cycle": frame[schema.CYCLE].to_numpy(),
            "rul": frame[schema.RUL].to_numpy(dtype=np.float64, na_value=np.nan),
            "label": frame[schema.LABEL].to_numpy(dtype=np.float64, na_value=np.nan),
            "alarm": scores > threshold,
        }
    ).sort_values(["machine", "cycle"], kind="stable", ignore_index=True)

    machine_days = len(data) / float(readings_per_day)
    false_alarms = int((data["alarm"] & (data["label"] == 0)).sum())
    result = {
        "anomaly_detection_rate": math.nan,
        "anomaly_lead_time": math.nan,
        "false_alarms_per_machine_day": false_alarms / machine_days,
    }

    # Warning-window rows have rul <= horizon. A run is a maximal stretch of such rows within one
    # machine and lifecycle; every rul == 0 row ends its run, whose rows are its window.
    rul = data["rul"].to_numpy()
    machine = data["machine"].to_numpy()
    in_window = rul <= horizon  # False for NaN rul
    new_run = np.ones(len(data), dtype=bool)
    new_run[1:] = (
        (machine[1:] != machine[:-1])
        | ~in_window[:-1]
        | (rul[:-1] <= 0)  # the previous row was a failure: a new lifecycle starts
        | (rul[1:] > rul[:-1])  # rul went up (maintenance): a new lifecycle starts
    )
    run_id = np.cumsum(new_run)
    failure_runs = run_id[rul == 0]
    if failure_runs.size == 0:
        return result

    alarmed = in_window & data["alarm"].to_numpy()
    # Rows are in cycle order, so the first alarmed row of a run is its earliest alarm.
    first_alarm = pd.Series(rul[alarmed]).groupby(run_id[alarmed]).first()
    lead_times = first_alarm.reindex(failure_runs).dropna()
    result["anomaly_detection_rate"] = lead_times.size / failure_runs.size
    if lead_times.size:
        result["anomaly_lead_time"] = float(lead_times.mean())
    return result
