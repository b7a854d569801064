"""When drift retrains: the drift sensor's rule, pure, so the sensor stays a thin adapter.

Whether the telemetry drifted is decided once, by the drift report (its ``dataset_drift``
verdict, from :func:`pdm_core.drift.ks_drift`); this rule only decides whether that verdict
should start a retraining run now.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetrainDecision:
    """Whether to request retraining now, and why (or why not)."""

    retrain: bool
    reason: str


@dataclass(frozen=True)
class DriftVerdict:
    """What a drift report concluded, as its metadata records it.

    Attributes:
        dataset_drift: The report's verdict (share of drifted features reached its threshold
            and at least one feature was tested).
        drift_share: Drifted / tested features.
        threshold: The share the report compared against.
        n_checked: Features that got a verdict (0: too little data for any).
    """

    dataset_drift: bool
    drift_share: float
    threshold: float
    n_checked: int

    @classmethod
    def from_metadata(cls, metadata: dict[str, object], threshold: float) -> DriftVerdict:
        """Reads a report's metadata (a report without a verdict counts as no drift).

        ``threshold`` is shown where the report does not name the one it used.
        """
        share = float(metadata.get("drift_share", 0.0))  # type: ignore[arg-type]
        recorded = float(metadata.get("threshold", threshold))  # type: ignore[arg-type]
        n_checked = int(metadata.get("n_checked", 0))  # type: ignore[call-overload]
        return cls(bool(metadata.get("dataset_drift", False)), share, recorded, n_checked)

    def shown(self) -> str:
        """The share against the threshold, for reasons and logs."""
        return f"drift share {self.drift_share:.2f} (threshold {self.threshold:.2f})"


def decide_retrain(
    verdict: DriftVerdict,
    now: float,
    last_triggered: float | None,
    cooldown_minutes: float,
    active_run: str | None = None,
    retrained_by: str | None = None,
) -> RetrainDecision:
    """The drift sensor's rule.

    Args:
        verdict: The newest drift report's conclusion.
        now: Current time (epoch seconds).
        last_triggered: When drift last triggered retraining (epoch seconds), if ever.
        cooldown_minutes: Least time between two triggered retrains.
        active_run: Id of a retraining run still queued or running, if any.
        retrained_by: Run key of the retrain that the same batches already triggered, if any.

    Returns:
        The decision with its reason.
    """
    if verdict.n_checked == 0:
        return RetrainDecision(False, "no feature had enough readings for a verdict")
    shown = verdict.shown()
    if not verdict.dataset_drift:
        return RetrainDecision(False, f"{shown}: below threshold")
    if active_run:
        return RetrainDecision(False, f"{shown}, but retraining run {active_run} is in progress")
    if retrained_by:
        return RetrainDecision(
            False,
            f"{shown}, but these batches already triggered {retrained_by}: waiting for new batches",
        )
    if last_triggered is not None:
        waited = (now - last_triggered) / 60.0
        if waited < cooldown_minutes:
            return RetrainDecision(
                False,
                f"{shown}, but in cooldown: last retrain requested {waited:.1f} min ago "
                f"(cooldown {cooldown_minutes:g} min)",
            )
    return RetrainDecision(True, f"{shown}: retraining requested")
