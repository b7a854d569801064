"""Direction check of a risk classifier: a worsening sensor must not lower the risk.

A data source may declare sensors whose rise means wear (``DatasetInfo.extra["risk_rising"]``:
sensor -> step in the sensor's own units, e.g. the simulator's vibration and temperature).
For each, the last :data:`RAMP` readings of real windows are raised linearly up to the step,
the windows are featurised with the pipeline's feature code and scored again. The classifier
passes when the mean risk does not fall and at most :data:`MAX_LOWERED_SHARE` of the windows
get a risk lower by more than :data:`TOLERANCE`: the rule of the behavioural model tests
(``tests/model/test_model_behaviour.py``), applied by promotion to validation machines so
that a classifier failing it never becomes the champion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pdm_core import schema
from pdm_core.features import FeatureState, compute_window_features

if TYPE_CHECKING:
    import pandas as pd

    from pdm_core.models.trained import TrainedModel

RAMP = 10
TOLERANCE = 0.05
MAX_LOWERED_SHARE = 0.1


@dataclass(frozen=True)
class DirectionResult:
    """How one classifier's risk moved when one sensor worsened.

    Attributes:
        sensor: The sensor raised.
        step: Its rise at the last reading (sensor units).
        windows: Windows scored.
        mean_before: Mean failure probability of the original windows.
        mean_after: Mean failure probability with the sensor raised.
        lowered_share: Share of windows whose probability fell by more than the tolerance.
    """

    sensor: str
    step: float
    windows: int
    mean_before: float
    mean_after: float
    lowered_share: float

    @property
    def passed(self) -> bool:
        """Risk did not fall on average and fell clearly on few windows."""
        return self.mean_after >= self.mean_before and self.lowered_share <= MAX_LOWERED_SHARE

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable, with ``passed``."""
        return {**asdict(self), "passed": self.passed}


def worsened(window: pd.DataFrame, sensor: str, step: float) -> pd.DataFrame:
    """The window with ``sensor`` raised linearly over its last :data:`RAMP` readings."""
    ramp = np.clip(np.arange(len(window)) - (len(window) - RAMP - 1), 0, None) / RAMP
    out = window.copy()
    out[sensor] = out[sensor].to_numpy(dtype=np.float64) + step * ramp
    return out


def check_direction(
    classifier: TrainedModel,
    state: FeatureState,
    windows: list[pd.DataFrame],
    sensor: str,
    step: float,
) -> DirectionResult:
    """Scores ``windows`` as they are and with ``sensor`` worsened by ``step``.

    Args:
        classifier: A ``risk_classifier`` component.
        state: The feature definition it was trained on.
        windows: Raw readings of one machine each (canonical columns), oldest first, at least
            ``state.window_length`` long.
        sensor: Sensor to raise.
        step: Rise at the last reading, in the sensor's units.

    Returns:
        The before/after comparison.
    """
    return check_directions(classifier, state, windows, {sensor: step})[0]


def check_directions(
    classifier: TrainedModel,
    state: FeatureState,
    windows: list[pd.DataFrame],
    steps: dict[str, float],
) -> list[DirectionResult]:
    """:func:`check_direction` for several sensors, scoring the unchanged windows once.

    Args:
        classifier: A ``risk_classifier`` component.
        state: The feature definition it was trained on.
        windows: As for :func:`check_direction`.
        steps: Sensor -> rise at the last reading, in the sensor's units.

    Returns:
        One comparison per sensor, in the order of ``steps``.
    """
    import pandas as pd

    def score(frames: list[pd.DataFrame]) -> np.ndarray:
        rows = pd.concat([compute_window_features(w, state) for w in frames], ignore_index=True)
        return classifier.predict(rows[classifier.features].to_numpy(dtype=np.float32))

    before = score(windows)
    results = []
    for sensor, step in steps.items():
        after = score([worsened(w, sensor, step) for w in windows])
        results.append(
            DirectionResult(
                sensor=sensor,
                step=float(step),
                windows=len(windows),
                mean_before=float(before.mean()),
                mean_after=float(after.mean()),
                lowered_share=float((after < before - TOLERANCE).mean()),
            )
        )
    return results


def sample_windows(
    raw: pd.DataFrame,
    keys: pd.DataFrame,
    rul: np.ndarray,
    length: int,
    max_rul: float,
    count: int = 40,
    seed: int = 0,
) -> list[pd.DataFrame]:
    """Windows of raw readings ending at seeded random rows of a split, near failure.

    Args:
        raw: Canonical raw telemetry.
        keys: The split's ``machine_id`` and ``cycle`` per row.
        rul: The split's RUL per row (rows with RUL above ``max_rul`` are not used; NaN RUL
            rows are used).
        length: Readings per window.
        max_rul: Largest RUL of a window's last reading.
        count: Most windows returned.
        seed: Sampling seed.

    Returns:
        Up to ``count`` windows of exactly ``length`` readings.
    """
    machine = raw[schema.MACHINE].astype(str).to_numpy()
    cycles = raw[schema.CYCLE].to_numpy()
    near = np.where(np.isfinite(rul), rul <= max_rul, True)
    candidates = keys.loc[near, [schema.MACHINE, schema.CYCLE]].astype({schema.MACHINE: str})
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(candidates))
    out: list[pd.DataFrame] = []
    for i in order:
        name, cycle = candidates.iloc[i]
        rows = np.flatnonzero((machine == name) & (cycles <= cycle))
        if len(rows) >= length:
            out.append(raw.iloc[rows[-length:]])
        if len(out) == count:
            break
    return out
