"""The averaged RUL regressor: column routing, averaging, save/load and TensorFlow-free serving."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pdm_core.models.bundle import FleetModel
from pdm_core.models.ensemble import AveragedRegressor, member_columns
from pdm_core.models.trained import TrainedModel
from pdm_core.models.training import (
    EnsembleParams,
    TrainingParams,
    train_risk_classifier_sklearn,
    train_rul_regressor_ensemble,
)
from pdm_core.models.tree_export import parity_tolerance
from pdm_core.simulator import SimulatorConfig
from tests.fleets import Fleet, simulated_fleet

pytest.importorskip("keras")

REPO = Path(__file__).resolve().parents[2]
PARAMS = EnsembleParams(
    seed=3, epochs=4, boosting_iterations=40, hidden=(16, 8), network_weight=0.4,
    network_members=2,
)  # fmt: skip


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return simulated_fleet(SimulatorConfig(n_machines=10, n_steps=400, seed=11))


@pytest.fixture(scope="module")
def ensemble(fleet: Fleet) -> AveragedRegressor:
    model = train_rul_regressor_ensemble(fleet.data, PARAMS)
    assert isinstance(model, AveragedRegressor)
    return model


def test_member_columns_keep_the_chosen_window_stats_and_every_other_column() -> None:
    names = ["a__z", "a__mean_w10", "a__std_w10", "a__slope_w10", "a__x__b_w10",
             "time_since_maintenance", "regime_known", "a__max_w30", "a__mean_w30"]  # fmt: skip
    kept = [names[i] for i in member_columns(names, ("mean", "slope"))]
    assert kept == ["a__z", "a__mean_w10", "a__slope_w10", "a__x__b_w10",
                    "time_since_maintenance", "regime_known", "a__mean_w30"]  # fmt: skip
    assert member_columns(names, None) == list(range(len(names)))
    with pytest.raises(ValueError, match="unknown stats"):
        member_columns(names, ("median",))


def test_members_read_their_subset_and_the_component_reads_all_columns(
    fleet: Fleet, ensemble: AveragedRegressor
) -> None:
    assert ensemble.name == "rul_regressor_ensemble"
    assert ensemble.features == fleet.data.features
    frameworks = [m.framework for m in ensemble.members]
    assert frameworks == ["sklearn", "keras", "keras"]
    assert ensemble.weights == pytest.approx((0.6, 0.2, 0.2))
    # Two networks from two seeds: the same shape, other weights, each its own history.
    first, second = ensemble.members[1:]
    X = fleet.data.test.X[:, member_columns(fleet.data.features, ("mean", "slope"))]
    assert not np.allclose(first.predict(X), second.predict(X))
    assert {"rul_regressor_keras1_loss", "rul_regressor_keras2_loss"} <= set(ensemble.history)
    for member in ensemble.members:
        assert not any("__std_w" in f or "__max_w" in f for f in member.features)
        assert any("__slope_w" in f for f in member.features)
        assert len(member.features) < len(fleet.data.features)
    assert ensemble.members[1].params["hidden"] == "16,8"
    assert ensemble.params["network_weight"] == 0.4


def test_prediction_is_the_weighted_mean_of_the_members(
    fleet: Fleet, ensemble: AveragedRegressor
) -> None:
    rows = pd.DataFrame(fleet.data.test.X, columns=fleet.data.features)
    boosting, *networks = ensemble.members
    expected = 0.6 * boosting.predict(rows[boosting.features].to_numpy()) + sum(
        0.2 * network.predict(rows[network.features].to_numpy()) for network in networks
    )
    got = ensemble.predict(rows.to_numpy())
    np.testing.assert_allclose(got, np.clip(expected, 0, 125.0), rtol=0, atol=1e-9)
    # Neither member alone: the average differs from both where they disagree.
    assert not np.allclose(got, boosting.predict(rows[boosting.features].to_numpy()))
    assert got.min() >= 0.0 and got.max() <= 125.0


def test_save_load_round_trip(fleet: Fleet, ensemble: AveragedRegressor, tmp_path: Path) -> None:
    ensemble.save(tmp_path / "c")
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["framework"] == "ensemble" and meta["weights"] == pytest.approx([0.6, 0.2, 0.2])
    assert (tmp_path / "c" / "members" / "1_rul_regressor_keras" / "dense.npz").exists()
    loaded = TrainedModel.load(tmp_path / "c")
    assert isinstance(loaded, AveragedRegressor)
    X = fleet.data.test.X
    np.testing.assert_allclose(loaded.predict(X), ensemble.predict(X), rtol=0, atol=1e-6)
    assert loaded.extra == ensemble.extra and loaded.features == ensemble.features


SERVE = """
import sys, numpy as np
from pathlib import Path
from pdm_core.models.bundle import FleetModel
import pandas as pd
model = FleetModel.load(Path(sys.argv[1]), serving=True)
X = np.load(sys.argv[2])
out = model.predict(pd.DataFrame(X, columns=model.features))["rul"].to_numpy()
np.save(sys.argv[3], out)
heavy = [m for m in ("tensorflow", "keras") if m in sys.modules]
assert not heavy, heavy
print("NO_TF", type(model.components["rul_regressor"]).__name__)
"""


def test_serving_load_needs_no_tensorflow_and_agrees(
    fleet: Fleet, ensemble: AveragedRegressor, tmp_path: Path
) -> None:
    classifier = train_risk_classifier_sklearn(fleet.data, TrainingParams(boosting_iterations=20))
    bundle = FleetModel(fleet.state, {"risk_classifier": classifier, "rul_regressor": ensemble})
    bundle.save(tmp_path / "bundle")
    X = fleet.data.test.X
    np.save(tmp_path / "X.npy", X)
    done = subprocess.run(
        [sys.executable, "-c", SERVE, str(tmp_path / "bundle"), str(tmp_path / "X.npy"),
         str(tmp_path / "rul.npy")],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "NO_TF AveragedRegressor" in done.stdout
    served = np.load(tmp_path / "rul.npy")
    want = ensemble.predict(X)  # the boosting member serves from ONNX: float32 tree sums
    np.testing.assert_allclose(served, want, rtol=0, atol=parity_tolerance(want))
    reloaded = FleetModel.load(tmp_path / "bundle", serving=True)
    network = reloaded.components["rul_regressor"].members[1]  # type: ignore[attr-defined]
    assert type(network.estimator).__name__ == "DenseNetwork"
    with pytest.raises(ValueError, match="cannot save"):
        reloaded.components["rul_regressor"].save(tmp_path / "again")


def test_bad_weights_and_members_are_refused(ensemble: AveragedRegressor) -> None:
    members, features = ensemble.members, ensemble.features
    with pytest.raises(ValueError, match="sum to 1"):
        AveragedRegressor.average(members, [0.7, 0.7, 0.7], features)
    with pytest.raises(ValueError, match="weights"):
        AveragedRegressor.average(members, [1.0], features)
    with pytest.raises(ValueError, match="unknown columns"):
        AveragedRegressor.average(members, [0.5, 0.25, 0.25], features[:3])
    with pytest.raises(ValueError, match="network_weight"):
        train_rul_regressor_ensemble(None, EnsembleParams(network_weight=1.5))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="network_members"):
        train_rul_regressor_ensemble(None, EnsembleParams(network_members=0))  # type: ignore[arg-type]
