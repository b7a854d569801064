"""A trained model component with one interface, whatever the framework.

Three kinds of component make up the fleet model:

* ``risk_classifier``: probability of failure within the horizon;
* ``rul_regressor``: remaining useful life (readings), capped at ``rul_cap``;
* ``anomaly_detector``: reconstruction error of an autoencoder trained on healthy readings,
  with an alert threshold from a validation quantile.

A ``rul_regressor`` may also be an average of member regressors (framework ``ensemble``,
:mod:`pdm_core.models.ensemble`); :meth:`TrainedModel.load` reads it too.

Each is saved as a directory: ``meta.json`` plus ``model.keras`` (TensorFlow/Keras) or
``model.joblib`` (scikit-learn). Keras networks made of dense layers also get ``dense.npz``,
the numpy serving runtime (:mod:`pdm_core.models.dense_export`), which the service loads
instead of TensorFlow; gradient-boosting models get ``trees.onnx``, their ONNX export run by
ONNX Runtime (:mod:`pdm_core.models.tree_export`), which the service loads instead of
scikit-learn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pdm_core.models.calibration import calibrate
from pdm_core.models.data import Standardizer
from pdm_core.models.dense_export import FILE_NAME as DENSE_FILE
from pdm_core.models.dense_export import DenseNetwork, export_dense
from pdm_core.models.tree_export import FILE_NAME as TREES_FILE
from pdm_core.models.tree_export import TreeEnsemble, export_trees

KINDS = ("risk_classifier", "rul_regressor", "anomaly_detector")
FRAMEWORKS = ("keras", "sklearn", "ensemble")


@dataclass
class TrainedModel:
    """A fitted component.

    Attributes:
        kind: One of :data:`KINDS`.
        framework: ``keras`` or ``sklearn``.
        estimator: The Keras model or scikit-learn estimator.
        standardizer: Input scaling fitted on the training rows.
        features: Feature columns in input order.
        params: Hyperparameters (logged to MLflow).
        history: Per-epoch metrics (Keras) or iteration scores (scikit-learn).
        extra: Kind-specific values: ``threshold`` (classifier operating point, anomaly alert
            threshold), ``rul_cap``, a classifier's calibration (:mod:`.calibration`), a RUL
            regressor's prediction interval (``rul_interval``, :mod:`.rul_interval`).
    """

    kind: str
    framework: str
    estimator: Any
    standardizer: Standardizer
    features: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``{kind}_{framework}``, e.g. ``risk_classifier_keras``."""
        return f"{self.kind}_{self.framework}"

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Scores raw feature rows.

        Args:
            X: Feature matrix (rows x ``len(features)``), not standardised.

        Returns:
            Failure probability, RUL estimate or anomaly score per row (float64).
        """
        if self.kind == "risk_classifier":
            return calibrate(self.raw_probability(X), self.extra)
        Xs = self.standardizer.transform(np.asarray(X, dtype=np.float32))
        if self.kind == "anomaly_detector":
            recon = self._raw(Xs)
            return np.mean((recon - Xs) ** 2, axis=1).astype(np.float64)
        cap = float(self.extra["rul_cap"])
        scale = cap if self.framework == "keras" else 1.0
        return np.clip(self._raw(Xs).reshape(-1) * scale, 0.0, cap).astype(np.float64)

    def raw_probability(self, X: np.ndarray) -> np.ndarray:
        """A risk classifier's own score, before calibration (:mod:`.calibration`)."""
        Xs = self.standardizer.transform(np.asarray(X, dtype=np.float32))
        if isinstance(self.estimator, TreeEnsemble):
            return self.estimator(Xs).astype(np.float64)
        if self.framework == "sklearn":
            return self.estimator.predict_proba(Xs)[:, 1].astype(np.float64)
        return self._raw(Xs).reshape(-1).astype(np.float64)

    def _raw(self, Xs: np.ndarray) -> np.ndarray:
        if isinstance(self.estimator, TreeEnsemble):
            return self.estimator(Xs)
        if self.framework == "sklearn":
            return np.asarray(self.estimator.predict(Xs))
        if isinstance(self.estimator, DenseNetwork):
            return self.estimator(Xs)
        return predict_keras(self.estimator, Xs)

    def save(self, directory: Path) -> Path:
        """Writes the component to ``directory`` (created)."""
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "kind": self.kind,
            "framework": self.framework,
            "features": self.features,
            "standardizer": self.standardizer.to_dict(),
            "params": self.params,
            "extra": self.extra,
        }
        (directory / "meta.json").write_text(json.dumps(meta, indent=1))
        if isinstance(self.estimator, DenseNetwork | TreeEnsemble):
            raise ValueError(f"{self.name} was loaded for serving; cannot save")
        if self.framework == "keras":
            self.estimator.save(directory / "model.keras")
            dense = export_dense(self.estimator)
            if dense is not None:
                dense.save(directory / DENSE_FILE)
        else:
            import joblib

            joblib.dump(self.estimator, directory / "model.joblib")
            trees = export_trees(self.estimator)
            if trees is not None:
                trees.save(directory / TREES_FILE)
        return directory

    @classmethod
    def load(cls, directory: Path, serving: bool = False) -> TrainedModel:
        """Reads a component written by :meth:`save`.

        Args:
            directory: The component directory.
            serving: Load the serving runtime where there is one: a Keras network's numpy
                export (``dense.npz``), so that TensorFlow is never imported, or a boosted
                model's ONNX export (``trees.onnx``), so that scikit-learn is not (a component
                saved without one serves through scikit-learn). Such a component predicts but
                cannot be saved again.
        """
        meta = json.loads((Path(directory) / "meta.json").read_text())
        if meta["framework"] == "ensemble":
            from pdm_core.models.ensemble import AveragedRegressor

            return AveragedRegressor.load(Path(directory), serving=serving)
        exported = Path(directory) / DENSE_FILE
        trees = Path(directory) / TREES_FILE
        if meta["framework"] == "keras" and serving and exported.exists():
            estimator: Any = DenseNetwork.load(exported)
        elif meta["framework"] == "sklearn" and serving and trees.exists():
            estimator = TreeEnsemble.load(trees)
        elif meta["framework"] == "keras":
            import keras

            estimator = keras.models.load_model(Path(directory) / "model.keras", compile=False)
        else:
            import joblib

            estimator = joblib.load(Path(directory) / "model.joblib")
        return cls(
            kind=meta["kind"],
            framework=meta["framework"],
            estimator=estimator,
            standardizer=Standardizer.from_dict(meta["standardizer"]),
            features=list(meta["features"]),
            params=meta["params"],
            extra=meta["extra"],
        )


def predict_keras(model: Any, X: np.ndarray, batch: int = 8192) -> np.ndarray:
    """Runs a Keras model in large batches without the overhead of ``model.predict``."""
    outputs = [np.asarray(model(X[i : i + batch], training=False)) for i in range(0, len(X), batch)]
    if not outputs:
        return np.zeros((0, 1), dtype=np.float32)
    return np.concatenate(outputs, axis=0)
