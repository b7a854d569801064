"""The champion/challenger decision: should a newly trained model replace the current one?

The decision is pure: it compares two metric dicts (as produced by :mod:`pdm_core.metrics`)
under a :class:`PromotionPolicy` and returns a :class:`PromotionDecision` with a one-sentence
reason and the MLflow tags to record it.

The comparison is only meaningful when both models were evaluated on the same test data (same
split, same rows, same threshold rule). Making sure of that is the caller's job: re-evaluate
the champion on the challenger's test set before calling :func:`decide`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from pdm_core.metrics import HIGHER_IS_BETTER

PROMOTED, REJECTED = "promoted", "rejected"


@dataclass(frozen=True)
class PromotionPolicy:
    """How a challenger must compare with the champion to be promoted.

    Attributes:
        primary: Metric the challenger must improve, strictly, by more than
            ``min_improvement`` (in the metric's own direction, see
            :data:`pdm_core.metrics.HIGHER_IS_BETTER`).
        guards: Metrics that must not regress by more than ``guard_tolerance``.
        min_improvement: Absolute margin by which the primary metric must beat the champion.
        guard_tolerance: Largest allowed relative regression of a guard: 0.02 lets ``rmse``
            rise by at most 2% of the champion's value, and ``roc_auc`` fall by at most 2%.

    Raises:
        ValueError: If a metric is unknown (not in ``HIGHER_IS_BETTER``) or a margin is
            negative or not finite.
    """

    primary: str = "pr_auc"
    guards: tuple[str, ...] = ("rmse", "roc_auc")
    min_improvement: float = 0.0
    guard_tolerance: float = 0.02

    def __post_init__(self) -> None:
        if isinstance(self.guards, str):
            raise ValueError(f"guards must be a sequence of metric names, got {self.guards!r}")
        object.__setattr__(self, "guards", tuple(self.guards))
        unknown = [m for m in (self.primary, *self.guards) if m not in HIGHER_IS_BETTER]
        if unknown:
            raise ValueError(
                f"unknown metric(s) in promotion policy: {unknown}; "
                f"known metrics: {sorted(HIGHER_IS_BETTER)}"
            )
        for name in ("min_improvement", "guard_tolerance"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    @property
    def metrics(self) -> tuple[str, ...]:
        """The primary metric followed by the guards, without duplicates."""
        return tuple(dict.fromkeys((self.primary, *self.guards)))


@dataclass(frozen=True)
class PromotionDecision:
    """The outcome of :func:`decide`.

    Attributes:
        promote: True when the challenger should become the champion.
        reason: One human-readable sentence with the numbers behind the decision.
        primary: The policy's primary metric.
        challenger: The challenger's metrics.
        champion: The champion's metrics, None when there is no champion.
        regressions: Guards that regressed beyond the tolerance: name -> (champion,
            challenger).
        skipped_guards: Guards that could not be compared (NaN or missing on either side).
        guards: The policy's guards, recorded in the tags.
    """

    promote: bool
    reason: str
    primary: str
    challenger: dict[str, float]
    champion: dict[str, float] | None
    regressions: dict[str, tuple[float, float]] = field(default_factory=dict)
    skipped_guards: tuple[str, ...] = ()
    guards: tuple[str, ...] = ()

    def to_tags(self) -> dict[str, str]:
        """MLflow tags recording the decision.

        Returns:
            ``promotion.decision`` (``"promoted"``/``"rejected"``), ``promotion.reason``,
            ``promotion.primary``, and ``promotion.challenger_<m>`` / ``promotion.champion_<m>``
            for the primary metric and each guard that the respective side reported.
        """
        tags = {
            "promotion.decision": PROMOTED if self.promote else REJECTED,
            "promotion.reason": self.reason,
            "promotion.primary": self.primary,
        }
        for metric in dict.fromkeys((self.primary, *self.guards)):
            if metric in self.champion_or_empty:
                tags[f"promotion.champion_{metric}"] = _tag_value(self.champion_or_empty[metric])
            if metric in self.challenger:
                tags[f"promotion.challenger_{metric}"] = _tag_value(self.challenger[metric])
        return tags

    @property
    def champion_or_empty(self) -> dict[str, float]:
        """The champion's metrics, or an empty dict when there is no champion."""
        return self.champion if self.champion is not None else {}


def _tag_value(value: float) -> str:
    """Formats a metric for an MLflow tag: full precision, ``nan`` for NaN."""
    return repr(float(value))


def _fmt(value: float) -> str:
    """Formats a metric for a human sentence: 3 decimals, or 3 significant digits."""
    if math.isnan(value):
        return "nan"
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.3f}"
    return f"{value:.3g}"


def _valid(metrics: dict[str, float] | None, name: str) -> bool:
    """True when ``metrics`` holds a non-NaN value for ``name``."""
    if metrics is None or name not in metrics:
        return False
    value = metrics[name]
    return value is not None and not math.isnan(float(value))


def _improvement(name: str, champion: float, challenger: float) -> float:
    """How much better the challenger is, in the metric's own direction (> 0 is better)."""
    delta = challenger - champion
    return delta if HIGHER_IS_BETTER[name] else -delta


def decide(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    policy: PromotionPolicy | None = None,
) -> PromotionDecision:
    """Decides whether the challenger replaces the champion.

    Rules, in order:

    1. The challenger must report every policy metric (primary and guards) and a non-NaN
       primary metric; otherwise it is rejected (an evaluation that lost a metric is a bug).
    2. Without a champion, the challenger is promoted ("no champion yet").
    3. A champion without a valid primary metric cannot be compared: rejected, re-evaluate it.
    4. The primary metric must be better by more than ``policy.min_improvement``.
    5. No guard may regress by more than ``policy.guard_tolerance`` (relative to the
       champion's value). A guard that is NaN or missing on the champion's side, or NaN on
       the challenger's side, is skipped, and the reason says so.

    Both metric dicts must come from the same test data; ensuring that is the caller's job.

    Args:
        challenger: Test metrics of the newly trained model.
        champion: Test metrics of the current champion, None when there is none.
        policy: Promotion policy; defaults to :class:`PromotionPolicy()`.

    Returns:
        The decision, with a one-sentence reason.
    """
    policy = policy or PromotionPolicy()
    primary = policy.primary

    regressions: dict[str, tuple[float, float]] = {}
    skipped: list[str] = []

    def result(promote: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(
            promote=promote,
            reason=reason,
            primary=primary,
            challenger=dict(challenger),
            champion=None if champion is None else dict(champion),
            regressions=dict(regressions),
            skipped_guards=tuple(skipped),
            guards=policy.guards,
        )

    missing = [m for m in policy.metrics if m not in challenger]
    if missing:
        return result(False, f"challenger lacks metric(s) {', '.join(missing)}; not promoted")
    if not _valid(challenger, primary):
        return result(False, f"challenger {primary} is NaN; not promoted")
    if champion is None:
        value = _fmt(challenger[primary])
        return result(True, f"no champion yet; promoting challenger with {primary} {value}")
    if not _valid(champion, primary):
        state = "missing" if primary not in champion else "NaN"
        return result(
            False,
            f"champion {primary} is {state}, so challenger {primary} "
            f"{_fmt(challenger[primary])} cannot be compared; re-evaluate the champion",
        )

    # Guards.
    for guard in dict.fromkeys(policy.guards):
        if not (_valid(champion, guard) and _valid(challenger, guard)):
            skipped.append(guard)
            continue
        old, new = float(champion[guard]), float(challenger[guard])
        if -_improvement(guard, old, new) > policy.guard_tolerance * abs(old):
            regressions[guard] = (old, new)
    skip_note = f" (skipped guard(s) with NaN or missing values: {', '.join(skipped)})"
    skip_note = skip_note if skipped else ""

    # Primary.
    old, new = float(champion[primary]), float(challenger[primary])
    gain = _improvement(primary, old, new)
    better_sign = ">" if HIGHER_IS_BETTER[primary] else "<"
    worse_sign = "<=" if HIGHER_IS_BETTER[primary] else ">="
    if gain <= 0:
        reason = f"challenger {primary} {_fmt(new)} {worse_sign} champion {_fmt(old)}"
        return result(False, reason + skip_note)
    if gain <= policy.min_improvement:
        reason = (
            f"challenger {primary} {_fmt(new)} {better_sign} champion {_fmt(old)} but the gain "
            f"{gain:.3g} does not exceed min_improvement {policy.min_improvement:g}"
        )
        return result(False, reason + skip_note)
    comparison = f"challenger {primary} {_fmt(new)} {better_sign} champion {_fmt(old)}"
    if regressions:
        details = ", ".join(
            f"{g} {_fmt(c_old)} -> {_fmt(c_new)}" for g, (c_old, c_new) in regressions.items()
        )
        reason = (
            f"{comparison} but guard(s) regressed beyond the {policy.guard_tolerance * 100:g}% "
            f"tolerance: {details}"
        )
        return result(False, reason + skip_note)
    return result(True, f"{comparison} and no guard regressed" + skip_note)


COMPONENT_METRICS = {"risk_classifier": "pr_auc", "rul_regressor": "rmse"}
"""The validation metric that picks the best candidate of each kind."""


def best_candidate(candidates: Mapping[str, dict], kind: str) -> str | None:
    """The trained candidate of ``kind`` with the best validation metric, None if none.

    A kind without a metric in :data:`COMPONENT_METRICS` (the anomaly detector) has at most
    one candidate, which is taken as it is. Ties keep the first candidate given.
    """
    usable = [c for c in candidates.values() if c.get("kind") == kind and not c.get("skipped")]
    if not usable:
        return None
    metric = COMPONENT_METRICS.get(kind)
    if metric is None:
        return str(usable[0]["name"])
    higher = HIGHER_IS_BETTER[metric]
    return str(sorted(usable, key=lambda c: c["validation"][metric], reverse=higher)[0]["name"])


def choose_components(
    candidates: Mapping[str, dict], failed_direction: Collection[str] = ()
) -> dict[str, str | None]:
    """The candidate that fills each part of the fleet model (kind -> candidate name or None).

    Risk classifiers that failed the direction check are passed over, unless every one of
    them failed: a fleet model needs a classifier, and the check's results travel with it.

    Raises:
        ValueError: No risk classifier was trained at all.
    """
    eligible = {n: c for n, c in candidates.items() if n not in failed_direction}
    if best_candidate(eligible, "risk_classifier") is None:
        eligible = dict(candidates)
    chosen = {
        "risk_classifier": best_candidate(eligible, "risk_classifier"),
        "rul_regressor": best_candidate(candidates, "rul_regressor"),
        "anomaly_detector": best_candidate(candidates, "anomaly_detector"),
    }
    if chosen["risk_classifier"] is None:
        raise ValueError("no risk classifier was trained; see the candidate assets' logs")
    return chosen


def applicable_policy(policy: PromotionPolicy, challenger: Mapping[str, float]) -> PromotionPolicy:
    """Drops guards the data cannot measure (no RUL labels: no ``rmse``).

    A guard that was measured but came out NaN stays, and the decision names it.
    """
    guards = tuple(g for g in policy.guards if g in challenger)
    return PromotionPolicy(policy.primary, guards, policy.min_improvement, policy.guard_tolerance)


def ties(decision: PromotionDecision, policy: PromotionPolicy) -> bool:
    """Same primary value as the champion and no guard regression (e.g. a seeded retrain)."""
    if decision.champion is None or decision.promote:
        return False
    a = decision.challenger.get(policy.primary)
    b = decision.champion.get(policy.primary)
    same = a is not None and b is not None and abs(a - b) <= 1e-9 * max(1.0, abs(b))
    return bool(same and not decision.regressions)
