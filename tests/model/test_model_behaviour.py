"""Behavioural tests of the risk model: invariance, direction, minimum function.

They run the serving path end to end: raw readings of one machine -> compute_window_features
-> fleet model, on windows of the simulated test machines, with the Keras classifier (the
network) and the scikit-learn baseline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pdm_core import schema
from pdm_core.features import compute_window_features
from pdm_core.models.bundle import FleetModel
from pdm_core.models.direction import check_direction, worsened
from pdm_core.models.training import (
    TrainingParams,
    train_risk_classifier_keras,
    train_risk_classifier_sklearn,
    train_rul_regressor_sklearn,
)

PARAMS = TrainingParams(epochs=25, boosting_iterations=150)


# Known weakness found by these tests (seeded, so deterministic): the Keras MLP is not
# monotone in its inputs. With the default regularisation (dropout 0.3) it passes every case
# but one: raising temperature lowers its risk on a few windows. The scikit-learn baseline
# passes all. strict=True: when the network is fixed, this marker must go.
KERAS_TEMPERATURE = pytest.mark.xfail(
    strict=True, reason="Keras MLP: rising temperature lowers risk on some windows"
)


_TRAINED: dict[str, FleetModel] = {}


@pytest.fixture(scope="module", params=["keras", "sklearn"])
def model(request, fleet) -> FleetModel:
    # pytest sets a parametrised module fixture up again when the tests' other parameters make
    # it switch back and forth; each model is trained once per worker all the same.
    if request.param not in _TRAINED:
        if request.param == "keras":
            classifier = train_risk_classifier_keras(fleet.data, PARAMS)
        else:
            classifier = train_risk_classifier_sklearn(fleet.data, PARAMS)
        rul = train_rul_regressor_sklearn(fleet.data, PARAMS)
        components = {"risk_classifier": classifier, "rul_regressor": rul}
        _TRAINED[request.param] = FleetModel(fleet.state, components)
    return _TRAINED[request.param]


def test_windows(fleet, predicate, count: int = 40, seed: int = 0) -> list[pd.DataFrame]:
    """Raw-reading windows of test machines ending at rows where predicate(row) holds."""
    test_keys = fleet.table.loc[fleet.table["split"] == "test", ["machine_id", "cycle"]]
    raw = fleet.telemetry.assign(machine_id=fleet.telemetry["machine_id"].astype(str))
    ends = raw.merge(test_keys, on=["machine_id", "cycle"])
    ends = ends[predicate(ends)]
    rng = np.random.default_rng(seed)
    picks = ends.iloc[rng.choice(len(ends), size=min(count, len(ends)), replace=False)]
    length = fleet.state.window_length
    windows = []
    for _, end in picks.iterrows():
        machine = raw[raw["machine_id"] == end["machine_id"]]
        windows.append(machine[machine["cycle"] <= end["cycle"]].tail(length))
    return windows


test_windows.__test__ = False  # a helper, not a test


def score(model: FleetModel, windows: list[pd.DataFrame]) -> pd.DataFrame:
    rows = pd.concat([compute_window_features(w, model.feature_state) for w in windows])
    return model.predict(rows.reset_index(drop=True))


def test_small_sensor_noise_does_not_flip_risk(fleet, model) -> None:
    """Invariance: noise at 5% of the sensors' own noise level leaves the risk level alone."""
    windows = test_windows(fleet, lambda f: f[schema.RUL] < 200)
    rng = np.random.default_rng(1)
    noisy = []
    for w in windows:
        w = w.copy()
        for sensor, sd in (("vibration", 0.15), ("temperature", 0.8), ("pressure", 0.08)):
            w[sensor] += rng.normal(0, 0.05 * sd, len(w))
        noisy.append(w)
    before, after = score(model, windows), score(model, noisy)
    flipped = (before["risk_level"] != after["risk_level"]).mean()
    assert flipped <= 0.1, f"{flipped:.0%} of windows changed risk level under tiny noise"
    assert np.abs(before["failure_probability"] - after["failure_probability"]).max() < 0.25


@pytest.mark.parametrize(("sensor", "step"), [("vibration", 1.5), ("temperature", 10.0)])
def test_worsening_sensor_does_not_lower_risk(fleet, model, sensor, step, request) -> None:
    """Direction: raising vibration or temperature over the last readings never lowers risk."""
    if model.components["risk_classifier"].framework == "keras" and sensor == "temperature":
        request.applymarker(KERAS_TEMPERATURE)
    windows = test_windows(fleet, lambda f: f[schema.RUL] < 300)
    worse = [worsened(w, sensor, step) for w in windows]  # the last 10 readings, up to step
    before = score(model, windows)["failure_probability"].to_numpy()
    after = score(model, worse)["failure_probability"].to_numpy()
    assert after.mean() >= before.mean(), (before.mean(), after.mean())
    lowered = (after < before - 0.05).mean()
    assert lowered <= 0.1, f"{lowered:.0%} of windows got clearly lower risk"


@pytest.mark.parametrize(("sensor", "step"), [("vibration", 1.5), ("temperature", 10.0)])
def test_the_promotion_direction_check_gives_this_tests_verdict(fleet, model, sensor, step) -> None:
    """Promotion's gate (pdm_core.models.direction) judges as the test above: the Keras MLP
    fails on temperature, so it cannot become champion; every other case passes."""
    windows = test_windows(fleet, lambda f: f[schema.RUL] < 300)
    classifier = model.components["risk_classifier"]
    result = check_direction(classifier, fleet.state, windows, sensor, step)
    known_failure = classifier.framework == "keras" and sensor == "temperature"
    assert result.passed is not known_failure, result


def test_healthy_and_failing_windows_get_the_expected_labels(fleet, model) -> None:
    """Minimum function: fresh machines are LOW risk, machines about to fail HIGH or worse."""
    healthy = score(
        model,
        test_windows(
            fleet, lambda f: (f[schema.RUL] > 300) & (f[schema.TIME_SINCE_MAINTENANCE] < 150)
        ),
    )
    failing = score(model, test_windows(fleet, lambda f: f[schema.RUL] <= 5))
    assert (healthy["risk_level"] == "LOW").mean() >= 0.9, healthy["risk_level"].value_counts()
    assert failing["risk_level"].isin(["HIGH", "CRITICAL"]).mean() >= 0.9, failing[
        "risk_level"
    ].value_counts()
    assert (failing["rul"] < healthy["rul"].min()).mean() >= 0.9
