"""What drift is measured on: the champion's per-reading normalised sensor values.

Every windowed feature derives from the per-reading values ``<sensor>__z`` (the sensor
normalised with its regime's training mean and sd; an unseen regime falls back to the global
statistics). Comparing those with the same columns of the champion's training rows catches a
recalibrated sensor, more noise, faster wear and an unseen operating regime (whose readings sit
far from the global statistics), while a change in how often known regimes occur is not
reported as drift: the model normalises it away.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pdm_core.features import FeatureState, normalize

REFERENCE_ROWS = 5_000
"""Largest number of training rows kept as the drift reference of a model."""


def monitored_features(state: FeatureState) -> list[str]:
    """The columns drift is tested on (one per active sensor)."""
    return [f"{sensor}__z" for sensor in state.sensors]


def reference_sample(
    training_set: pd.DataFrame,
    state: FeatureState,
    max_rows: int = REFERENCE_ROWS,
    seed: int = 0,
) -> pd.DataFrame:
    """A seeded sample of the train split's monitored features (the model's drift reference).

    Args:
        training_set: The labelled feature rows with a ``split`` column.
        state: The feature definition the model was trained with.
        max_rows: Sample size cap.
        seed: Sample seed.

    Returns:
        Up to ``max_rows`` rows of :func:`monitored_features` as float64.
    """
    columns = monitored_features(state)
    train = training_set.loc[training_set["split"] == "train", columns]
    if len(train) > max_rows:
        train = train.sample(n=max_rows, random_state=seed)
    return train.astype(np.float64).reset_index(drop=True)


def current_features(readings: pd.DataFrame, state: FeatureState) -> pd.DataFrame:
    """The monitored features of raw readings, plus ``regime_known`` (False: unseen regime).

    Args:
        readings: Canonical telemetry rows with the state's sensors (and regime or settings).
        state: The champion's feature definition.

    Returns:
        One row per reading.
    """
    z, known = normalize(readings, state)
    frame = pd.DataFrame(z.T, columns=monitored_features(state))
    frame["regime_known"] = known
    return frame
