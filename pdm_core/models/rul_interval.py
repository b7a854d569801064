"""Prediction intervals for RUL: split-conformal on the validation machines, by predicted RUL.

A RUL regressor is fitted on the train machines; its signed errors ``true - predicted`` on the
validation machines (which it never saw) give the interval. Errors depend on where a machine
is in its life (a new machine's RUL sits at the cap and is easy; mid-life is hardest), so the
validation rows are grouped into bins of *predicted* RUL (Mondrian conformal prediction) and
each bin gets its own lower and upper error quantile, with the finite-sample correction of
split-conformal prediction: with ``n`` errors, the ``ceil((n + 1)(1 - a/2))``-th smallest is the
upper offset. The interval is ``[predicted + lower, predicted + upper]`` clipped to
``[0, cap]``; the offsets are never of the same sign, so it always holds the prediction.

This is a table lookup at serving time (numpy only), which is why it is written here rather
than taken from a conformal-prediction library: those wrap the estimator, and the service
serves exported networks and trees without scikit-learn or TensorFlow. Coverage is a
guarantee only for readings exchangeable with the validation rows; the evaluation reports the
empirical coverage on the test split next to the nominal level.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

LEVEL = 0.9
"""Nominal coverage of the interval."""
BINS = 4
MIN_ROWS_PER_BIN = 200


@dataclass(frozen=True)
class RulInterval:
    """A fitted interval rule.

    Attributes:
        level: Nominal coverage.
        edges: Inner bin edges on predicted RUL (``len(edges) + 1`` bins).
        lower: Per bin, the lower error offset (added to the prediction).
        upper: Per bin, the upper error offset.
        rows: Per bin, the validation rows behind its offsets.
        cap: RUL cap of the regressor (the interval never leaves ``[0, cap]``).
    """

    level: float
    edges: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    rows: tuple[int, ...]
    cap: float

    def bounds(self, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper RUL bounds for predicted RUL values."""
        predicted = np.asarray(predicted, dtype=np.float64)
        which = np.searchsorted(np.asarray(self.edges), predicted, side="right")
        low = predicted + np.asarray(self.lower)[which]
        high = predicted + np.asarray(self.upper)[which]
        # Clipped to [0, cap], but never past the prediction (a regressor may leave [0, cap]).
        low = np.minimum(np.clip(low, 0.0, self.cap), predicted)
        high = np.maximum(np.clip(high, 0.0, self.cap), predicted)
        return low, high

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (stored in the regressor's ``extra``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RulInterval:
        """Inverse of :meth:`to_dict`."""
        return cls(
            level=float(data["level"]),
            edges=tuple(float(x) for x in data["edges"]),
            lower=tuple(float(x) for x in data["lower"]),
            upper=tuple(float(x) for x in data["upper"]),
            rows=tuple(int(x) for x in data["rows"]),
            cap=float(data["cap"]),
        )


def _conformal_offsets(errors: np.ndarray, level: float) -> tuple[float, float]:
    """Lower and upper error quantiles with split-conformal's finite-sample correction."""
    n = errors.size
    alpha = 1.0 - level
    ordered = np.sort(errors)
    # The tolerance keeps float error (1 - 0.9 is 0.0999...) from moving a rank by one.
    upper_rank = math.ceil((n + 1) * (1.0 - alpha / 2) - 1e-9)
    lower_rank = math.floor((n + 1) * (alpha / 2) + 1e-9)
    upper = ordered[min(upper_rank, n) - 1] if upper_rank <= n else np.inf
    lower = ordered[max(lower_rank, 1) - 1] if lower_rank >= 1 else -np.inf
    return float(lower), float(upper)


def fit_rul_interval(
    predicted: np.ndarray,
    true: np.ndarray,
    cap: float,
    level: float = LEVEL,
    bins: int = BINS,
    min_rows: int = MIN_ROWS_PER_BIN,
) -> RulInterval:
    """Fits the interval on validation predictions and their true RUL (capped at ``cap``).

    Args:
        predicted: Predicted RUL of validation rows.
        true: True RUL of the same rows (rows without one are left out).
        cap: The regressor's RUL cap.
        level: Nominal coverage.
        bins: Most bins of predicted RUL (equal-count); fewer when rows are few.
        min_rows: Fewest validation rows per bin.

    Raises:
        ValueError: ``level`` outside (0, 1), or no validation row with a true RUL.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    predicted = np.asarray(predicted, dtype=np.float64)
    true = np.minimum(np.asarray(true, dtype=np.float64), cap)
    known = np.isfinite(true) & np.isfinite(predicted)
    predicted, true = predicted[known], true[known]
    if not predicted.size:
        raise ValueError("no validation row has a true RUL: no interval can be fitted")
    count = max(1, min(bins, predicted.size // min_rows))
    edges = np.unique(np.quantile(predicted, np.arange(1, count) / count)) if count > 1 else []
    which = np.searchsorted(edges, predicted, side="right")
    errors = true - predicted
    offsets = [_conformal_offsets(errors[which == b], level) for b in range(len(edges) + 1)]
    # The interval always holds the prediction itself (a reader expects "80 (70-95)", never
    # "80 (85-95)"): widening a one-sided bin only raises its coverage.
    finite = [(max(min(lo, 0.0), -cap), min(max(hi, 0.0), cap)) for lo, hi in offsets]
    return RulInterval(
        level=level,
        edges=tuple(float(e) for e in edges),
        lower=tuple(lo for lo, _ in finite),
        upper=tuple(hi for _, hi in finite),
        rows=tuple(int((which == b).sum()) for b in range(len(edges) + 1)),
        cap=float(cap),
    )


def interval_metrics(
    interval: RulInterval, predicted: np.ndarray, true: np.ndarray
) -> dict[str, float]:
    """Empirical coverage and mean width on scored rows (true RUL capped as the target)."""
    low, high = interval.bounds(predicted)
    true = np.minimum(np.asarray(true, dtype=np.float64), interval.cap)
    inside = (true >= low) & (true <= high)
    return {
        "interval_level": interval.level,
        "interval_coverage": float(inside.mean()) if inside.size else float("nan"),
        "interval_mean_width": float((high - low).mean()) if inside.size else float("nan"),
    }
