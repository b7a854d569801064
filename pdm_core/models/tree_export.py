"""Serving runtime for the gradient-boosting baselines: their ONNX export, run by ONNX Runtime.

scikit-learn's ``HistGradientBoosting*.predict`` walks its trees one Python call per tree: a
300-tree model costs about 2.3 ms for a single row, and loading it imports scikit-learn
(about 2 s of a worker's start). At save time :func:`export_trees` converts the fitted model
with ``skl2onnx`` and writes ``trees.onnx`` next to ``model.joblib``; the service loads
:class:`TreeEnsemble` from it, which scores a row in about 0.02 ms and 500 rows in about
3 ms, needs neither scikit-learn
nor a compiler, and imports in 0.4 s.

ONNX Runtime's tree operators compare and add in float32 (the models already see float32
inputs, :meth:`pdm_core.models.trained.TrainedModel.predict`). Two things can differ from
scikit-learn: the running sum of leaf values is rounded to float32, which grows with the sums'
magnitude, and split thresholds are rounded to float32, so a value lying exactly between a
threshold and its rounding would take the other branch. :func:`parity_tolerance` is the bound
the tests hold the export to: 1e-5 of the output's scale (the differences observed are
far smaller; BENCHMARKS.md has them). A bundle without ``trees.onnx`` serves through
scikit-learn.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

FILE_NAME = "trees.onnx"
_EXPORTABLE = ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")
OPSETS = {"": 17, "ai.onnx.ml": 3}
PARITY = 1e-5
"""Largest difference from scikit-learn's outputs allowed, as a share of the outputs' scale."""


def parity_tolerance(reference: np.ndarray) -> float:
    """Largest difference allowed between the export's and scikit-learn's outputs.

    :data:`PARITY` times the outputs' scale: 1 for probabilities, the largest magnitude for
    larger outputs (float32 rounding of the running leaf sums grows with the sums, not with
    each output's own value).

    Args:
        reference: scikit-learn's outputs for the rows compared.
    """
    return PARITY * max(1.0, float(np.abs(np.asarray(reference)).max(initial=0.0)))


class TreeEnsemble:
    """A boosted tree ensemble run by ONNX Runtime on one thread.

    For a binary classifier it returns the positive-class probability (as
    ``predict_proba(X)[:, 1]``), for a regressor the prediction (as ``predict``).
    """

    def __init__(self, onnx_bytes: bytes, threads: int = 1) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        # A worker is one core's only user: threads that spin for work only steal it.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.onnx_bytes = onnx_bytes
        self.session = onnxruntime.InferenceSession(
            onnx_bytes, options, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        self.output = "probabilities" if "probabilities" in outputs else outputs[0]

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Scores rows; ``X`` is rows x features, the result has one value per row."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        (out,) = self.session.run([self.output], {self.input: X})
        out = np.asarray(out)
        return out[:, 1] if self.output == "probabilities" else out.reshape(len(X))

    def save(self, path: Path) -> Path:
        """Writes the ONNX model file."""
        path.write_bytes(self.onnx_bytes)
        return path

    @classmethod
    def load(cls, path: Path) -> TreeEnsemble:
        """Reads a file written by :meth:`save`."""
        return cls(Path(path).read_bytes())


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
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "classes_") else None
    with warnings.catch_warnings():  # skl2onnx 1.20 gives onnx booleans for int attributes
        warnings.filterwarnings("ignore", "Field onnx.AttributeProto", DeprecationWarning)
        model = to_onnx(
            estimator,
            initial_types=[("X", FloatTensorType([None, int(estimator.n_features_in_)]))],
            target_opset=OPSETS,
            options=options,
        )
    return TreeEnsemble(model.SerializeToString())
