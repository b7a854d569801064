"""Serving runtime for the Keras networks: their dense layers exported to numpy.

The fleet's networks are plain stacks of ``Dense`` layers (``Dropout`` only acts in training).
Serving them through TensorFlow costs a 17 s import at start-up and about 1.4 ms per call; the
same forward pass in numpy costs microseconds and needs nothing beyond numpy. At save time
:func:`export_dense` writes the weights to ``dense.npz`` next to ``model.keras``; the service
loads :class:`DenseNetwork` from it. ``tests/code/test_dense_export.py`` proves the two give
the same outputs within 1e-5. Networks with any other layer are not exported and are served
by Keras itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FILE_NAME = "dense.npz"

_ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": lambda x: 0.5 * (1.0 + np.tanh(0.5 * x)),
    "tanh": np.tanh,
}
_INERT = ("InputLayer", "Dropout")


class DenseNetwork:
    """A feed-forward stack of dense layers evaluated in numpy (float32)."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray, str]]) -> None:
        for _, _, activation in layers:
            if activation not in _ACTIVATIONS:
                raise ValueError(f"unsupported activation '{activation}'")
        self.layers = [
            (np.asarray(w, np.float32), np.asarray(b, np.float32), a) for w, b, a in layers
        ]

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Forward pass; ``X`` is rows x inputs, the result rows x outputs."""
        out = np.asarray(X, dtype=np.float32)
        for kernel, bias, activation in self.layers:
            out = _ACTIVATIONS[activation](out @ kernel + bias)
        return out

    def save(self, path: Path) -> Path:
        """Writes the weights and activations to an ``.npz`` file."""
        arrays: dict[str, Any] = {}
        for i, (kernel, bias, activation) in enumerate(self.layers):
            arrays[f"kernel_{i}"] = kernel
            arrays[f"bias_{i}"] = bias
            arrays[f"activation_{i}"] = np.array(activation)
        np.savez(path, **arrays)
        return path

    @classmethod
    def load(cls, path: Path) -> DenseNetwork:
        """Reads a file written by :meth:`save`."""
        with np.load(path) as data:
            n = sum(1 for k in data.files if k.startswith("kernel_"))
            return cls(
                [
                    (data[f"kernel_{i}"], data[f"bias_{i}"], str(data[f"activation_{i}"]))
                    for i in range(n)
                ]
            )


def export_dense(model: Any) -> DenseNetwork | None:
    """Converts a Keras model made only of dense layers; None when it has other layers.

    Args:
        model: A built Keras model.

    Returns:
        The equivalent :class:`DenseNetwork`, or None if a layer is neither ``Dense`` (with a
        supported activation) nor inert at inference (``InputLayer``, ``Dropout``).
    """
    layers: list[tuple[np.ndarray, np.ndarray, str]] = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in _INERT:
            continue
        if kind != "Dense":
            return None
        activation = getattr(layer.activation, "__name__", "")
        if activation not in _ACTIVATIONS or not layer.use_bias:
            return None
        kernel, bias = (np.asarray(w) for w in layer.get_weights())
        layers.append((kernel, bias, activation))
    return DenseNetwork(layers) if layers else None
