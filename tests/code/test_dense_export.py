"""The numpy serving runtime of the Keras networks gives Keras's outputs within 1e-5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pdm_core.models.data import Standardizer
from pdm_core.models.dense_export import DenseNetwork, export_dense
from pdm_core.models.trained import TrainedModel

keras = pytest.importorskip("keras")


def network(inputs: int, output: str, widths=(64, 32), dropout: float = 0.3):
    layers = [keras.Input(shape=(inputs,))]
    for i, width in enumerate(widths):
        layers.append(keras.layers.Dense(width, activation="relu"))
        if i == 0:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(1 if output != "linear" else inputs, activation=output))
    keras.utils.set_random_seed(3)
    return keras.Sequential(layers)


@pytest.mark.parametrize("output", ["sigmoid", "linear", "tanh"])
def test_numpy_forward_pass_matches_keras(output: str) -> None:
    model = network(40, output)
    X = np.random.default_rng(0).normal(0, 2, (500, 40)).astype(np.float32)
    dense = export_dense(model)
    assert dense is not None
    expected = np.asarray(model(X, training=False))
    np.testing.assert_allclose(dense(X), expected, rtol=0, atol=1e-5)


def test_saved_component_serves_without_keras_and_agrees(tmp_path: Path) -> None:
    model = network(12, "sigmoid")
    X = np.random.default_rng(1).normal(0, 1, (200, 12)).astype(np.float32)
    component = TrainedModel(
        kind="risk_classifier",
        framework="keras",
        estimator=model,
        standardizer=Standardizer.fit(X),
        features=[f"f{i}" for i in range(12)],
    )
    component.save(tmp_path / "c")
    assert (tmp_path / "c" / "dense.npz").exists()
    served = TrainedModel.load(tmp_path / "c", serving=True)
    assert isinstance(served.estimator, DenseNetwork)
    np.testing.assert_allclose(served.predict(X), component.predict(X), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="cannot save"):
        served.save(tmp_path / "again")


def test_networks_with_other_layers_are_not_exported() -> None:
    model = keras.Sequential(
        [keras.Input(shape=(8,)), keras.layers.BatchNormalization(), keras.layers.Dense(1)]
    )
    assert export_dense(model) is None
