"""Unit tests of the pure drift statistics in pdm_core.drift (no Evidently)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pdm_core.drift import (
    TABLE_COLUMNS,
    DriftSettings,
    adjust_pvalues,
    ks_drift,
)


def normal_frames(
    seed: int, n_ref: int, n_cur: int, shifts: dict[str, float]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference ~ N(0, 1) per column; current ~ N(shift, 1)."""
    rng = np.random.default_rng(seed)
    reference = pd.DataFrame({c: rng.normal(0.0, 1.0, n_ref) for c in shifts})
    current = pd.DataFrame({c: rng.normal(s, 1.0, n_cur) for c, s in shifts.items()})
    return reference, current


def row(result, feature: str) -> pd.Series:
    return result.table.set_index("feature").loc[feature]


# --- adjust_pvalues ---------------------------------------------------------------------------


def test_benjamini_hochberg_matches_hand_computation() -> None:
    # Sorted: 0.01 (rank 1), 0.03 (2), 0.04 (3), 0.2 (4); p * m / rank = 0.04, 0.06, 0.0533, 0.2;
    # the running minimum from the top makes rank 2 equal to rank 3's 0.16 / 3.
    p = np.array([0.01, 0.04, 0.03, 0.2])
    expected = np.array([0.04, 0.16 / 3, 0.16 / 3, 0.2])
    np.testing.assert_allclose(adjust_pvalues(p, "bh"), expected, rtol=1e-12)


def test_bonferroni_multiplies_by_m_and_caps_at_one() -> None:
    p = np.array([0.01, 0.04, 0.3, 0.2])
    np.testing.assert_allclose(adjust_pvalues(p, "bonferroni"), [0.04, 0.16, 1.0, 0.8])


def test_bh_is_never_stricter_than_bonferroni() -> None:
    p = np.random.default_rng(3).uniform(0, 0.2, 25)
    assert np.all(adjust_pvalues(p, "bh") <= adjust_pvalues(p, "bonferroni") + 1e-15)


@pytest.mark.parametrize("method", ["bh", "bonferroni"])
def test_adjust_empty_input_gives_empty(method: str) -> None:
    out = adjust_pvalues(np.array([]), method)
    assert isinstance(out, np.ndarray)
    assert out.shape == (0,)


@pytest.mark.parametrize(
    ("p", "method", "match"),
    [
        (np.array([0.1, 1.2]), "bh", r"\[0, 1\]"),
        (np.array([0.1, np.nan]), "bh", r"\[0, 1\]"),
        (np.array([[0.1, 0.2]]), "bh", "one-dimensional"),
        (np.array([0.1]), "holm", "method"),
    ],
)
def test_adjust_rejects_bad_input(p: np.ndarray, method: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        adjust_pvalues(p, method)  # type: ignore[arg-type]


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"correction": "holm"}, "correction"),
        ({"min_effect_size": -0.01}, "min_effect_size"),
        ({"min_effect_size": 1.5}, "min_effect_size"),
        ({"min_samples": 0}, "min_samples"),
        ({"min_samples": 2.5}, "min_samples"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.01}, "threshold"),
    ],
)
def test_settings_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DriftSettings(**kwargs)


def test_settings_boundaries_are_accepted() -> None:
    settings = DriftSettings(min_effect_size=0.0, min_samples=1, threshold=1.0)
    assert (settings.min_effect_size, settings.min_samples, settings.threshold) == (0.0, 1, 1.0)
    assert DriftSettings(min_effect_size=1.0).min_effect_size == 1.0


# --- ks_drift ---------------------------------------------------------------------------------


def test_table_shape_and_scipy_agreement() -> None:
    reference, current = normal_frames(0, 1_000, 800, {"a": 0.0, "b": 0.5})
    result = ks_drift(reference, current, ["a", "b"], DriftSettings())
    assert list(result.table.columns) == list(TABLE_COLUMNS)
    assert list(result.table["feature"]) == ["a", "b"]
    assert result.table["drifted"].dtype == bool
    for feature in ("a", "b"):
        expected = stats.ks_2samp(reference[feature], current[feature])
        got = row(result, feature)
        assert got["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
        assert got["p_value"] == pytest.approx(expected.pvalue, rel=1e-12)
    np.testing.assert_allclose(
        result.table["p_adjusted"], adjust_pvalues(result.table["p_value"].to_numpy(), "bh")
    )


def test_tiny_shift_is_significant_but_not_drifted() -> None:
    # 0.02 sd shift, 100k rows a side: D is about 0.02 * phi(0) = 0.008, far below 0.1, yet the
    # test has the power to call it significant.
    reference, current = normal_frames(7, 100_000, 100_000, {"x": 0.02})
    result = ks_drift(reference, current, ["x"], DriftSettings())
    got = row(result, "x")
    assert got["p_adjusted"] < 0.05
    assert got["statistic"] < 0.1
    assert not got["drifted"]
    assert got["verdict"] == "no drift"
    assert "significant but small" in got["why"]
    assert result.n_drifted == 0
    # Without the effect-size gate the same data would count as drift.
    ungated = ks_drift(reference, current, ["x"], DriftSettings(min_effect_size=0.0))
    assert row(ungated, "x")["verdict"] == "drift"


def test_one_sd_shift_is_drifted() -> None:
    reference, current = normal_frames(1, 2_000, 2_000, {"x": 1.0})
    result = ks_drift(reference, current, ["x"], DriftSettings())
    got = row(result, "x")
    assert got["drifted"]
    assert got["verdict"] == "drift"
    assert got["statistic"] > 0.3  # expected D = 2 * Phi(0.5) - 1 = 0.38
    assert got["why"].startswith("p_adj ") and "< 0.05 and D " in got["why"]
    assert result.drifted_features == ["x"]


def test_same_distribution_is_not_drifted() -> None:
    reference, current = normal_frames(2, 3_000, 3_000, {"x": 0.0})
    got = row(ks_drift(reference, current, ["x"], DriftSettings()), "x")
    assert not got["drifted"]
    assert got["statistic"] < 0.1


def test_insignificant_large_d_is_not_drifted() -> None:
    # With min_samples lowered, 5 vs 5 rows give D = 0.6 without significance (exact p = 5/14).
    reference = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0]})
    current = pd.DataFrame({"x": [2.5, 3.5, 4.5, 5.5, 6.5]})
    got = row(ks_drift(reference, current, ["x"], DriftSettings(min_samples=5)), "x")
    assert got["statistic"] == pytest.approx(0.6)
    assert got["p_adjusted"] == pytest.approx(5 / 14)
    assert got["verdict"] == "no drift"
    assert got["why"] == "p_adj 0.357 >= 0.05"


def test_too_few_samples_is_excluded_from_correction_and_share() -> None:
    reference, current = normal_frames(4, 1_000, 1_000, {"big": 1.0, "same": 0.0, "short": 1.0})
    current.loc[120:, "short"] = np.nan  # 120 finite rows left on the current side
    result = ks_drift(reference, current, ["big", "same", "short"], DriftSettings())
    short = row(result, "short")
    assert short["verdict"] == "too few samples"
    assert not short["drifted"]
    assert (short["n_reference"], short["n_current"]) == (1_000, 120)
    assert np.isnan(short["statistic"]) and np.isnan(short["p_value"])
    assert np.isnan(short["p_adjusted"])
    assert short["why"] == "current 120 < 200 rows"
    assert result.n_checked == 2
    assert result.n_drifted == 1
    assert result.drift_share == pytest.approx(0.5)
    # Correction over the two checked columns only (m = 2, not 3).
    checked = result.table[result.table["verdict"] != "too few samples"]
    np.testing.assert_allclose(
        checked["p_adjusted"], adjust_pvalues(checked["p_value"].to_numpy(), "bh")
    )


def test_nothing_checked_gives_zero_share_and_a_reason() -> None:
    reference, current = normal_frames(5, 100, 100, {"a": 1.0, "b": 1.0})
    result = ks_drift(reference, current, ["a", "b"], DriftSettings())
    assert result.n_checked == 0
    assert result.drift_share == 0.0
    assert result.dataset_drift is False
    assert "200" in result.reason
    assert set(result.table["verdict"]) == {"too few samples"}
    assert ks_drift(reference, current, [], DriftSettings()).reason == "no columns to check"


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [(0.3, True), (0.4, True), (0.41, False), (1.0, False)],
)
def test_drift_share_and_threshold(threshold: float, expected: bool) -> None:
    # 2 of 5 columns shifted by 1 sd; the unshifted ones have D ~ 0.03 < 0.1 whatever their p.
    shifts = {"s1": 1.0, "s2": 1.0, "n1": 0.0, "n2": 0.0, "n3": 0.0}
    reference, current = normal_frames(6, 1_500, 1_500, shifts)
    result = ks_drift(reference, current, list(shifts), DriftSettings(threshold=threshold))
    assert result.drifted_features == ["s1", "s2"]
    assert (result.n_checked, result.n_drifted) == (5, 2)
    assert result.drift_share == 0.4
    assert result.dataset_drift is expected
    assert (">=" in result.reason) is expected


def test_correction_is_applied_and_bonferroni_is_stricter() -> None:
    # Small shifts at 2000 rows a side give p-values around 0.005-0.02 (seed fixed); the effect
    # gate is off so the decision rests on the corrected p-value alone.
    shifts = {f"c{i}": s for i, s in enumerate([0.0, 0.0, 0.06, 0.08, 0.1, 0.12])}
    reference, current = normal_frames(8, 2_000, 2_000, shifts)
    results = {}
    for correction in ("bh", "bonferroni"):
        settings = DriftSettings(correction=correction, min_effect_size=0.0)
        result = ks_drift(reference, current, list(shifts), settings)
        table = result.table
        expected = adjust_pvalues(table["p_value"].to_numpy(), correction)
        np.testing.assert_allclose(table["p_adjusted"], expected)
        assert (table["drifted"] == (table["p_adjusted"] < 0.05)).all()
        results[correction] = set(result.drifted_features)
    # c2 (p about 0.018): BH adjusts it to about 0.022 (drift), Bonferroni to about 0.11 (no).
    assert "c2" in results["bh"]
    assert "c2" not in results["bonferroni"]
    assert results["bonferroni"] < results["bh"]


def test_missing_columns_raise_with_their_names() -> None:
    reference, current = normal_frames(9, 300, 300, {"a": 0.0, "b": 0.0})
    with pytest.raises(ValueError, match=r"reference frame: \['ghost'\]"):
        ks_drift(reference, current, ["a", "ghost"], DriftSettings())
    with pytest.raises(ValueError, match=r"current frame: \['b'\]"):
        ks_drift(reference, current.drop(columns="b"), ["a", "b"], DriftSettings())


def test_repeated_and_non_numeric_columns_raise() -> None:
    reference, current = normal_frames(10, 300, 300, {"a": 0.0})
    with pytest.raises(ValueError, match="repeated"):
        ks_drift(reference, current, ["a", "a"], DriftSettings())
    reference["label"], current["label"] = "x", "y"
    with pytest.raises(ValueError, match=r"'label'.*not numeric"):
        ks_drift(reference, current, ["label"], DriftSettings())


def test_non_finite_values_are_dropped_and_counted() -> None:
    reference, current = normal_frames(11, 1_000, 900, {"x": 0.0})
    reference.loc[:9, "x"] = np.nan
    reference.loc[10:11, "x"] = np.inf
    reference.loc[12, "x"] = -np.inf
    current.loc[:49, "x"] = np.nan
    result = ks_drift(reference, current, ["x"], DriftSettings())
    got = row(result, "x")
    assert (got["n_reference"], got["n_current"]) == (987, 850)
    expected = stats.ks_2samp(reference["x"].iloc[13:], current["x"].iloc[50:])
    assert got["p_value"] == pytest.approx(expected.pvalue, rel=1e-12)


def test_nullable_float_dtype_is_accepted() -> None:
    reference, current = normal_frames(12, 500, 500, {"x": 0.0})
    reference["x"] = reference["x"].astype("Float64")
    reference.loc[:4, "x"] = pd.NA
    got = row(ks_drift(reference, current, ["x"], DriftSettings()), "x")
    assert got["n_reference"] == 495


def test_summary_is_json_serialisable_with_none_for_nan() -> None:
    reference, current = normal_frames(13, 1_000, 1_000, {"big": 1.0, "short": 0.0})
    current.loc[50:, "short"] = np.nan
    result = ks_drift(reference, current, ["big", "short"], DriftSettings())
    summary = result.summary()
    text = json.dumps(summary, allow_nan=False)  # fails on NaN or numpy scalars
    assert json.loads(text) == summary
    features = {f["feature"]: f for f in summary["features"]}
    assert features["short"]["p_value"] is None
    assert features["short"]["verdict"] == "too few samples"
    assert type(features["big"]["statistic"]) is float
    assert type(features["big"]["n_reference"]) is int
    assert summary["drifted_features"] == ["big"]
    assert summary["drift_share"] == 1.0
    assert summary["dataset_drift"] is True
    assert summary["settings"]["correction"] == "bh"
