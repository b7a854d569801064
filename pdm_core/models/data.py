"""Turns the training-set table into model matrices, with the checks training needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pdm_core import schema

if TYPE_CHECKING:  # pandas stays out of the service's workers (cold start)
    import pandas as pd

SPLIT = "split"


class TrainingDataError(ValueError):
    """The training set cannot train a model (names the split, column or rule)."""


@dataclass
class SplitData:
    """Matrices of one split.

    Attributes:
        X: float32 features, shape (rows, features).
        label: 0/1 failure-within-horizon labels.
        rul: Remaining useful life (NaN where unknown).
        keys: machine_id and cycle of each row.
    """

    X: np.ndarray
    label: np.ndarray
    rul: np.ndarray
    keys: pd.DataFrame

    def __len__(self) -> int:
        return int(self.X.shape[0])


@dataclass
class ModelData:
    """Train, validation and test matrices over one list of feature columns."""

    features: list[str]
    train: SplitData
    validation: SplitData
    test: SplitData

    @property
    def has_rul(self) -> bool:
        """True when every train row has a known RUL."""
        return bool(len(self.train) and np.isfinite(self.train.rul).all())


class Standardizer:
    """Per-column mean/std scaling fitted on training rows (std 0 becomes 1)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardizer:
        """Fits on ``X`` (rows x features)."""
        std = X.std(axis=0)
        return cls(X.mean(axis=0), np.where(std > 1e-12, std, 1.0))

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Scales ``X``."""
        return ((X - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-serialisable form."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, list[float]]) -> Standardizer:
        """Inverse of :meth:`to_dict`."""
        return cls(np.array(data["mean"]), np.array(data["std"]))


def _split(table: pd.DataFrame, name: str, features: list[str]) -> SplitData:
    part = table[table[SPLIT] == name]
    X = part[features].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise TrainingDataError(
            f"{name} split: feature '{features[col]}' is not finite at machine_id="
            f"{part[schema.MACHINE].iloc[row]}, cycle={part[schema.CYCLE].iloc[row]}"
        )
    return SplitData(
        X=X.astype(np.float32),
        label=part[schema.LABEL].to_numpy(dtype=np.int64),
        rul=part[schema.RUL].to_numpy(dtype=np.float64),
        keys=part[[schema.MACHINE, schema.CYCLE]].reset_index(drop=True),
    )


def model_data(table: pd.DataFrame, features: list[str]) -> ModelData:
    """Builds model matrices from the ``training_set`` table.

    Args:
        table: The training set (split, features, labels).
        features: Feature columns, in model input order.

    Returns:
        Train, validation and test matrices.

    Raises:
        TrainingDataError: Missing columns, an empty split, non-finite features, or a train
            or validation split with only one class.
    """
    from pdm_core.split import TEST, TRAIN, VALIDATION

    missing = [c for c in [SPLIT, schema.LABEL, schema.RUL, *features] if c not in table.columns]
    if missing:
        raise TrainingDataError(f"training set lacks column(s) {missing}")
    data = ModelData(features, *(_split(table, s, features) for s in (TRAIN, VALIDATION, TEST)))
    for name in (TRAIN, VALIDATION, TEST):
        if len(getattr(data, name)) == 0:
            raise TrainingDataError(f"the {name} split has no rows")
    for name in (TRAIN, VALIDATION):
        classes = np.unique(getattr(data, name).label)
        if classes.size < 2:
            raise TrainingDataError(
                f"the {name} split has only class {classes.tolist()} of failure_within_h; "
                "a failure-risk model needs both failing and healthy readings"
            )
    return data
