"""How drift is decided: the settings of the KS drift test, with the platform's defaults.

Kept apart from :mod:`pdm_core.drift` (which imports scipy) so that the Dagster resource that
exposes these settings, ``pdm_resources.drift_policy.DriftPolicy``, takes its defaults from here
without loading scipy when the definitions are imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Correction = Literal["bh", "bonferroni"]
CORRECTIONS: tuple[str, ...] = ("bh", "bonferroni")


@dataclass(frozen=True)
class DriftSettings:
    """How drift is decided.

    Attributes:
        alpha: Significance level applied to the corrected p-values, in (0, 1).
        correction: Multiple-testing correction: ``"bh"`` (Benjamini-Hochberg, controls the
            false discovery rate) or ``"bonferroni"`` (controls the family-wise error rate).
        min_effect_size: Smallest KS statistic D, in [0, 1], for a feature to count as drifted.
        min_samples: Fewest finite values on each side for a feature to be tested at all.
        threshold: Share of drifted features, in (0, 1], from which the dataset counts as drifted.
    """

    alpha: float = 0.05
    correction: Correction = "bh"
    min_effect_size: float = 0.2
    min_samples: int = 200
    threshold: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {CORRECTIONS}, got {self.correction!r}")
        if not 0.0 <= self.min_effect_size <= 1.0:
            raise ValueError(
                f"min_effect_size (KS statistic D) must be in [0, 1], got {self.min_effect_size}"
            )
        if (
            isinstance(self.min_samples, bool)
            or not isinstance(self.min_samples, int | np.integer)
            or self.min_samples < 1
        ):
            raise ValueError(f"min_samples must be an integer >= 1, got {self.min_samples!r}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
