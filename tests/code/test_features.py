"""Tests for the feature definition: the fast path against the pandas reference, and its rules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from pdm_core import features, schema
from pdm_core.features import (
    FeatureConfig,
    FeatureInputError,
    FeatureState,
    compute_features,
    fit_feature_state,
    normalize,
)
from pdm_core.simulator import (
    NEW_REGIME,
    SENSORS,
    DriftSpec,
    SimulatorConfig,
    dataset_info,
    simulate,
)
from tests.features_reference import reference_features

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.PerformanceWarning")

CONFIG = SimulatorConfig(n_machines=8, n_steps=300, seed=21)
INFO = dataset_info(CONFIG)
TRAIN_MACHINES = 6


@pytest.fixture(scope="module")
def fleet() -> pd.DataFrame:
    return simulate(CONFIG)


@pytest.fixture(scope="module")
def train_mask(fleet: pd.DataFrame) -> np.ndarray:
    return fleet[schema.MACHINE].cat.codes.to_numpy() < TRAIN_MACHINES


@pytest.fixture(scope="module")
def state(fleet: pd.DataFrame, train_mask: np.ndarray) -> FeatureState:
    return fit_feature_state(fleet, INFO, train_mask=train_mask)


@pytest.fixture(scope="module")
def computed(fleet: pd.DataFrame, state: FeatureState) -> pd.DataFrame:
    return compute_features(fleet, state)


def assert_features_close(actual: pd.DataFrame, expected: pd.DataFrame, atol: float = 1e-9) -> None:
    assert list(actual.columns) == list(expected.columns)
    np.testing.assert_array_equal(
        actual[schema.MACHINE].astype(str).to_numpy(), expected[schema.MACHINE].astype(str)
    )
    np.testing.assert_array_equal(actual[schema.CYCLE].to_numpy(), expected[schema.CYCLE])
    for column in actual.columns[2:]:
        np.testing.assert_allclose(
            actual[column].to_numpy(dtype=np.float64),
            expected[column].to_numpy(dtype=np.float64),
            rtol=0,
            atol=atol,
            err_msg=f"feature column {column}",
        )


def test_fast_path_equals_pandas_reference(
    fleet: pd.DataFrame, state: FeatureState, computed: pd.DataFrame
) -> None:
    assert state.windows == (10, 30) and len(state.config.stats) == 6
    assert state.interactions, "the simulator declares interaction pairs"
    reference = reference_features(fleet, state)
    assert_features_close(computed, reference)


def test_fast_path_equals_reference_with_other_settings(fleet: pd.DataFrame) -> None:
    # Without normalisation the windows see raw values; both paths agree to ~1e-12 relative,
    # so scale the sensors first to keep an absolute 1e-9 meaningful (and pandas accurate).
    fleet = fleet.assign(**{s: (fleet[s] - fleet[s].mean()) / fleet[s].std() for s in SENSORS})
    config = FeatureConfig(
        windows=(1, 3, 45),
        stats=("slope", "min", "std"),
        interactions=(("pressure", "rotational_speed"),),
        normalize=False,
    )
    state = fit_feature_state(fleet, INFO, config)
    assert state.regime_mean == {}
    assert_features_close(compute_features(fleet, state), reference_features(fleet, state))


def test_feature_names_are_unique_and_match_the_columns(
    state: FeatureState, computed: pd.DataFrame
) -> None:
    names = state.feature_names
    assert len(names) == len(set(names)), "duplicate feature names"
    assert list(computed.columns) == [schema.MACHINE, schema.CYCLE, *names]
    assert all(computed[c].dtype == np.float64 for c in names)
    k = len(state.sensors)
    per_window = k * len(state.config.stats) + len(state.interactions)
    # z-values, windowed stats and interactions, time since maintenance, regime_known
    assert len(names) == k + len(state.windows) * per_window + 2
    assert len(computed) == CONFIG.n_machines * CONFIG.n_steps


def test_state_json_round_trip(fleet: pd.DataFrame, state: FeatureState) -> None:
    assert FeatureState.from_json(state.to_json()) == state
    frame = fleet.assign(site=np.where(fleet[schema.MACHINE].cat.codes % 2 == 0, "north", "south"))
    other = fit_feature_state(
        frame,
        dataclasses.replace(INFO, categoricals=("site",)),
        FeatureConfig(
            windows=(5,), stats=("mean", "roc"), interactions=(("vibration", "pressure"),)
        ),
    )
    restored = FeatureState.from_json(other.to_json())
    assert restored == other
    assert restored.feature_names == other.feature_names


def test_constant_sensor_is_dropped(fleet: pd.DataFrame) -> None:
    frame = fleet.assign(flat=7.25)
    info = dataclasses.replace(INFO, sensors=(*SENSORS[:2], "flat", *SENSORS[2:]))
    state = fit_feature_state(frame, info)
    assert state.dropped_sensors == ("flat",)
    assert state.sensors == SENSORS
    assert not any(name.startswith("flat") for name in state.feature_names)
    assert "flat" not in compute_features(frame, state).columns


def test_every_constant_sensor_is_an_error(fleet: pd.DataFrame) -> None:
    frame = fleet.assign(flat=1.0)
    with pytest.raises(FeatureInputError, match="constant"):
        fit_feature_state(frame, dataclasses.replace(INFO, sensors=("flat",)))


def test_training_rows_are_standardised_within_each_regime(
    fleet: pd.DataFrame, state: FeatureState, train_mask: np.ndarray
) -> None:
    z, known = normalize(fleet, state)
    assert known.all()
    regimes = fleet[schema.REGIME].astype(str).to_numpy()
    assert set(state.regime_mean) == set(regimes[train_mask])
    for regime in state.regime_mean:
        rows = train_mask & (regimes == regime)
        np.testing.assert_allclose(z[:, rows].mean(axis=1), 0.0, atol=1e-9, err_msg=regime)
        np.testing.assert_allclose(z[:, rows].std(axis=1), 1.0, atol=1e-9, err_msg=regime)
    # Per-regime, not global: raw speed differs by regime but the z-values do not.
    speed = state.sensors.index("rotational_speed")
    by_regime = pd.Series(z[speed, train_mask]).groupby(regimes[train_mask]).mean()
    assert by_regime.abs().max() < 1e-9


def test_unseen_regime_uses_global_statistics(state: FeatureState) -> None:
    drifted = simulate(dataclasses.replace(CONFIG, drift=DriftSpec(new_regime=True)))
    result = compute_features(drifted, state)
    unseen = (drifted[schema.REGIME].astype(str) == NEW_REGIME).to_numpy()
    assert unseen.any() and not unseen.all()
    np.testing.assert_array_equal(result["regime_known"].to_numpy(), (~unseen).astype(float))
    for i, sensor in enumerate(state.sensors):
        expected = (drifted[sensor].to_numpy()[unseen] - state.global_mean[i]) / state.global_std[i]
        np.testing.assert_allclose(
            result[f"{sensor}__z"].to_numpy()[unseen], expected, rtol=1e-12, err_msg=sensor
        )
    assert_features_close(result, reference_features(drifted, state))


def test_nan_in_a_sensor_names_column_machine_and_cycle(
    fleet: pd.DataFrame, state: FeatureState
) -> None:
    frame = fleet.copy()
    row = 3 * CONFIG.n_steps + 41
    frame.loc[row, "pressure"] = np.nan
    machine, cycle = str(frame.loc[row, schema.MACHINE]), int(frame.loc[row, schema.CYCLE])
    with pytest.raises(FeatureInputError) as caught:
        compute_features(frame, state)
    message = str(caught.value)
    assert "'pressure'" in message, message
    assert f"machine_id={machine}" in message and f"cycle={cycle}" in message, message


def test_infinite_value_is_rejected(fleet: pd.DataFrame, state: FeatureState) -> None:
    frame = fleet.copy()
    frame.loc[5, "vibration"] = np.inf
    with pytest.raises(FeatureInputError, match=r"'vibration'.*non-finite"):
        compute_features(frame, state)


def test_missing_column_is_rejected(fleet: pd.DataFrame, state: FeatureState) -> None:
    with pytest.raises(FeatureInputError, match="motor_current"):
        compute_features(fleet.drop(columns="motor_current"), state)


@pytest.mark.parametrize("where", ["adjacent", "end"])
def test_duplicate_key_is_rejected(fleet: pd.DataFrame, state: FeatureState, where: str) -> None:
    row = fleet.iloc[[250]]
    if where == "adjacent":
        frame = pd.concat([fleet.iloc[:251], row, fleet.iloc[251:]], ignore_index=True)
    else:
        frame = pd.concat([fleet, row], ignore_index=True)
    machine, cycle = str(row[schema.MACHINE].iloc[0]), int(row[schema.CYCLE].iloc[0])
    with pytest.raises(FeatureInputError, match=rf"duplicate.*{machine}.*cycle={cycle}"):
        compute_features(frame, state)


def test_shuffled_rows_give_the_sorted_result(
    fleet: pd.DataFrame, state: FeatureState, computed: pd.DataFrame
) -> None:
    shuffled = fleet.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(compute_features(shuffled, state), computed)
    as_text = shuffled.astype({schema.MACHINE: str, schema.REGIME: str})
    result = compute_features(as_text, state)
    assert_features_close(result, computed)


def test_chunk_boundaries_do_not_matter(
    fleet: pd.DataFrame, state: FeatureState, computed: pd.DataFrame, monkeypatch
) -> None:
    monkeypatch.setattr(features, "_CHUNK_ROWS", 97)
    chunked = compute_features(fleet, state)
    assert_features_close(chunked, computed)
    monkeypatch.setattr(features, "_THREADS", 1)
    assert_features_close(compute_features(fleet, state), computed)


def test_unordered_data_has_no_window_features(fleet: pd.DataFrame) -> None:
    info = dataclasses.replace(INFO, ordered=False)
    state = fit_feature_state(fleet, info)
    assert state.windows == () and state.window_length == 1
    assert not any("_w" in name for name in state.feature_names)
    result = compute_features(fleet, state)
    assert list(result.columns[2:]) == state.feature_names
    assert_features_close(result, reference_features(fleet, state))


def test_categoricals_become_one_hot_columns(fleet: pd.DataFrame) -> None:
    sites = np.array(["north", "south", "east"])
    frame = fleet.assign(site=sites[fleet[schema.MACHINE].cat.codes.to_numpy() % 3])
    info = dataclasses.replace(INFO, categoricals=("site",))
    state = fit_feature_state(frame, info)
    assert state.categoricals == {"site": ["east", "north", "south"]}
    result = compute_features(frame, state)
    one_hot = result[["site=east", "site=north", "site=south"]].to_numpy()
    assert set(np.unique(one_hot)) == {0.0, 1.0}
    np.testing.assert_array_equal(one_hot.sum(axis=1), 1.0)
    for level in ("east", "north", "south"):
        np.testing.assert_array_equal(
            result[f"site={level}"].to_numpy(), (frame["site"] == level).to_numpy().astype(float)
        )
    # A level never seen in training switches every column off.
    unseen = compute_features(frame.assign(site="west"), state)
    assert (unseen[["site=east", "site=north", "site=south"]].to_numpy() == 0).all()
    assert_features_close(result, reference_features(frame, state))
