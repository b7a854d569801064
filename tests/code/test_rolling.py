"""Tests for the grouped trailing-window statistics against exact per-window numpy and pandas."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from pdm_core.rolling import STATS, Groups, LastWindows, TrailingWindows, window_stats

WINDOWS = (1, 2, 3, 10, 30)
BIG_GROUP = 300  # longer than every block used below (64 and the automatic 256)


def group_sizes(window: int) -> list[int]:
    """Group sizes 1, 2, w-1, w, w+1 and one longer than a block, plus random ones, shuffled."""
    rng = np.random.default_rng(window)
    sizes = [1, 2, window - 1, window, window + 1, BIG_GROUP, *rng.integers(1, 80, size=6)]
    sizes = [int(s) for s in sizes if s >= 1]
    return [sizes[i] for i in rng.permutation(len(sizes))]


@functools.cache
def dataset(window: int) -> tuple[np.ndarray, np.ndarray]:
    """Two channels with a large level, noise and a trend; returns (values, group codes)."""
    sizes = group_sizes(window)
    codes = np.repeat(np.arange(len(sizes)), sizes)
    n = codes.size
    rng = np.random.default_rng(100 + window)
    t = np.arange(n, dtype=np.float64)
    values = np.vstack(
        [
            50.0 + 5.0 * rng.standard_normal(n) + 0.01 * t,
            -200.0 + 0.3 * rng.standard_normal(n) - 0.002 * t,
        ]
    )
    values[1, 40:70] = -199.75  # a constant stretch: its windows must have std exactly 0
    return values, codes


def window_bounds(codes: np.ndarray, window: int) -> list[tuple[int, int]]:
    """(start, end) of every row's trailing window, computed the slow obvious way."""
    bounds = []
    first = 0
    for i in range(codes.size):
        if i > 0 and codes[i] != codes[i - 1]:
            first = i
        bounds.append((max(first, i - window + 1), i + 1))
    return bounds


@functools.cache
def exact_reference(window: int) -> dict[str, np.ndarray]:
    """Every statistic of every window, computed per window with numpy."""
    values, codes = dataset(window)
    out = {name: np.zeros(values.shape) for name in STATS}
    for i, (lo, hi) in enumerate(window_bounds(codes, window)):
        for c in range(values.shape[0]):
            y = values[c, lo:hi]
            out["mean"][c, i] = np.mean(y)
            out["min"][c, i] = np.min(y)
            out["max"][c, i] = np.max(y)
            if y.size > 1:
                out["std"][c, i] = np.std(y, ddof=1)
                out["slope"][c, i] = np.polyfit(np.arange(y.size, dtype=np.float64), y, 1)[0]
                out["roc"][c, i] = (y[-1] - y[0]) / (y.size - 1)
    return out


def test_groups_from_codes() -> None:
    groups = Groups.from_codes(np.array([4, 4, 4, 1, 7, 7]))
    np.testing.assert_array_equal(groups.group_starts, [0, 3, 4])
    np.testing.assert_array_equal(groups.start, [0, 0, 0, 3, 4, 4])
    empty = Groups.from_codes(np.array([], dtype=np.int64))
    assert empty.start.size == 0 and empty.group_starts.size == 0


@pytest.mark.parametrize("block", ["window", 64, None])
@pytest.mark.parametrize("window", WINDOWS)
def test_window_stats_match_exact_numpy(window: int, block: str | int | None) -> None:
    values, codes = dataset(window)
    size = window if block == "window" else block
    result = window_stats(values, Groups.from_codes(codes), window, STATS, block=size)
    expected = exact_reference(window)
    assert list(result) == list(STATS)
    for name in STATS:
        assert result[name].shape == values.shape, name
        if name in ("min", "max"):
            np.testing.assert_array_equal(
                result[name], expected[name], err_msg=f"{name}, window {window}, block {size}"
            )
        else:
            np.testing.assert_allclose(
                result[name],
                expected[name],
                rtol=0,
                atol=1e-9,
                err_msg=f"{name}, window {window}, block {size}",
            )


@pytest.mark.parametrize("window", [10, 30])
def test_constant_windows_have_zero_std_far_from_the_block_centre(window: int) -> None:
    # The block starts at a value far from the constant stretch, the case where a sum of
    # squares minus squared sum cancels to rounding noise whose square root is not small.
    rng = np.random.default_rng(window)
    values = 40.0 * rng.standard_normal(256)
    values[0] = 900.0
    values[100:160] = 0.1416833
    windows = TrailingWindows(Groups.from_codes(np.zeros(256, np.int64)), window, block=128)
    std = windows.stats(values, ("std",))["std"][0]
    inside = np.arange(100 + window - 1, 160)
    assert (std[inside] == 0.0).all(), f"constant windows have std up to {std[inside].max()}"
    assert (std[inside[-1] + 1 :][: window - 1] > 0).all()


@pytest.mark.parametrize("window", WINDOWS)
def test_window_stats_match_pandas_rolling_on_scaled_data(window: int) -> None:
    values, codes = dataset(window)
    z = (values - values.mean(axis=1, keepdims=True)) / values.std(axis=1, keepdims=True)
    windows = TrailingWindows(Groups.from_codes(codes), window, block=64)
    result = windows.stats(z, ("mean", "std", "min", "max"))
    for c in range(z.shape[0]):
        frame = pd.DataFrame({"g": codes, "x": z[c]})
        rolling = frame.groupby("g", sort=False)["x"].rolling(window, min_periods=1)
        for name in ("mean", "std", "min", "max"):
            expected = getattr(rolling, name)().reset_index(level=0, drop=True).sort_index()
            if name == "std":
                expected = expected.fillna(0.0)
            np.testing.assert_allclose(
                result[name][c],
                expected.to_numpy(),
                rtol=0,
                atol=1e-9,
                err_msg=f"{name} of channel {c}, window {window}",
            )


def test_mean_helper_and_one_dimensional_input() -> None:
    values, codes = dataset(10)
    windows = TrailingWindows(Groups.from_codes(codes), 10)
    mean = windows.mean(values[0])
    assert mean.shape == (1, values.shape[1])
    np.testing.assert_allclose(mean[0], exact_reference(10)["mean"][0], rtol=0, atol=1e-9)
    subset = windows.stats(values, ("roc", "mean"))
    assert list(subset) == ["roc", "mean"], "statistics come back in the order asked for"


def test_precision_on_many_rows_with_a_large_level() -> None:
    rng = np.random.default_rng(2024)
    sizes = rng.integers(500, 1500, size=400)
    sizes = sizes[np.cumsum(sizes) <= 200_000]
    codes = np.repeat(np.arange(sizes.size), sizes)
    n = codes.size
    assert n > 150_000
    position = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    values = 1000.0 + 0.05 * position + rng.standard_normal(n)
    window = 30
    result = window_stats(values, Groups.from_codes(codes), window)
    sample = np.sort(rng.choice(n, size=300, replace=False))
    starts = np.maximum(sample - window + 1, np.repeat(np.cumsum(sizes) - sizes, sizes)[sample])
    for i, lo in zip(sample, starts, strict=True):
        y = values[lo : i + 1]
        if y.size < 2:
            continue
        expected = {
            "mean": np.mean(y),
            "std": np.std(y, ddof=1),
            "slope": np.polyfit(np.arange(y.size, dtype=np.float64), y, 1)[0],
            "roc": (y[-1] - y[0]) / (y.size - 1),
        }
        for name, value in expected.items():
            got = result[name][0, i]
            assert abs(got - value) <= 1e-8 * abs(value), (
                f"{name} at row {i}: {got!r} vs exact {value!r} (rel. error "
                f"{abs(got - value) / abs(value):.2e})"
            )


def test_bad_arguments_raise() -> None:
    groups = Groups.from_codes(np.zeros(5, np.int64))
    values = np.arange(5.0)
    with pytest.raises(ValueError, match="unknown statistics"):
        window_stats(values, groups, 3, ("mean", "median"))
    with pytest.raises(ValueError, match="window must be >= 1"):
        window_stats(values, groups, 0)
    with pytest.raises(ValueError, match="window must be >= 1"):
        TrailingWindows(groups, -2)
    with pytest.raises(ValueError, match="block"):
        TrailingWindows(groups, 10, block=5)
    with pytest.raises(ValueError, match="rows"):
        TrailingWindows(groups, 3).stats(np.arange(6.0))


@pytest.mark.parametrize("readings", [1, 7, 30, 45])
@pytest.mark.parametrize("window", [1, 10, 30])
def test_last_windows_equal_trailing_windows_at_each_series_end(window: int, readings: int) -> None:
    """The serving shortcut gives the streaming statistics of each series' last row."""
    rng = np.random.default_rng(window * 100 + readings)
    series = 6
    values = rng.normal(50.0, 20.0, (3, series, readings))
    values[1, 2] = 7.25  # a constant series: std exactly 0 on both paths
    codes = np.repeat(np.arange(series), readings)
    streaming = TrailingWindows(Groups.from_codes(codes), window).stats(
        values.reshape(3, series * readings), STATS
    )
    last = np.arange(1, series + 1) * readings - 1
    direct = LastWindows(window).stats(values, STATS)
    assert list(direct) == list(STATS)
    for name in STATS:
        assert direct[name].shape == (3, series), name
        np.testing.assert_allclose(
            direct[name], streaming[name][:, last], rtol=0, atol=1e-9, err_msg=name
        )
    assert (direct["std"][1, 2] == 0.0) and (streaming["std"][1, last[2]] == 0.0)
    np.testing.assert_allclose(LastWindows(window).mean(values), direct["mean"], rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown"):
        LastWindows(window).stats(values, ("median",))
