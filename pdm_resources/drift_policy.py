"""Drift-test settings and the retraining policy, shared by the drift report and its sensor."""

from __future__ import annotations

import os
from typing import Literal

import dagster as dg


class DriftPolicy(dg.ConfigurableResource):
    """How drift is judged and when it triggers retraining.

    Defaults come from ``PDM_DRIFT_*`` environment variables (see :meth:`from_env`); per run
    they can be changed in the Launchpad under ``resources.drift_policy.config``.

    Attributes:
        threshold: Drift share (drifted / checked features) from which retraining starts.
        alpha: Significance level after the multiple-testing correction.
        correction: ``bh`` (Benjamini-Hochberg) or ``bonferroni``.
        min_effect_size: Smallest KS statistic D that counts as drift.
        min_samples: Fewer rows than this on either side: no verdict for the feature.
        recent_batches: Landed batches (newest first) compared with the reference.
        cooldown_minutes: Least time between two drift-triggered retraining runs.
        evidently_report: Also write Evidently's HTML drift report.
    """

    threshold: float = 0.3
    alpha: float = 0.05
    correction: Literal["bh", "bonferroni"] = "bh"
    min_effect_size: float = 0.2
    min_samples: int = 200
    recent_batches: int = 1
    cooldown_minutes: float = 60.0
    evidently_report: bool = True

    @classmethod
    def from_env(cls) -> DriftPolicy:
        """The policy from ``PDM_*`` environment variables (defaults as the attributes).

        Reads ``PDM_DRIFT_THRESHOLD``, ``PDM_DRIFT_ALPHA``, ``PDM_DRIFT_CORRECTION``,
        ``PDM_DRIFT_MIN_EFFECT``, ``PDM_DRIFT_MIN_SAMPLES``, ``PDM_DRIFT_RECENT_BATCHES``,
        ``PDM_RETRAIN_COOLDOWN_MINUTES`` and ``PDM_DRIFT_EVIDENTLY`` (``0`` turns it off).
        """
        env = os.environ
        return cls(
            threshold=float(env.get("PDM_DRIFT_THRESHOLD", "0.3")),
            alpha=float(env.get("PDM_DRIFT_ALPHA", "0.05")),
            correction=env.get("PDM_DRIFT_CORRECTION", "bh"),  # type: ignore[arg-type]
            min_effect_size=float(env.get("PDM_DRIFT_MIN_EFFECT", "0.2")),
            min_samples=int(env.get("PDM_DRIFT_MIN_SAMPLES", "200")),
            recent_batches=int(env.get("PDM_DRIFT_RECENT_BATCHES", "1")),
            cooldown_minutes=float(env.get("PDM_RETRAIN_COOLDOWN_MINUTES", "60")),
            evidently_report=env.get("PDM_DRIFT_EVIDENTLY", "1") != "0",
        )

    def settings(self):  # type: ignore[no-untyped-def]
        """As :class:`pdm_core.drift.DriftSettings`."""
        from pdm_core.drift import DriftSettings

        return DriftSettings(
            alpha=self.alpha,
            correction=self.correction,
            min_effect_size=self.min_effect_size,
            min_samples=self.min_samples,
            threshold=self.threshold,
        )
