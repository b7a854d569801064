"""Tests for the champion/challenger promotion decision."""

from __future__ import annotations

import dataclasses
import math

import pytest

from pdm_core.promotion import (
    PromotionDecision,
    PromotionPolicy,
    applicable_policy,
    choose_components,
    decide,
    ties,
)

CHAMPION = {"pr_auc": 0.790, "rmse": 20.0, "roc_auc": 0.900, "f1": 0.6}


def challenger(**overrides: float) -> dict[str, float]:
    metrics = {"pr_auc": 0.812, "rmse": 19.5, "roc_auc": 0.905, "f1": 0.65}
    metrics.update(overrides)
    return metrics


def test_better_challenger_is_promoted() -> None:
    decision = decide(challenger(), CHAMPION, PromotionPolicy())
    assert decision.promote
    assert decision.reason == "challenger pr_auc 0.812 > champion 0.790 and no guard regressed"
    assert decision.regressions == {}
    assert decision.primary == "pr_auc"
    assert decision.champion == CHAMPION
    assert decision.challenger == challenger()


def test_default_policy_is_used_when_none_given() -> None:
    assert decide(challenger(), CHAMPION).promote


@pytest.mark.parametrize("value", [0.70, 0.790])
def test_worse_or_equal_primary_is_rejected(value: float) -> None:
    decision = decide(challenger(pr_auc=value), CHAMPION, PromotionPolicy())
    assert not decision.promote
    assert "pr_auc" in decision.reason
    assert f"{value:.3f}" in decision.reason
    assert "0.790" in decision.reason


def test_better_primary_but_guard_regressed_is_rejected() -> None:
    # rmse 20.0 -> 21.0 is +5%, beyond the 2% tolerance.
    decision = decide(challenger(rmse=21.0), CHAMPION, PromotionPolicy())
    assert not decision.promote
    assert decision.regressions == {"rmse": (20.0, 21.0)}
    assert "rmse" in decision.reason
    assert "20.000 -> 21.000" in decision.reason
    assert "2%" in decision.reason


def test_higher_is_better_guard_regression_is_rejected() -> None:
    # roc_auc 0.900 -> 0.870 falls by 3.3% (> 2%).
    decision = decide(challenger(roc_auc=0.870), CHAMPION, PromotionPolicy())
    assert not decision.promote
    assert set(decision.regressions) == {"roc_auc"}
    assert "roc_auc" in decision.reason


def test_guard_regression_within_tolerance_is_promoted() -> None:
    # rmse +1.5% and roc_auc -1.5%: both within 2%.
    decision = decide(challenger(rmse=20.3, roc_auc=0.8865), CHAMPION, PromotionPolicy())
    assert decision.promote
    assert decision.regressions == {}


def test_guard_tolerance_is_configurable() -> None:
    policy = PromotionPolicy(guard_tolerance=0.0)
    assert not decide(challenger(rmse=20.01), CHAMPION, policy).promote
    assert decide(challenger(rmse=20.0), CHAMPION, policy).promote


def test_no_champion_is_promoted() -> None:
    decision = decide(challenger(), None, PromotionPolicy())
    assert decision.promote
    assert "no champion yet" in decision.reason
    assert decision.champion is None


def test_nan_primary_in_challenger_is_rejected() -> None:
    decision = decide(challenger(pr_auc=math.nan), CHAMPION, PromotionPolicy())
    assert not decision.promote
    assert "pr_auc" in decision.reason
    assert "NaN" in decision.reason


def test_missing_metric_in_challenger_is_rejected() -> None:
    metrics = challenger()
    del metrics["rmse"]
    decision = decide(metrics, CHAMPION, PromotionPolicy())
    assert not decision.promote
    assert "rmse" in decision.reason
    del metrics["pr_auc"]
    assert not decide(metrics, None, PromotionPolicy()).promote


def test_nan_or_missing_primary_in_champion_is_rejected() -> None:
    decision = decide(challenger(), {**CHAMPION, "pr_auc": math.nan}, PromotionPolicy())
    assert not decision.promote
    assert "champion pr_auc is NaN" in decision.reason
    champion = {k: v for k, v in CHAMPION.items() if k != "pr_auc"}
    assert "missing" in decide(challenger(), champion, PromotionPolicy()).reason


@pytest.mark.parametrize("side", ["champion", "challenger"])
def test_nan_guard_is_skipped_and_reported(side: str) -> None:
    champion = dict(CHAMPION)
    candidate = challenger(rmse=40.0)  # would regress if compared...
    if side == "champion":
        champion["rmse"] = math.nan
    else:
        candidate["rmse"] = math.nan
    decision = decide(candidate, champion, PromotionPolicy())
    assert decision.promote
    assert decision.skipped_guards == ("rmse",)
    assert "skipped" in decision.reason
    assert "rmse" in decision.reason
    assert decision.regressions == {}


def test_guard_missing_in_champion_is_skipped() -> None:
    champion = {k: v for k, v in CHAMPION.items() if k != "roc_auc"}
    decision = decide(challenger(), champion, PromotionPolicy())
    assert decision.promote
    assert decision.skipped_guards == ("roc_auc",)


def test_min_improvement() -> None:
    policy = PromotionPolicy(min_improvement=0.03)
    decision = decide(challenger(pr_auc=0.812), CHAMPION, policy)  # +0.022
    assert not decision.promote
    assert "min_improvement 0.03" in decision.reason
    assert decide(challenger(pr_auc=0.830), CHAMPION, policy).promote  # +0.040


def test_lower_is_better_primary() -> None:
    policy = PromotionPolicy(primary="rmse", guards=("pr_auc",), min_improvement=0.4)
    better = decide(challenger(rmse=19.0), CHAMPION, policy)
    assert better.promote
    assert "challenger rmse 19.000 < champion 20.000" in better.reason
    assert not decide(challenger(rmse=19.8), CHAMPION, policy).promote  # gain 0.2 <= 0.4
    assert not decide(challenger(rmse=21.0), CHAMPION, policy).promote


def test_to_tags() -> None:
    tags = decide(challenger(rmse=21.0), CHAMPION, PromotionPolicy()).to_tags()
    assert tags["promotion.decision"] == "rejected"
    assert tags["promotion.primary"] == "pr_auc"
    assert "rmse" in tags["promotion.reason"]
    for metric in ("pr_auc", "rmse", "roc_auc"):
        assert float(tags[f"promotion.champion_{metric}"]) == CHAMPION[metric]
        assert float(tags[f"promotion.challenger_{metric}"]) == challenger(rmse=21.0)[metric]
    assert "promotion.champion_f1" not in tags  # not in the policy
    assert all(isinstance(v, str) for v in tags.values())

    promoted = decide(challenger(), None, PromotionPolicy()).to_tags()
    assert promoted["promotion.decision"] == "promoted"
    assert not any(key.startswith("promotion.champion_") for key in promoted)
    assert promoted["promotion.challenger_pr_auc"] == "0.812"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"primary": "accuracy"},
        {"guards": ("rmse", "bogus")},
        {"guards": "rmse"},
        {"min_improvement": -0.1},
        {"guard_tolerance": math.nan},
    ],
)
def test_invalid_policy_raises(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PromotionPolicy(**kwargs)  # type: ignore[arg-type]


def test_unknown_metric_error_names_it() -> None:
    with pytest.raises(ValueError, match="accuracy"):
        PromotionPolicy(primary="accuracy")


def test_policy_and_decision_are_frozen() -> None:
    policy = PromotionPolicy(guards=["rmse"])  # type: ignore[arg-type]
    assert policy.guards == ("rmse",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.primary = "f1"  # type: ignore[misc]
    decision = decide(challenger(), None, policy)
    assert isinstance(decision, PromotionDecision)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.promote = False  # type: ignore[misc]


def candidate(name: str, kind: str, skipped: bool = False, **validation: float) -> dict:
    if skipped:
        return {"name": name, "skipped": "no RUL labels"}
    return {"name": name, "kind": kind, "validation": validation}


CANDIDATES = {
    "clf_a": candidate("clf_a", "risk_classifier", pr_auc=0.70),
    "clf_b": candidate("clf_b", "risk_classifier", pr_auc=0.80),
    "rul_a": candidate("rul_a", "rul_regressor", rmse=20.0),
    "rul_b": candidate("rul_b", "rul_regressor", rmse=15.0),
    "anomaly": candidate("anomaly", "anomaly_detector"),
}


def test_each_part_is_the_best_candidate_of_its_kind_on_validation() -> None:
    assert choose_components(CANDIDATES) == {
        "risk_classifier": "clf_b",  # higher PR-AUC
        "rul_regressor": "rul_b",  # lower RMSE
        "anomaly_detector": "anomaly",
    }


def test_a_classifier_failing_the_direction_check_is_passed_over_unless_all_fail() -> None:
    assert choose_components(CANDIDATES, {"clf_b"})["risk_classifier"] == "clf_a"
    assert choose_components(CANDIDATES, {"clf_a", "clf_b"})["risk_classifier"] == "clf_b"


def test_skipped_candidates_are_never_chosen() -> None:
    some = {
        **CANDIDATES,
        "rul_a": candidate("rul_a", "", True),
        "rul_b": candidate("rul_b", "", True),
    }
    some["anomaly"] = candidate("anomaly", "", True)
    chosen = choose_components(some)
    assert chosen["rul_regressor"] is None
    assert chosen["anomaly_detector"] is None
    with pytest.raises(ValueError, match="no risk classifier was trained"):
        choose_components({"rul_b": CANDIDATES["rul_b"]})


def test_guards_the_data_cannot_measure_are_dropped() -> None:
    policy = applicable_policy(PromotionPolicy(), {"pr_auc": 0.8, "roc_auc": 0.9})
    assert policy.guards == ("roc_auc",)


def test_a_retrain_with_the_same_primary_value_ties_and_a_worse_one_does_not() -> None:
    policy = PromotionPolicy()
    assert ties(decide(dict(CHAMPION), CHAMPION, policy), policy)
    assert not ties(decide(challenger(pr_auc=0.70), CHAMPION, policy), policy)
    assert not ties(decide(challenger(), None, policy), policy)  # promoted, not a tie
