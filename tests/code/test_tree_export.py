"""The ONNX Runtime serving path of the gradient-boosting models gives scikit-learn's outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression

from pdm_core.models.data import Standardizer
from pdm_core.models.trained import TrainedModel
from pdm_core.models.tree_export import (
    FILE_NAME,
    TreeEnsemble,
    export_trees,
    parity_tolerance,
)

REPO = Path(__file__).resolve().parents[2]


def data(rows: int = 3000, columns: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, (rows, columns)).astype(np.float32)
    y = X[:, 0] * 3 + np.sin(X[:, 1] * 2) + X[:, 2] * X[:, 3] + rng.normal(0, 0.3, rows)
    return X, y


def test_regressor_export_matches_scikit_learn() -> None:
    X, y = data()
    model = HistGradientBoostingRegressor(max_iter=200, random_state=0).fit(X, y)
    trees = export_trees(model)
    assert trees is not None
    fresh, _ = data(2000, seed=1)
    fresh[:5] = 0.0  # values on split points and far outside the training range
    fresh[5:10] = 1e6
    got, want = trees(fresh), model.predict(fresh)
    assert np.abs(got - want).max() <= parity_tolerance(want)


def test_classifier_export_gives_the_positive_class_probability() -> None:
    X, y = data()
    label = (y > np.quantile(y, 0.9)).astype(int)
    model = HistGradientBoostingClassifier(
        max_iter=150, class_weight="balanced", random_state=0
    ).fit(X, label)
    trees = export_trees(model)
    assert trees is not None
    fresh, _ = data(2000, seed=2)
    got = trees(fresh)
    assert got.min() >= 0.0 and got.max() <= 1.0
    want = model.predict_proba(fresh)[:, 1]
    assert np.abs(got - want).max() <= parity_tolerance(want)


def test_other_estimators_and_multiclass_are_not_exported() -> None:
    X, y = data(300)
    assert export_trees(LinearRegression().fit(X, y)) is None
    three = np.digitize(y, np.quantile(y, [0.33, 0.66]))
    assert export_trees(HistGradientBoostingClassifier(max_iter=5).fit(X, three)) is None


@pytest.mark.parametrize("kind", ["risk_classifier", "rul_regressor"])
def test_saved_component_serves_from_trees_and_agrees(tmp_path: Path, kind: str) -> None:
    X, y = data()
    if kind == "risk_classifier":
        scaler = Standardizer.fit(X)
        target = (y > np.quantile(y, 0.8)).astype(int)
        estimator = HistGradientBoostingClassifier(max_iter=100, random_state=0)
        extra: dict[str, float] = {"threshold": 0.5}
    else:
        scaler = Standardizer.fit(X)
        target = np.clip(y * 10 + 60, 0, 125)
        estimator = HistGradientBoostingRegressor(max_iter=100, random_state=0)
        extra = {"rul_cap": 125.0}
    estimator.fit(scaler.transform(X), target)
    component = TrainedModel(
        kind, "sklearn", estimator, scaler, [f"f{i}" for i in range(X.shape[1])], extra=extra
    )
    component.save(tmp_path / "c")
    assert (tmp_path / "c" / FILE_NAME).exists()
    served = TrainedModel.load(tmp_path / "c", serving=True)
    assert isinstance(served.estimator, TreeEnsemble)
    fresh, _ = data(1000, seed=3)
    want = component.predict(fresh)
    assert np.abs(served.predict(fresh) - want).max() <= parity_tolerance(want)
    with pytest.raises(ValueError, match="cannot save"):
        served.save(tmp_path / "again")
    assert not isinstance(TrainedModel.load(tmp_path / "c").estimator, TreeEnsemble)


def saved_small_regressor(directory: Path) -> tuple[TrainedModel, np.ndarray]:
    """A 20-tree RUL component saved to ``directory``, and the rows it was fitted on."""
    X, y = data(500)
    scaler = Standardizer.fit(X)
    estimator = HistGradientBoostingRegressor(max_iter=20).fit(scaler.transform(X), y)
    component = TrainedModel(
        "rul_regressor", "sklearn", estimator, scaler, [f"f{i}" for i in range(20)],
        extra={"rul_cap": 125.0},
    )  # fmt: skip
    component.save(directory)
    return component, X


def test_serving_load_does_not_import_scikit_learn(tmp_path: Path) -> None:
    saved_small_regressor(tmp_path / "c")
    code = (
        "import sys; from pathlib import Path; import numpy as np\n"
        "from pdm_core.models.trained import TrainedModel\n"
        f"m = TrainedModel.load(Path({str(tmp_path / 'c')!r}), serving=True)\n"
        "m.predict(np.zeros((3, 20), np.float32))\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('sklearn', 'joblib')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_a_component_saved_without_the_onnx_export_serves_through_scikit_learn(
    tmp_path: Path,
) -> None:
    """Bundles from before the ONNX export (treelite's ``trees.tl``) still serve."""
    component, X = saved_small_regressor(tmp_path / "c")
    (tmp_path / "c" / FILE_NAME).unlink()
    served = TrainedModel.load(tmp_path / "c", serving=True)
    assert type(served.estimator).__name__ == "HistGradientBoostingRegressor"
    np.testing.assert_array_equal(served.predict(X[:50]), component.predict(X[:50]))
