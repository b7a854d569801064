"""Feature drift between a reference and a current batch (pure functions, no Dagster).

Every numeric feature is compared with a two-sample Kolmogorov-Smirnov test on its finite
values. Because several features are tested at once the p-values are corrected for multiple
testing (Benjamini-Hochberg by default), and because with many rows even a negligible shift is
"significant", a feature only counts as drifted when its KS statistic ``D`` (the largest gap
between the two empirical CDFs) is also at least ``min_effect_size``. The dataset counts as
drifted when the share of drifted features reaches ``threshold``.

:func:`evidently_ks` runs the same test through Evidently to produce an HTML report and to
cross-check the numbers; Evidently is imported inside it because the import takes seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from pdm_core.drift_settings import CORRECTIONS, Correction, DriftSettings

DRIFT = "drift"
NO_DRIFT = "no drift"
TOO_FEW = "too few samples"

TABLE_COLUMNS: tuple[str, ...] = (
    "feature",
    "n_reference",
    "n_current",
    "statistic",
    "p_value",
    "p_adjusted",
    "drifted",
    "verdict",
    "why",
)
"""Columns of :attr:`DriftResult.table`, in order."""

EVIDENTLY_COLUMNS: tuple[str, ...] = ("feature", "stattest", "p_value", "drift_detected")
"""Columns of the frame :func:`evidently_ks` returns, in order."""


@dataclass(frozen=True)
class DriftResult:
    """Outcome of :func:`ks_drift`.

    Attributes:
        table: One row per feature with the columns in :data:`TABLE_COLUMNS`. ``statistic``,
            ``p_value`` and ``p_adjusted`` are NaN for features with too few samples.
        n_checked: Features that had enough samples to be tested.
        n_drifted: Tested features judged drifted.
        drift_share: ``n_drifted / n_checked`` (0.0 when nothing was tested).
        dataset_drift: True when ``drift_share >= settings.threshold`` and something was tested.
        reason: One sentence explaining ``dataset_drift``.
        settings: Settings the verdicts were made with.
    """

    table: pd.DataFrame
    n_checked: int
    n_drifted: int
    drift_share: float
    dataset_drift: bool
    reason: str
    settings: DriftSettings

    @property
    def drifted_features(self) -> list[str]:
        """Names of the features judged drifted, in the order they were given."""
        return [str(f) for f in self.table.loc[self.table["drifted"], "feature"]]

    def summary(self) -> dict[str, Any]:
        """Returns the result as a JSON-serialisable dict (for Dagster metadata).

        Numbers are plain Python ``int``/``float``; NaN becomes ``None``.

        Returns:
            Dict with the dataset verdict, the settings and one entry per feature.
        """
        features = []
        for row in self.table.itertuples(index=False):
            features.append(
                {
                    "feature": str(row.feature),
                    "n_reference": int(row.n_reference),
                    "n_current": int(row.n_current),
                    "statistic": _json_float(row.statistic),
                    "p_value": _json_float(row.p_value),
                    "p_adjusted": _json_float(row.p_adjusted),
                    "drifted": bool(row.drifted),
                    "verdict": str(row.verdict),
                    "why": str(row.why),
                }
            )
        return {
            "dataset_drift": bool(self.dataset_drift),
            "drift_share": float(self.drift_share),
            "n_checked": int(self.n_checked),
            "n_drifted": int(self.n_drifted),
            "n_features": len(features),
            "drifted_features": self.drifted_features,
            "reason": self.reason,
            "settings": {
                "alpha": float(self.settings.alpha),
                "correction": self.settings.correction,
                "min_effect_size": float(self.settings.min_effect_size),
                "min_samples": int(self.settings.min_samples),
                "threshold": float(self.settings.threshold),
            },
            "features": features,
        }


def _json_float(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def adjust_pvalues(p: np.ndarray, method: Correction) -> np.ndarray:
    """Corrects p-values for testing several hypotheses at once.

    Args:
        p: One-dimensional array of p-values in [0, 1].
        method: ``"bh"`` for Benjamini-Hochberg (``scipy.stats.false_discovery_control``) or
            ``"bonferroni"`` for ``min(p * m, 1)`` with ``m`` the number of p-values.

    Returns:
        Adjusted p-values, in the input order, as float64. Empty input gives an empty array.

    Raises:
        ValueError: When ``method`` is unknown, ``p`` is not one-dimensional, or a p-value is not
            a number in [0, 1].
    """
    if method not in CORRECTIONS:
        raise ValueError(f"method must be one of {CORRECTIONS}, got {method!r}")
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p must be one-dimensional, got shape {p.shape}")
    if p.size == 0:
        return p.copy()
    if not np.all((p >= 0.0) & (p <= 1.0)):  # also rejects NaN
        raise ValueError(f"p-values must be numbers in [0, 1], got {p.tolist()}")
    if method == "bh":
        return np.asarray(stats.false_discovery_control(p, method="bh"), dtype=np.float64)
    return np.minimum(p * p.size, 1.0)


def _finite_values(frame: pd.DataFrame, column: str, side: str) -> np.ndarray:
    series = frame[column]
    if not (pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)):
        raise ValueError(f"column '{column}' in the {side} frame is {series.dtype}, not numeric")
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return values[np.isfinite(values)]


def ks_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    settings: DriftSettings | None = None,
) -> DriftResult:
    """Tests each column for drift with a two-sample Kolmogorov-Smirnov test.

    Per column, NaN and infinite values are dropped on both sides; a column with fewer than
    ``settings.min_samples`` finite values on either side gets the verdict
    ``"too few samples"`` and takes no part in the correction or the drift share. The others
    are tested with ``scipy.stats.ks_2samp`` (two-sided, ``method="auto"``), their p-values are
    corrected together, and a column is drifted when ``p_adjusted < alpha`` and
    ``statistic >= min_effect_size``.

    Args:
        reference: Reference batch (e.g. the training data).
        current: Batch to compare with the reference.
        columns: Numeric columns to compare; each must be in both frames, without repeats.
        settings: Decision settings; defaults to :class:`DriftSettings()`.

    Returns:
        The per-feature table and the dataset verdict.

    Raises:
        ValueError: When a column is missing from either frame (the message names them), is
            repeated, or is not numeric.
    """
    settings = settings or DriftSettings()
    columns = list(columns)
    _check_columns(reference, current, columns)
    n_ref = np.zeros(len(columns), dtype=np.int64)
    n_cur = np.zeros(len(columns), dtype=np.int64)
    statistic = np.full(len(columns), np.nan)
    p_value = np.full(len(columns), np.nan)
    for i, column in enumerate(columns):
        ref = _finite_values(reference, column, "reference")
        cur = _finite_values(current, column, "current")
        n_ref[i], n_cur[i] = ref.size, cur.size
        if min(ref.size, cur.size) < settings.min_samples:
            continue
        test = stats.ks_2samp(ref, cur)
        statistic[i], p_value[i] = float(test.statistic), float(test.pvalue)

    checked = ~np.isnan(p_value)
    p_adjusted = np.full(len(columns), np.nan)
    p_adjusted[checked] = adjust_pvalues(p_value[checked], settings.correction)
    significant = checked & (p_adjusted < settings.alpha)
    drifted = significant & (statistic >= settings.min_effect_size)
    verdicts = [
        _column_verdict(settings, n_ref[i], n_cur[i], statistic[i], p_adjusted[i],
                        bool(significant[i]), bool(drifted[i]))
        for i in range(len(columns))
    ]  # fmt: skip
    table = pd.DataFrame(
        {
            "feature": pd.Series(columns, dtype=object),
            "n_reference": n_ref,
            "n_current": n_cur,
            "statistic": statistic,
            "p_value": p_value,
            "p_adjusted": p_adjusted,
            "drifted": drifted.astype(bool),
            "verdict": pd.Series([verdict for verdict, _ in verdicts], dtype=object),
            "why": pd.Series([why for _, why in verdicts], dtype=object),
        },
        columns=list(TABLE_COLUMNS),
    )
    return _dataset_verdict(table, int(checked.sum()), int(drifted.sum()), settings)


def _check_columns(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> None:
    """Refuses repeated columns and columns missing from either frame, naming them."""
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise ValueError(f"columns are repeated: {repeated}")
    missing_ref = [c for c in columns if c not in reference.columns]
    missing_cur = [c for c in columns if c not in current.columns]
    if missing_ref or missing_cur:
        parts = []
        if missing_ref:
            parts.append(f"missing from the reference frame: {missing_ref}")
        if missing_cur:
            parts.append(f"missing from the current frame: {missing_cur}")
        raise ValueError("drift columns " + "; ".join(parts))


def _column_verdict(
    settings: DriftSettings,
    n_ref: int,
    n_cur: int,
    statistic: float,
    p_adjusted: float,
    significant: bool,
    drifted: bool,
) -> tuple[str, str]:
    """One column's verdict and the sentence that explains it."""
    if np.isnan(p_adjusted):
        short = [
            f"{side} {n} < {settings.min_samples} rows"
            for side, n in (("reference", n_ref), ("current", n_cur))
            if n < settings.min_samples
        ]
        return TOO_FEW, "; ".join(short)
    if drifted:
        return DRIFT, (
            f"p_adj {p_adjusted:.3g} < {settings.alpha:g} and "
            f"D {statistic:.3g} >= {settings.min_effect_size:g}"
        )
    if significant:
        return NO_DRIFT, f"D {statistic:.3g} < {settings.min_effect_size:g} (significant but small)"
    return NO_DRIFT, f"p_adj {p_adjusted:.3g} >= {settings.alpha:g}"


def _dataset_verdict(
    table: pd.DataFrame, n_checked: int, n_drifted: int, settings: DriftSettings
) -> DriftResult:
    """The dataset's verdict: drifted when the share of drifted columns reaches the threshold."""
    if n_checked == 0:
        share, dataset_drift = 0.0, False
        reason = (
            "no columns to check"
            if table.empty
            else f"no column had at least {settings.min_samples} finite rows on both sides"
        )
    else:
        share = n_drifted / n_checked
        dataset_drift = share >= settings.threshold
        relation = ">=" if dataset_drift else "<"
        reason = (
            f"{n_drifted} of {n_checked} checked columns drifted: share {share:.3g} "
            f"{relation} threshold {settings.threshold:g}"
        )
    return DriftResult(
        table=table,
        n_checked=n_checked,
        n_drifted=n_drifted,
        drift_share=float(share),
        dataset_drift=bool(dataset_drift),
        reason=reason,
        settings=settings,
    )


def evidently_ks(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    html_path: Path | None = None,
) -> pd.DataFrame:
    """Runs Evidently's data-drift report with the KS test forced on every column.

    Left alone, Evidently 0.7 picks the test per column and switches numeric columns to the
    Wasserstein distance above 1000 reference rows; here every column is pinned to ``"ks"``
    through ``DataDriftPreset(per_column_method=...)``, so the numbers are comparable with
    :func:`ks_drift`. Evidently's KS test calls ``scipy.stats.ks_2samp`` with its defaults on
    the finite values and reports the uncorrected p-value as the drift score; it flags drift
    when ``p_value <= 0.05`` (no correction, no effect-size gate).

    Args:
        reference: Reference batch.
        current: Batch to compare with the reference.
        columns: Numeric columns to compare; each must be in both frames.
        html_path: Where to write the HTML report (parent folders are created); not written
            when None.

    Returns:
        One row per column, in the given order, with the columns in
        :data:`EVIDENTLY_COLUMNS`: the stattest Evidently ran, its p-value (the ValueDrift
        metric's value, unrounded) and its own drift flag (read from its ValueDrift test).

    Raises:
        ValueError: When a column is missing from either frame, or the report lacks a result
            for a column. Evidently itself raises ValueError for a column with no finite value
            on one side (where :func:`ks_drift` gives "too few samples").
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = list(columns)
    missing = [c for c in columns if c not in reference.columns or c not in current.columns]
    if missing:
        raise ValueError(f"drift columns missing from the reference or current frame: {missing}")

    definition = DataDefinition(numerical_columns=columns)
    report = Report(
        [DataDriftPreset(columns=columns, per_column_method=dict.fromkeys(columns, "ks"))],
        include_tests=True,  # the per-column ValueDrift test carries Evidently's drift flag
    )
    snapshot = report.run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    if html_path is not None:
        html_path = Path(html_path)
        html_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_path))  # save_html silently ignores a non-str path

    result = snapshot.dict()
    values: dict[str, tuple[str, float]] = {}
    for metric in result["metrics"]:
        config = metric["config"]
        if config.get("type") == "evidently:metric_v2:ValueDrift":
            values[config["column"]] = (str(config["method"]), float(metric["value"]))
    flags: dict[str, bool] = {}
    for test in result["tests"]:
        params = test["metric_config"]["params"]
        if params.get("type") == "evidently:metric_v2:ValueDrift":
            flags[params["column"]] = test["status"] == "FAIL"

    lacking = [c for c in columns if c not in values or c not in flags]
    if lacking:
        raise ValueError(f"Evidently's report has no ValueDrift result for {lacking}")
    return pd.DataFrame(
        {
            "feature": pd.Series(columns, dtype=object),
            "stattest": pd.Series([values[c][0] for c in columns], dtype=object),
            "p_value": np.array([values[c][1] for c in columns], dtype=np.float64),
            "drift_detected": np.array([flags[c] for c in columns], dtype=bool),
        },
        columns=list(EVIDENTLY_COLUMNS),
    )
