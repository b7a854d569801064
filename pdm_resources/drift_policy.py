"""Drift-test settings and the retraining policy, shared by the drift report and its sensor."""

from __future__ import annotations

import os
from typing import Literal

import dagster as dg

from pdm_core.drift_settings import DriftSettings
from pdm_resources.env_config import from_environment

ENV_VARS: dict[str, str] = {
    "threshold": "PDM_DRIFT_THRESHOLD",
    "alpha": "PDM_DRIFT_ALPHA",
    "correction": "PDM_DRIFT_CORRECTION",
    "min_effect_size": "PDM_DRIFT_MIN_EFFECT",
    "min_samples": "PDM_DRIFT_MIN_SAMPLES",
    "recent_batches": "PDM_DRIFT_RECENT_BATCHES",
    "cooldown_minutes": "PDM_RETRAIN_COOLDOWN_MINUTES",
    "evidently_report": "PDM_DRIFT_EVIDENTLY",
}
"""The environment variable behind each setting (an unset variable keeps the default)."""


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

    # The test's defaults are DriftSettings' own, so they are written down once.
    threshold: float = DriftSettings.threshold
    alpha: float = DriftSettings.alpha
    correction: Literal["bh", "bonferroni"] = DriftSettings.correction
    min_effect_size: float = DriftSettings.min_effect_size
    min_samples: int = DriftSettings.min_samples
    recent_batches: int = 1
    cooldown_minutes: float = 60.0
    evidently_report: bool = True

    @classmethod
    def from_env(cls) -> DriftPolicy:
        """The policy with each setting whose variable in :data:`ENV_VARS` is set.

        ``PDM_DRIFT_EVIDENTLY=0`` turns the HTML report off.

        Raises:
            ValueError: A value of the wrong type, naming the variable and the value.
        """
        policy = from_environment(cls, ENV_VARS)
        try:
            policy.settings()  # range checks live in DriftSettings
        except ValueError as error:
            given = ", ".join(
                f"{var}={os.environ[var]!r}"
                for var in ENV_VARS.values()
                if os.environ.get(var, "").strip()
            )
            raise ValueError(f"drift policy from the environment ({given}): {error}") from error
        return policy

    def settings(self) -> DriftSettings:
        """These values as the settings :func:`pdm_core.drift.ks_drift` takes."""
        return DriftSettings(
            alpha=self.alpha,
            correction=self.correction,
            min_effect_size=self.min_effect_size,
            min_samples=self.min_samples,
            threshold=self.threshold,
        )
