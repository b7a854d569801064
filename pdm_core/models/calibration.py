"""Probability calibration of the risk classifier (Platt scaling on the validation split).

The candidates are trained class-weighted (failures are rare), which buys recall at the price
of probabilities that overstate the risk: a raw 0.5 is far less than an even chance of failing
within the horizon. Users read ``failure_probability`` as a probability and the risk levels
cut it at fixed values, so the classifier's output is mapped through a logistic curve in the
logit of the raw score, fitted on validation rows the model was not trained on. The map is
strictly increasing, so it keeps every ranking metric (PR-AUC, ROC-AUC) and the direction
checks unchanged; only the values, and the alerts cut from them, move.
"""

from __future__ import annotations

import numpy as np

SLOPE, INTERCEPT = "calibration_slope", "calibration_intercept"
"""The keys of a classifier's ``extra`` holding its calibration (absent: none)."""
_EPS = 1e-7


def logit(probability: np.ndarray) -> np.ndarray:
    """The log-odds of ``probability``, clipped away from 0 and 1."""
    p = np.clip(np.asarray(probability, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p / (1.0 - p))


def fit_platt(raw: np.ndarray, label: np.ndarray) -> dict[str, float] | None:
    """Slope and intercept of the logistic map from raw scores to calibrated probabilities.

    Returns:
        ``{SLOPE: a, INTERCEPT: b}`` (calibrated = sigmoid(a * logit(raw) + b)), or None when
        the labels hold one class only or the fit would not be increasing (then the raw
        scores stay as they are).
    """
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(label).astype(int)
    if len(np.unique(y)) < 2:
        return None
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(logit(raw).reshape(-1, 1), y)
    slope, intercept = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    if not (np.isfinite(slope) and np.isfinite(intercept) and slope > 0):
        return None
    return {SLOPE: slope, INTERCEPT: intercept}


def calibrate(raw: np.ndarray, extra: dict[str, float]) -> np.ndarray:
    """``raw`` through the calibration stored in ``extra``; unchanged when there is none."""
    if SLOPE not in extra:
        return np.asarray(raw, dtype=np.float64)
    z = extra[SLOPE] * logit(raw) + extra[INTERCEPT]
    return 1.0 / (1.0 + np.exp(-z))
