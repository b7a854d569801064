"""Parity proof of the one feature definition: serving window path == pipeline row.

For chosen (machine, cycle) pairs of a simulated fleet and of the real C-MAPSS FD001 data,
``compute_window_features`` on the last N readings of the machine up to that cycle, and the
service's array path ``latest_window_features`` on the same readings, must give the pipeline's
row of ``compute_features`` on the whole fleet, within 1e-9, for N equal to the state's window
length and for a longer history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from pdm_core import schema
from pdm_core.features import (
    FeatureInputError,
    FeatureState,
    WindowArrays,
    compute_features,
    compute_window_features,
    fit_feature_state,
    latest_window_features,
)
from pdm_core.loaders import load_cmapss
from pdm_core.simulator import SimulatorConfig, dataset_info, simulate
from tests.fleets import simulated_fleet
from tests.service_fixtures import DERIVED

EXTRA_HISTORY = 17


@dataclass
class Case:
    """A fleet, its fitted state, its pipeline features and the (machine, cycle) pairs to check."""

    name: str
    frame: pd.DataFrame
    state: FeatureState
    pipeline: pd.DataFrame
    keys: list[tuple[str, int, str]]  # machine, cycle, why it was chosen


def choose_keys(frame: pd.DataFrame, state: FeatureState, machines: list[str]) -> list:
    """Last reading, first reading with enough history and a random one, per machine."""
    need = state.window_length + EXTRA_HISTORY
    rng = np.random.default_rng(0)
    keys = []
    for machine in machines:
        cycles = frame.loc[frame[schema.MACHINE].astype(str) == machine, schema.CYCLE].to_numpy()
        if cycles.size < need:
            continue
        keys.append((machine, int(cycles[-1]), "last reading"))
        keys.append((machine, int(cycles[need - 1]), "first reading with enough history"))
        keys.append((machine, int(cycles[rng.integers(need - 1, cycles.size)]), "random"))
    return keys


def simulated_case() -> Case:
    config = SimulatorConfig(n_machines=8, n_steps=400, seed=17, maintenance_probability=0.5)
    frame = simulate(config)
    state = fit_feature_state(
        frame, dataset_info(config), train_mask=frame[schema.MACHINE].cat.codes < 6
    )
    machines = frame[schema.MACHINE].astype(str).unique().tolist()
    keys = choose_keys(frame, state, machines)
    # Readings right after a maintenance reset (time since maintenance back to 0 while the
    # component still had more than `horizon` steps to live) and right after a failure.
    machine = frame[schema.MACHINE].astype(str).to_numpy()
    tsm = frame[schema.TIME_SINCE_MAINTENANCE].to_numpy()
    rul = frame[schema.RUL].to_numpy()
    position = frame.groupby(schema.MACHINE, observed=True).cumcount().to_numpy()
    reset = np.flatnonzero(
        (tsm == 0) & (position >= state.window_length + EXTRA_HISTORY - 1) & (position > 0)
    )
    after_maintenance = [i for i in reset if rul[i - 1] > config.horizon]
    after_failure = [i for i in reset if rul[i - 1] == 0]
    assert after_maintenance and after_failure, "fleet lacks maintenance or failure resets"
    for i in after_maintenance[:3]:
        keys.append((machine[i], int(frame[schema.CYCLE].iat[i]), "after maintenance"))
    for i in after_failure[:2]:
        keys.append((machine[i], int(frame[schema.CYCLE].iat[i]), "after failure"))
    return Case("simulator", frame, state, compute_features(frame, state), keys)


def cmapss_case(directory) -> Case:
    # As the pipeline loads it (TelemetrySource's default): the cycle number as the age.
    result = load_cmapss(directory, cycles_as_age=True)
    frame = result.frame
    train = (frame[schema.SOURCE_SPLIT] == "train").to_numpy()
    state = fit_feature_state(frame, result.info, train_mask=train)
    assert state.window_length == 30 and state.dropped_sensors, "FD001 has constant sensors"
    assert state.use_time_since_maintenance, "the age is a feature"
    machines = frame[schema.MACHINE].unique().tolist()
    chosen = [m for m in machines if "_train_" in m][:6] + [m for m in machines if "_test_" in m][
        :6
    ]
    keys = choose_keys(frame, state, chosen)
    assert any("_test_" in m for m, _, _ in keys), "no test engine has enough history"
    return Case("cmapss/FD001", frame, state, compute_features(frame, state), keys)


def derived_case() -> Case:
    """A derived sensor: the pipeline computed it at load; the windows carry only its inputs."""
    config = SimulatorConfig(n_machines=8, n_steps=1200, seed=17, maintenance_probability=0.5)
    fleet = simulated_fleet(config, derived=DERIVED)
    name = DERIVED[0][0]
    assert name in fleet.state.sensors and name not in fleet.state.input_sensors
    frame = fleet.telemetry.drop(columns=[name])
    keys = choose_keys(frame, fleet.state, frame[schema.MACHINE].astype(str).unique().tolist())
    return Case("simulator, derived sensor", frame, fleet.state, fleet.features, keys)


@pytest.fixture(scope="module", params=["simulator", "derived", "cmapss"])
def case(request: pytest.FixtureRequest) -> Case:
    if request.param == "simulator":
        return simulated_case()
    if request.param == "derived":
        return derived_case()
    return cmapss_case(request.getfixturevalue("cmapss_dir"))


def readings_up_to(frame: pd.DataFrame, machine: str, cycle: int, n: int) -> pd.DataFrame:
    rows = frame[(frame[schema.MACHINE].astype(str) == machine) & (frame[schema.CYCLE] <= cycle)]
    assert len(rows) >= n, f"{machine} has only {len(rows)} readings up to cycle {cycle}"
    return rows.iloc[-n:]


def pipeline_row(case: Case, machine: str, cycle: int) -> pd.DataFrame:
    pipeline = case.pipeline
    hit = (pipeline[schema.MACHINE].astype(str) == machine) & (pipeline[schema.CYCLE] == cycle)
    assert hit.sum() == 1
    return pipeline[hit]


def assert_row_equal(served: pd.DataFrame, expected: pd.DataFrame, what: str) -> None:
    assert list(served.columns) == list(expected.columns), what
    assert len(served) == 1, what
    assert str(served[schema.MACHINE].iat[0]) == str(expected[schema.MACHINE].iat[0]), what
    assert int(served[schema.CYCLE].iat[0]) == int(expected[schema.CYCLE].iat[0]), what
    got = served.iloc[0, 2:].to_numpy(dtype=np.float64)
    want = expected.iloc[0, 2:].to_numpy(dtype=np.float64)
    diff = np.abs(got - want)
    worst = int(np.argmax(diff))
    assert diff[worst] <= 1e-9, (
        f"{what}: column {served.columns[2 + worst]} differs by {diff[worst]:.3e} "
        f"(served {got[worst]!r}, pipeline {want[worst]!r})"
    )


@pytest.mark.parametrize("extra", [0, EXTRA_HISTORY])
def test_window_path_equals_pipeline_row(case: Case, extra: int) -> None:
    n = case.state.window_length + extra
    assert len(case.keys) >= 10
    for machine, cycle, why in case.keys:
        readings = readings_up_to(case.frame, machine, cycle, n)
        served = compute_window_features(readings, case.state)
        what = f"{case.name} {machine} cycle {cycle} ({why}), {n} readings"
        assert_row_equal(served, pipeline_row(case, machine, cycle), what)


def test_window_path_accepts_unsorted_plain_readings(case: Case) -> None:
    # What a service receives: plain strings rather than categoricals, in any order.
    n = case.state.window_length + EXTRA_HISTORY
    for machine, cycle, why in case.keys[:6]:
        readings = readings_up_to(case.frame, machine, cycle, n)
        plain = readings.astype({schema.MACHINE: str, schema.REGIME: str})
        plain = plain.sample(frac=1.0, random_state=1).reset_index(drop=True)
        served = compute_window_features(plain, case.state)
        what = f"{case.name} {machine} cycle {cycle} ({why}), shuffled"
        assert_row_equal(served, pipeline_row(case, machine, cycle), what)


def test_window_path_refuses_short_history(case: Case) -> None:
    machine, cycle, _ = case.keys[0]
    too_few = readings_up_to(case.frame, machine, cycle, case.state.window_length - 1)
    with pytest.raises(FeatureInputError, match=f"at least {case.state.window_length}"):
        compute_window_features(too_few, case.state)


def test_window_path_refuses_two_machines(case: Case) -> None:
    machines = list(dict.fromkeys(m for m, _, _ in case.keys))
    assert len(machines) >= 2
    n = case.state.window_length
    first = readings_up_to(case.frame, machines[0], 10**9, n)
    second = readings_up_to(case.frame, machines[1], 10**9, n)
    with pytest.raises(FeatureInputError, match="one machine"):
        compute_window_features(pd.concat([first, second]), case.state)
    with pytest.raises(FeatureInputError, match="machine_id"):
        compute_window_features(first.drop(columns=schema.MACHINE), case.state)


def window_arrays(case: Case, keys: list[tuple[str, int, str]], n: int) -> WindowArrays:
    """The service's array input for the last ``n`` readings of each (machine, cycle)."""
    windows = [readings_up_to(case.frame, m, c, n) for m, c, _ in keys]
    state = case.state
    sensors = np.stack(
        [np.stack([w[s].to_numpy(float) for w in windows]) for s in state.input_sensors]
    )
    regimes = None
    if schema.REGIME in case.frame.columns:
        regimes = np.stack([w[schema.REGIME].astype(str).to_numpy() for w in windows])
    settings = None
    if state.regime_rounding:
        settings = np.stack(
            [np.stack([w[s].to_numpy(float) for w in windows]) for s in state.settings]
        )
    tsm = None
    if state.use_time_since_maintenance:
        tsm = np.array([w[schema.TIME_SINCE_MAINTENANCE].iat[-1] for w in windows], dtype=float)
    categories = {
        c: np.array([w[c].astype(str).iat[-1] for w in windows]) for c in state.categoricals
    }
    return WindowArrays(sensors, regimes, settings, tsm, categories)


@pytest.mark.parametrize("extra", [0, EXTRA_HISTORY])
def test_array_path_equals_pipeline_rows(case: Case, extra: int) -> None:
    """The service's path (arrays, last window only) gives the pipeline's rows in order."""
    n = case.state.window_length + extra
    served = latest_window_features(window_arrays(case, case.keys, n), case.state)
    assert served.shape == (len(case.keys), len(case.state.feature_names))
    for row, (machine, cycle, why) in enumerate(case.keys):
        expected = pipeline_row(case, machine, cycle)
        frame = pd.DataFrame([served[row]], columns=case.state.feature_names)
        frame.insert(0, schema.CYCLE, cycle)
        frame.insert(0, schema.MACHINE, machine)
        assert_row_equal(frame, expected, f"{case.name} {machine} cycle {cycle} ({why}), arrays")


def test_array_path_refuses_short_windows_and_non_finite_values(case: Case) -> None:
    n = case.state.window_length
    short = window_arrays(case, case.keys[:2], n - 1)
    with pytest.raises(FeatureInputError, match=f"at least {n}"):
        latest_window_features(short, case.state)
    bad = window_arrays(case, case.keys[:2], n)
    bad.sensors[0, 1, 3] = np.nan
    with pytest.raises(FeatureInputError, match=f"'{case.state.sensors[0]}'.*machine 1, reading 3"):
        latest_window_features(bad, case.state)
