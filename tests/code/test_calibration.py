"""Platt calibration of the risk classifier: an honest probability, the same ranking."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from pdm_core.models.calibration import INTERCEPT, SLOPE, calibrate, fit_platt


def overconfident(n: int = 100_000, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Labels with true probability q, and a score that overstates q (as class weighting does)."""
    rng = np.random.default_rng(seed)
    q = rng.beta(0.3, 4.0, n)
    label = (rng.random(n) < q).astype(int)
    raw = 1.0 / (1.0 + np.exp(-(np.log(q / (1 - q)) + 2.5)))  # odds x e^2.5
    return raw, label


def test_calibrated_probabilities_match_the_observed_rate() -> None:
    raw, label = overconfident()
    fit = fit_platt(raw, label)
    assert fit is not None
    calibrated = calibrate(raw, fit)
    for low, high in ((0.2, 0.4), (0.4, 0.6), (0.6, 0.8)):
        band = (calibrated >= low) & (calibrated < high)
        assert band.sum() > 50
        assert low - 0.05 <= label[band].mean() <= high + 0.05
        raw_band = (raw >= low) & (raw < high)
        assert label[raw_band].mean() < low - 0.1  # the raw score overstated the risk there


def test_the_ranking_and_its_metrics_are_unchanged() -> None:
    raw, label = overconfident()
    calibrated = calibrate(raw, fit_platt(raw, label) or {})
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(calibrated[order]) >= 0)  # increasing: the same ranking
    assert average_precision_score(label, calibrated) == pytest.approx(
        average_precision_score(label, raw), abs=1e-9
    )


def test_without_both_classes_or_a_stored_fit_the_scores_stay_raw() -> None:
    raw = np.array([0.1, 0.5, 0.9])
    assert fit_platt(raw, np.zeros(3)) is None
    assert np.array_equal(calibrate(raw, {}), raw)
    assert calibrate(raw, {SLOPE: 1.0, INTERCEPT: 0.0}) == pytest.approx(raw, abs=1e-6)
