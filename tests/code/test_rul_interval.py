"""Split-conformal RUL intervals: coverage per bin of predicted RUL, finite-sample rank, bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pdm_core.models.rul_interval import RulInterval, fit_rul_interval, interval_metrics

CAP = 125.0


def heteroscedastic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Predictions whose error spread grows with predicted RUL (as a RUL model's does)."""
    rng = np.random.default_rng(seed)
    predicted = rng.uniform(0, CAP, n)
    true = predicted + rng.normal(1.0, 1.0 + predicted / 10, n)
    return predicted, np.clip(true, 0, None)


def test_coverage_holds_in_every_bin_on_exchangeable_data() -> None:
    interval = fit_rul_interval(*heteroscedastic(4000, seed=1), cap=CAP)
    assert interval.level == 0.9 and len(interval.edges) == 3 and sum(interval.rows) == 4000
    widths = np.subtract(interval.upper, interval.lower)
    assert np.all(np.diff(widths) > 0), "wider where errors are wider"
    predicted, true = heteroscedastic(20000, seed=2)
    which = np.searchsorted(interval.edges, predicted, side="right")
    for b in range(4):
        got = interval_metrics(interval, predicted[which == b], true[which == b])
        assert 0.87 <= got["interval_coverage"] <= 0.93, (b, got)
    low, high = interval.bounds(predicted)
    assert np.all((low >= 0) & (low <= high) & (high <= CAP))


def test_the_offsets_are_split_conformal_order_statistics() -> None:
    # n = 99 errors -49..49, level 0.9: ranks floor(100 * 0.05) = 5 and ceil(100 * 0.95) = 95.
    predicted = np.full(99, 60.0)
    interval = fit_rul_interval(predicted, predicted + np.arange(-49.0, 50.0), cap=CAP, bins=1)
    assert interval.lower == (-45.0,) and interval.upper == (45.0,)
    assert math.ceil(100 * 0.95) == 95
    few = fit_rul_interval(np.zeros(9), np.arange(1.0, 10.0), cap=CAP, bins=1)
    assert few.upper == (CAP,), "too few rows for a finite 95 % quantile: the cap bounds it"


def test_the_interval_always_holds_the_prediction() -> None:
    """A model that overshoots everywhere gets [prediction - error, prediction], not less."""
    predicted = np.linspace(20.0, 100.0, 500)
    interval = fit_rul_interval(predicted, predicted - 10.0, cap=CAP, bins=1)
    assert interval.upper == (0.0,) and interval.lower == (-10.0,)
    low, high = interval.bounds(predicted)
    assert np.all((low <= predicted) & (predicted <= high))


def test_few_rows_get_fewer_bins_and_rows_without_rul_are_left_out() -> None:
    predicted, true = heteroscedastic(500, seed=3)
    true[:50] = np.nan
    interval = fit_rul_interval(predicted, true, cap=CAP)
    assert len(interval.edges) == 1 and sum(interval.rows) == 450
    assert RulInterval.from_dict(interval.to_dict()) == interval
    with pytest.raises(ValueError, match="no validation row has a true RUL"):
        fit_rul_interval(predicted, np.full(500, np.nan), cap=CAP)
