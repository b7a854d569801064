"""Grouped trailing-window statistics over many series at once, in O(n) numpy.

Rows are ordered by group (machine) and time. For row ``i`` the window is the rows
``[max(i - w + 1, start_of_group(i)), i]``, so the first ``w - 1`` rows of a group use a
shorter, partial window (pandas' ``rolling(w, min_periods=1)``).

Arrays are channels-first: shape (channels, rows), one contiguous row per series.

Sums come from prefix sums restarted every ``block`` rows over values centred on their
block's first value. A window spans at most two blocks, and the sums stay small, so float64
rounding stays near 1e-12 even over tens of millions of rows (one global cumulative sum would
lose about six digits, and pandas' add/remove updates lose about three on large levels).
Minimum and maximum use scipy's O(n) running filters; the partial windows at group starts are
then redone as running minima/maxima of each group's first rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d

STATS: tuple[str, ...] = ("mean", "std", "min", "max", "slope", "roc")
"""Statistics :meth:`TrailingWindows.stats` can compute.

* ``mean``, ``std`` (sample, ddof=1; 0 for a single reading), ``min``, ``max``;
* ``slope``: least-squares slope against the step index inside the window (per step);
* ``roc``: rate of change, ``(last - first) / (count - 1)`` over the window (0 for one reading).
"""


def _check_stats(stats: tuple[str, ...]) -> None:
    unknown = sorted(set(stats) - set(STATS))
    if unknown:
        raise ValueError(f"unknown statistics {unknown}; known: {STATS}")


@dataclass(frozen=True)
class Groups:
    """Layout of grouped, time-ordered rows.

    Attributes:
        start: For every row, the index of the first row of its group.
        group_starts: Index of the first row of each group, ascending.
    """

    start: np.ndarray
    group_starts: np.ndarray

    @classmethod
    def from_codes(cls, codes: np.ndarray) -> Groups:
        """Builds the layout from per-row group codes (rows must be grouped contiguously).

        Args:
            codes: Integer group code per row; equal codes must be adjacent.

        Returns:
            The group layout.
        """
        n = codes.shape[0]
        if n == 0:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64))
        change = np.flatnonzero(codes[1:] != codes[:-1]) + 1
        group_starts = np.concatenate(([0], change)).astype(np.int64)
        sizes = np.diff(np.append(group_starts, n))
        return cls(np.repeat(group_starts, sizes), group_starts)


class TrailingWindows:
    """Trailing windows of one length over a fixed group layout.

    The index arithmetic is done once here and shared by every channel and statistic.

    Args:
        groups: Group layout of the rows.
        window: Window length in rows (>= 1).
        block: Prefix-sum restart interval (>= window); chosen automatically when None.
    """

    def __init__(self, groups: Groups, window: int, block: int | None = None) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        block = block or max(256, 8 * window)
        if block < window:
            raise ValueError(f"block ({block}) must be >= window ({window})")
        n = groups.start.shape[0]
        row = np.arange(n, dtype=np.int64)
        self.groups = groups
        self.window = window
        self.n = n
        self.block = block
        self.n_blocks = -(-n // block)
        self.start = np.maximum(row - window + 1, groups.start)
        self.count = (row - self.start + 1).astype(np.float64)
        self.single = np.flatnonzero(self.count <= 1.0)  # one-reading windows
        self.truncated = np.flatnonzero(self.start > row - window + 1)  # cut by group start
        block_first = (row // block) * block
        spills = self.start < block_first  # the window reaches into the previous block
        # Prefix to subtract inside the row's own block, or -1 (the zero column) for none.
        inner = self.start - 1
        self.inner_idx = np.where(spills | (inner < block_first), -1, inner)
        # Rows whose window spills: previous block's total minus its prefix before the start.
        self.spill_rows = np.flatnonzero(spills)
        spill_start = self.start[self.spill_rows]
        spill_block_first = block_first[self.spill_rows]
        self.spill_block = spill_block_first // block
        self.spill_total_idx = spill_block_first - 1  # last row of the previous block
        head = spill_start > spill_block_first - block
        self.spill_head_idx = np.where(head, spill_start - 1, -1)
        self.spill_count = (spill_block_first - spill_start).astype(np.float64)
        first_local = (spill_start - (spill_block_first - block)).astype(np.float64)
        # Sum of block-local positions over the spilled part: first_local .. block - 1.
        self.spill_local_sum = (block - 1) * block / 2.0 - (first_local - 1) * first_local / 2.0
        self.local = (row - block_first).astype(np.float64)
        self.shift_cur = (block_first - self.start).astype(np.float64)
        self.shift_prev = (spill_block_first - block - spill_start).astype(np.float64)

    def _blocked(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centred copy laid out as (channels, blocks, block), padded with zeros."""
        k = values.shape[0]
        blocked = np.zeros((k, self.n_blocks * self.block), dtype=np.float64)
        blocked[:, : self.n] = values
        blocked = blocked.reshape(k, self.n_blocks, self.block)
        centres = blocked[:, :, 0].copy()
        blocked -= centres[:, :, None]
        return blocked, centres

    def _sums(self, blocked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Window sums in the row's own block, and (spilling rows only) the previous block."""
        k = blocked.shape[0]
        prefix = np.empty((k, self.n_blocks * self.block + 1), dtype=np.float64)
        prefix[:, -1] = 0.0  # index -1: nothing to subtract
        np.cumsum(blocked, axis=2, out=prefix[:, :-1].reshape(blocked.shape))
        cur = prefix[:, : self.n] - np.take(prefix, self.inner_idx, axis=1)
        prev = np.take(prefix, self.spill_total_idx, axis=1)
        prev -= np.take(prefix, self.spill_head_idx, axis=1)
        return cur, prev

    def mean(self, values: np.ndarray) -> np.ndarray:
        """Window means of channels-first ``values``."""
        return self.stats(values, ("mean",))["mean"]

    def stats(self, values: np.ndarray, stats: tuple[str, ...] = STATS) -> dict[str, np.ndarray]:
        """Computes window statistics of every channel.

        Args:
            values: Channels-first array (channels, rows) with no NaNs; 1-D means one channel.
            stats: Names from :data:`STATS`.

        Returns:
            Mapping from statistic name to a (channels, rows) array.
        """
        _check_stats(stats)
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))
        if values.shape[1] != self.n:
            raise ValueError(f"values have {values.shape[1]} rows, windows were built for {self.n}")
        wanted = set(stats)
        out: dict[str, np.ndarray] = {}
        if wanted & {"mean", "std", "slope"}:
            out.update(self._moments(values, wanted))
        if "roc" in wanted:
            roc = values - np.take(values, self.start, axis=1)
            roc /= np.maximum(self.count - 1.0, 1.0)
            out["roc"] = roc
        if "min" in wanted:
            out["min"] = self._extreme(values, minimum_filter1d, np.minimum)
        if "max" in wanted:
            out["max"] = self._extreme(values, maximum_filter1d, np.maximum)
        return {name: out[name] for name in stats}

    def _moments(self, values: np.ndarray, wanted: set[str]) -> dict[str, np.ndarray]:
        """Mean, std and slope from centred block prefix sums."""
        out: dict[str, np.ndarray] = {}
        count, single, rows = self.count, self.single, self.spill_rows
        blocked, centres = self._blocked(values)
        # The previous-block part of a spilling window was centred on that block's centre;
        # moving it to the row's own block centre needs d = old centre - new centre.
        d = centres[:, self.spill_block - 1] - centres[:, self.spill_block]
        s1_cur, s1_prev = self._sums(blocked)
        s1_prev_raw = s1_prev.copy()
        s1_prev += self.spill_count * d
        s1 = s1_cur.copy()
        s1[:, rows] += s1_prev
        if "mean" in wanted:
            mean = s1 / count
            mean += np.repeat(centres, self.block, axis=1)[:, : self.n]
            out["mean"] = mean
        if "std" in wanted:
            s2_cur, s2_prev = self._sums(blocked * blocked)
            s2_prev += 2.0 * d * s1_prev_raw + self.spill_count * d * d
            s2_cur[:, rows] += s2_prev
            s2_cur -= s1 * s1 / count
            s2_cur /= np.maximum(count - 1.0, 1.0)
            std = np.sqrt(np.maximum(s2_cur, 0.0, out=s2_cur), out=s2_cur)
            std[:, single] = 0.0
            # s2 - s1 * s1 / count cancels to rounding noise on a constant window, and the
            # square root turns noise of 1e-14 into a std of 1e-7: constant windows are 0.
            std[self._constant(values)] = 0.0
            out["std"] = std
        if "slope" in wanted:
            local = self.local.reshape(-1)
            weighted = blocked.reshape(blocked.shape[0], -1).copy()
            weighted[:, : self.n] *= local
            ly_cur, ly_prev = self._sums(weighted.reshape(blocked.shape))
            ly_prev += d * self.spill_local_sum
            # Sum over the window of (k - start) * y, from block-local positions k.
            sty = ly_cur
            sty += self.shift_cur * s1_cur
            sty[:, rows] += ly_prev + self.shift_prev * s1_prev
            st = count * (count - 1.0) / 2.0
            stt = (count - 1.0) * count * (2.0 * count - 1.0) / 6.0
            denominator = count * stt - st * st
            denominator[single] = 1.0
            sty *= count
            sty -= st * s1
            sty /= denominator
            sty[:, single] = 0.0
            out["slope"] = sty
        return out

    def _constant(self, values: np.ndarray) -> np.ndarray:
        """Mask of windows whose values are all equal (exact: counts changes between rows)."""
        changes = np.zeros(values.shape, dtype=np.int64)
        np.cumsum(values[:, 1:] != values[:, :-1], axis=1, out=changes[:, 1:])
        return changes == np.take(changes, self.start, axis=1)

    def _extreme(self, values: np.ndarray, running_filter, accumulate: np.ufunc) -> np.ndarray:  # type: ignore[no-untyped-def]
        """Window minimum or maximum; partial windows at group starts are recomputed."""
        w = self.window
        # scipy centres its filter; this origin makes the window trailing: [i - w + 1, i].
        result = running_filter(values, w, axis=1, origin=(w - 1) // 2, mode="nearest")
        if self.truncated.size:
            # Rows whose window is cut by their group start: running extreme from that start.
            starts = self.groups.group_starts
            offsets = np.arange(w - 1)
            idx = np.minimum(starts[:, None] + offsets[None, :], self.n - 1)
            head = np.take(values, idx, axis=1)  # (channels, groups, w - 1)
            # Rows past a group's end belong to the next group; they are never written back.
            accumulate.accumulate(head, axis=2, out=head)
            in_group = idx < np.append(starts[1:], self.n)[:, None]
            within = in_group & (offsets[None, :] < w - 1)
            result[:, idx[within]] = head[:, within]
        return result


class LastWindows:
    """The trailing window of one length at each series' last reading, for equal-length series.

    The serving path scores each machine at its latest reading only: this evaluates
    :class:`TrailingWindows` statistics at that one row per series directly, instead of at
    every row. ``tests/code/test_rolling.py`` proves both agree.

    Args:
        window: Window length in readings (>= 1); series shorter than it use all readings.
    """

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window

    def mean(self, values: np.ndarray) -> np.ndarray:
        """Window means of ``values`` (channels, series, readings)."""
        return self.stats(values, ("mean",))["mean"]

    def stats(self, values: np.ndarray, stats: tuple[str, ...] = STATS) -> dict[str, np.ndarray]:
        """Computes the last window's statistics of every channel and series.

        Args:
            values: Array (channels, series, readings), oldest reading first, no NaNs.
            stats: Names from :data:`STATS`.

        Returns:
            Mapping from statistic name to a (channels, series) array.
        """
        _check_stats(stats)
        tail = np.asarray(values, dtype=np.float64)[..., -self.window :]
        count = tail.shape[-1]
        mean = tail.mean(axis=-1)
        out: dict[str, np.ndarray] = {"mean": mean}
        centred = tail - mean[..., None] if {"std", "slope"} & set(stats) else tail
        if "std" in stats:
            if count > 1:  # the operations of ``tail.std(axis=-1, ddof=1)``, on ``centred``
                std = np.sqrt(np.square(centred).sum(axis=-1) / (count - 1))
                std[(tail == tail[..., :1]).all(axis=-1)] = 0.0  # constant windows, exactly
            else:
                std = np.zeros_like(mean)
            out["std"] = std
        if "slope" in stats:
            t = np.arange(count, dtype=np.float64) - (count - 1) / 2.0
            denominator = float(t @ t) or 1.0
            out["slope"] = (centred @ t) / denominator
        if "roc" in stats:
            out["roc"] = (tail[..., -1] - tail[..., 0]) / max(count - 1, 1)
        if "min" in stats:
            out["min"] = tail.min(axis=-1)
        if "max" in stats:
            out["max"] = tail.max(axis=-1)
        return {name: out[name] for name in stats}


def window_stats(
    values: np.ndarray,
    groups: Groups,
    window: int,
    stats: tuple[str, ...] = STATS,
    block: int | None = None,
) -> dict[str, np.ndarray]:
    """Computes trailing-window statistics of every channel (one-off convenience wrapper).

    Args:
        values: Channels-first array of shape (channels, rows); rows grouped and time-ordered;
            no NaNs. A 1-D array is one channel.
        groups: Group layout of the rows.
        window: Window length in rows (>= 1).
        stats: Names from :data:`STATS`.
        block: Prefix-sum restart interval (>= window); chosen automatically when None.

    Returns:
        Mapping from statistic name to a (channels, rows) array.
    """
    return TrailingWindows(groups, window, block).stats(values, stats)
