"""The averaged RUL regressor: a weighted mean of member RUL regressors.

The members (a scikit-learn HistGradientBoosting regressor and a Keras MLP) may read a subset
of the bundle's feature columns (e.g. only the window means and slopes); the component itself
reads the full feature rows, like every other component, and hands each member its columns.
It is saved as a directory: ``meta.json`` plus ``members/<i>_<name>/``, each member saved as a
plain :class:`TrainedModel` (so the Keras member carries its numpy export ``dense.npz``, and a
serving load never imports TensorFlow).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pdm_core.models.data import Standardizer
from pdm_core.models.trained import TrainedModel
from pdm_core.rolling import STATS

FRAMEWORK = "ensemble"
MEMBERS = "members"
_WINDOW_STAT = re.compile(r".+__(?P<stat>[a-z]+)_w\d+")


def member_columns(features: list[str], stats: tuple[str, ...] | None) -> list[int]:
    """Indices of the feature columns a member reads.

    Args:
        features: The bundle's feature columns.
        stats: Window statistics to keep (None keeps every column). Columns that are not a
            window statistic (normalised readings, interactions, age, ``regime_known``,
            categoricals) are always kept.

    Returns:
        Column indices into ``features``, in order.
    """
    if stats is None:
        return list(range(len(features)))
    unknown = sorted(set(stats) - set(STATS))
    if unknown:
        raise ValueError(f"unknown stats {unknown}; known: {STATS}")
    kept = []
    for i, name in enumerate(features):
        match = _WINDOW_STAT.fullmatch(name)
        if match is None or match["stat"] not in STATS or match["stat"] in stats:
            kept.append(i)
    return kept


@dataclass
class AveragedRegressor(TrainedModel):
    """A ``rul_regressor`` whose prediction is the weighted mean of its members'.

    ``estimator`` holds the member components (each a ``rul_regressor`` over a subset of
    ``features``); ``weights`` their weights (non-negative, summing to 1).
    """

    weights: tuple[float, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        members = list(self.estimator)
        if not members or len(members) != len(self.weights):
            raise ValueError(f"{len(members)} members but {len(self.weights)} weights")
        if min(self.weights) < 0 or abs(sum(self.weights) - 1.0) > 1e-9:
            raise ValueError(f"weights must be >= 0 and sum to 1, got {self.weights}")
        for member in members:
            if member.kind != "rul_regressor":
                raise ValueError(f"member {member.name} is not a rul_regressor")
            missing = sorted(set(member.features) - set(self.features))
            if missing:
                raise ValueError(f"member {member.name} reads unknown columns {missing[:5]}")
        index = {name: i for i, name in enumerate(self.features)}
        self._columns = [[index[f] for f in m.features] for m in members]

    @property
    def members(self) -> list[TrainedModel]:
        """The member components."""
        return list(self.estimator)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Weighted mean of the members' RUL estimates for raw feature rows."""
        X = np.asarray(X, dtype=np.float32)
        total = np.zeros(X.shape[0], dtype=np.float64)
        for weight, member, columns in zip(self.weights, self.members, self._columns, strict=True):
            total += weight * member.predict(X[:, columns])
        return np.clip(total, 0.0, float(self.extra["rul_cap"]))

    def save(self, directory: Path) -> Path:
        """Writes ``meta.json`` and one sub-directory per member to ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        names = [f"{i}_{m.name}" for i, m in enumerate(self.members)]
        meta = {
            "kind": self.kind,
            "framework": self.framework,
            "features": self.features,
            "params": self.params,
            "extra": self.extra,
            "weights": list(self.weights),
            "members": names,
        }
        (directory / "meta.json").write_text(json.dumps(meta, indent=1))
        for name, member in zip(names, self.members, strict=True):
            member.save(directory / MEMBERS / name)
        return directory

    @classmethod
    def load(cls, directory: Path, serving: bool = False) -> AveragedRegressor:
        """Reads a component written by :meth:`save` (``serving``: see TrainedModel.load)."""
        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text())
        members = [
            TrainedModel.load(directory / MEMBERS / name, serving=serving)
            for name in meta["members"]
        ]
        return cls.average(
            members, meta["weights"], list(meta["features"]), meta["params"], meta["extra"]
        )

    @classmethod
    def average(
        cls,
        members: list[TrainedModel],
        weights: list[float] | tuple[float, ...],
        features: list[str],
        params: dict | None = None,
        extra: dict[str, float] | None = None,
    ) -> AveragedRegressor:
        """Builds the component from fitted members.

        Args:
            members: Fitted ``rul_regressor`` components, each over a subset of ``features``.
            weights: One weight per member (>= 0, summing to 1).
            features: The full feature columns the component reads.
            params: Hyperparameters to log (default: the members', prefixed by their names).
            extra: Operating values (default: the first member's ``rul_cap``).
        """
        names = [m.name for m in members]
        labels = [
            n if names.count(n) == 1 else f"{n}{names[:i].count(n) + 1}"
            for i, n in enumerate(names)
        ]
        history = {
            f"{label}_{k}": v
            for label, m in zip(labels, members, strict=True)
            for k, v in m.history.items()
        }
        if params is None:
            params = {f"{m.name}.{k}": v for m in members for k, v in m.params.items()}
        return cls(
            kind="rul_regressor",
            framework=FRAMEWORK,
            estimator=tuple(members),
            standardizer=Standardizer(np.zeros(len(features)), np.ones(len(features))),
            features=list(features),
            params=dict(params),
            history=history,
            extra=dict(extra or {"rul_cap": float(members[0].extra["rul_cap"])}),
            weights=tuple(float(w) for w in weights),
        )
