"""Serving runtime for the gradient-boosting baselines: treelite's tree evaluator.

scikit-learn's ``HistGradientBoosting*.predict`` walks its trees one Python call per tree: a
300-tree model costs about 2.3 ms for a single row, which alone exceeds the service's 5 ms
budget, and loading it imports scikit-learn (about 2 s of a worker's start). At save time
:func:`export_trees` converts the fitted model with ``treelite.sklearn.import_model`` and
writes treelite's checkpoint (``trees.tl``) next to ``model.joblib``; the service loads
:class:`TreeEnsemble` from it, which evaluates every tree in one C++ call (about 0.05-0.15 ms
per row here) and needs neither scikit-learn nor a compiler. ``tests/code/test_tree_export.py``
proves both give the same outputs within 1e-9.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FILE_NAME = "trees.tl"
_EXPORTABLE = ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")


class TreeEnsemble:
    """A boosted tree ensemble evaluated by treelite (GTIL), single-threaded.

    For a binary classifier it returns the positive-class probability (as
    ``predict_proba(X)[:, 1]``), for a regressor the prediction (as ``predict``).
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Scores rows; ``X`` is rows x features, the result has one value per row."""
        import treelite.gtil

        X = np.ascontiguousarray(X, dtype=np.float64)
        return np.asarray(treelite.gtil.predict(self.model, X, nthread=1)).reshape(len(X))

    def save(self, path: Path) -> Path:
        """Writes treelite's checkpoint file."""
        self.model.serialize(str(path))
        return path

    @classmethod
    def load(cls, path: Path) -> TreeEnsemble:
        """Reads a file written by :meth:`save`."""
        import treelite

        return cls(treelite.Model.deserialize(str(path)))


def export_trees(estimator: Any) -> TreeEnsemble | None:
    """Converts a fitted scikit-learn gradient-boosting model; None for other estimators.

    Args:
        estimator: A fitted scikit-learn estimator.

    Returns:
        The equivalent :class:`TreeEnsemble`, or None when the estimator is not a
        ``HistGradientBoostingClassifier`` (binary) or ``HistGradientBoostingRegressor``.
    """
    if type(estimator).__name__ not in _EXPORTABLE:
        return None
    if len(getattr(estimator, "classes_", (0, 1))) != 2:
        return None
    import treelite.sklearn

    return TreeEnsemble(treelite.sklearn.import_model(estimator))
