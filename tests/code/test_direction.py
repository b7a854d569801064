"""The promotion's direction check on classifiers whose response to a sensor is known."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from pdm_core import schema
from pdm_core.features import fit_feature_state
from pdm_core.models.direction import (
    RAMP,
    check_direction,
    check_directions,
    sample_windows,
    worsened,
)
from pdm_core.simulator import SimulatorConfig, dataset_info, simulate


@dataclass
class Linear:
    """A stand-in classifier: sigmoid of one feature times a sign."""

    features: list[str]
    column: str
    sign: float

    def predict(self, X: np.ndarray) -> np.ndarray:
        x = X[:, self.features.index(self.column)].astype(np.float64)
        return 1.0 / (1.0 + np.exp(-self.sign * x))


@pytest.fixture(scope="module")
def fleet():
    config = SimulatorConfig(n_machines=6, n_steps=300, seed=3)
    frame = simulate(config)
    state = fit_feature_state(frame, dataset_info(config))
    keys = frame[[schema.MACHINE, schema.CYCLE]]
    rul = frame[schema.RUL].to_numpy(dtype=np.float64)
    windows = sample_windows(frame, keys, rul, state.window_length, max_rul=300, count=20)
    return state, windows


def test_the_simulator_declares_its_wear_sensors() -> None:
    assert dataset_info(SimulatorConfig()).extra["risk_rising"] == {
        "vibration": 1.5,
        "temperature": 10.0,
    }


def test_sample_windows_are_full_and_near_failure(fleet) -> None:
    state, windows = fleet
    assert len(windows) == 20
    for window in windows:
        assert len(window) == state.window_length
        assert window[schema.MACHINE].nunique() == 1
        assert window[schema.RUL].iloc[-1] <= 300
        assert np.all(np.diff(window[schema.CYCLE].to_numpy()) > 0)


def test_worsened_raises_only_the_last_readings_up_to_the_step(fleet) -> None:
    _, windows = fleet
    window = windows[0]
    raised = worsened(window, "temperature", 10.0)
    delta = (raised["temperature"] - window["temperature"]).to_numpy()
    assert np.all(delta[: len(window) - RAMP] == 0.0)
    assert delta[-1] == pytest.approx(10.0)
    assert np.all(np.diff(delta) >= 0)
    assert (raised["vibration"] == window["vibration"]).all()


@pytest.mark.parametrize(("sign", "passes"), [(1.0, True), (-1.0, False)])
def test_a_classifier_passes_when_risk_rises_with_the_sensor(fleet, sign, passes) -> None:
    state, windows = fleet
    model = Linear(state.feature_names, "temperature__mean_w10", sign)
    result = check_direction(model, state, windows, "temperature", 10.0)  # type: ignore[arg-type]
    assert result.windows == len(windows)
    assert (result.mean_after > result.mean_before) == passes
    assert result.passed is passes
    assert result.to_dict()["passed"] is passes


def test_several_sensors_score_the_unchanged_windows_once(fleet) -> None:
    state, windows = fleet
    model = Linear(state.feature_names, "temperature__mean_w10", 1.0)
    calls = []
    predict = model.predict
    model.predict = lambda X: calls.append(len(X)) or predict(X)  # type: ignore[method-assign]
    steps = {"vibration": 1.5, "temperature": 10.0}
    results = check_directions(model, state, windows, steps)  # type: ignore[arg-type]
    assert calls == [len(windows)] * 3  # unchanged once, then once per sensor
    assert [r.sensor for r in results] == ["vibration", "temperature"]
    for result, (sensor, step) in zip(results, steps.items(), strict=True):
        assert result == check_direction(model, state, windows, sensor, step)  # type: ignore[arg-type]
