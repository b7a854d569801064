"""Tests for the fleet simulator: determinism, schema, labels, degradation and drift injection."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from pdm_core import quality, schema
from pdm_core.simulator import (
    FAILURE_MODES,
    NEW_REGIME,
    REGIMES,
    SENSORS,
    DriftSpec,
    SimulatorConfig,
    dataset_info,
    simulate,
    simulate_states,
)

SMALL = SimulatorConfig(n_machines=10, n_steps=600, seed=11)
MAIN_SENSOR = {"bearing_wear": "vibration", "overheating": "temperature", "seal_leak": "pressure"}


@pytest.fixture(scope="module")
def fleet() -> pd.DataFrame:
    return simulate(SMALL)


def lifecycle_ids(frame: pd.DataFrame) -> np.ndarray:
    """Numbers the lifecycles: a new one starts at a machine's first row or a tsm reset."""
    tsm = frame[schema.TIME_SINCE_MAINTENANCE].to_numpy()
    machine = frame[schema.MACHINE].astype(str).to_numpy()
    new = np.r_[True, (machine[1:] != machine[:-1]) | (tsm[1:] != tsm[:-1] + 1)]
    return np.cumsum(new)


def resets(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows just before a reset (time_since_maintenance drops to 0 on the machine's next row)."""
    machine = frame[schema.MACHINE].astype(str).to_numpy()
    tsm = frame[schema.TIME_SINCE_MAINTENANCE].to_numpy()
    before = np.r_[(machine[1:] == machine[:-1]) & (tsm[1:] == 0), False]
    return frame[before]


# ----------------------------------------------------------------------------------------------
# Determinism and schema


def test_same_seed_gives_identical_frame(fleet: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(simulate(SMALL), fleet)


def test_different_seed_gives_different_values(fleet: pd.DataFrame) -> None:
    other = simulate(SimulatorConfig(n_machines=10, n_steps=600, seed=12))
    assert other.shape == fleet.shape
    for sensor in SENSORS:
        same = np.isclose(other[sensor].to_numpy(), fleet[sensor].to_numpy()).mean()
        assert same < 0.01, f"{sensor}: {same:.1%} of values equal across different seeds"
    assert not np.array_equal(other[schema.RUL].to_numpy(), fleet[schema.RUL].to_numpy())


def test_columns_and_dtypes_match_the_canonical_schema(fleet: pd.DataFrame) -> None:
    info = dataset_info(SMALL)
    expected = [
        schema.MACHINE,
        schema.CYCLE,
        schema.TIMESTAMP,
        schema.REGIME,
        *SENSORS,
        schema.TIME_SINCE_MAINTENANCE,
        schema.RUL,
        schema.LABEL,
        schema.FAILURE_MODE,
        schema.SOURCE_SPLIT,
    ]
    assert list(fleet.columns) == expected
    assert quality.schema_problems(fleet, info) == []
    assert fleet[schema.CYCLE].dtype == np.int64
    assert fleet[schema.TIMESTAMP].dtype == "datetime64[ns]"
    assert fleet[schema.LABEL].dtype == np.int8
    for column in (*SENSORS, schema.TIME_SINCE_MAINTENANCE, schema.RUL):
        assert fleet[column].dtype == np.float64, f"{column} is {fleet[column].dtype}"
    for column in (schema.MACHINE, schema.REGIME, schema.FAILURE_MODE, schema.SOURCE_SPLIT):
        dtype = fleet[column].dtype
        assert isinstance(dtype, pd.CategoricalDtype), f"{column} is {dtype}"
        assert all(isinstance(c, str) for c in dtype.categories), f"{column} categories"
    assert set(fleet[schema.SOURCE_SPLIT].astype(str)) == {""}
    assert info.sensors == SENSORS and info.horizon == SMALL.horizon and info.ordered


def test_rows_are_sorted_unique_and_complete(fleet: pd.DataFrame) -> None:
    assert len(fleet) == SMALL.n_machines * SMALL.n_steps
    assert not fleet.duplicated([schema.MACHINE, schema.CYCLE]).any()
    keys = fleet[[schema.MACHINE, schema.CYCLE]].astype({schema.MACHINE: str})
    ordered = keys.sort_values([schema.MACHINE, schema.CYCLE]).reset_index(drop=True)
    pd.testing.assert_frame_equal(keys, ordered)
    counts = fleet.groupby(schema.MACHINE, observed=True).size()
    assert (counts == SMALL.n_steps).all() and len(counts) == SMALL.n_machines
    cycles = fleet.groupby(schema.MACHINE, observed=True)[schema.CYCLE].agg(["min", "max"])
    assert (cycles["min"] == 1).all() and (cycles["max"] == SMALL.n_steps).all()
    step = fleet.groupby(schema.MACHINE, observed=True)[schema.TIMESTAMP].diff().dropna()
    assert (step == pd.Timedelta(minutes=SMALL.interval_minutes)).all()


# ----------------------------------------------------------------------------------------------
# Labels


def test_rul_is_never_negative_and_label_matches_horizon(fleet: pd.DataFrame) -> None:
    rul = fleet[schema.RUL].to_numpy()
    assert np.isfinite(rul).all() and (rul >= 0).all(), f"min rul {rul.min()}"
    expected = (rul <= SMALL.horizon).astype(np.int8)
    wrong = int((fleet[schema.LABEL].to_numpy() != expected).sum())
    assert wrong == 0, f"{wrong} rows where failure_within_h != (rul <= horizon)"
    assert fleet[schema.LABEL].sum() > 0, "no positive labels in the fleet"


def test_failing_lifecycles_count_down_to_zero_then_reset(fleet: pd.DataFrame) -> None:
    frame = fleet.assign(_lc=lifecycle_ids(fleet))
    failing = 0
    for lc, rows in frame.groupby("_lc"):
        rul = rows[schema.RUL].to_numpy()
        tsm = rows[schema.TIME_SINCE_MAINTENANCE].to_numpy()
        assert (np.diff(tsm) == 1).all(), f"lifecycle {lc}: tsm does not step by 1"
        if 0 not in rul:
            continue
        failing += 1
        assert rul[-1] == 0, f"lifecycle {lc}: rul reaches 0 before its last reading"
        assert (np.diff(rul) == -1).all(), f"lifecycle {lc}: rul does not drop by 1 per step"
        assert rows[schema.FAILURE_MODE].nunique() == 1, f"lifecycle {lc}: mode changes"
    assert failing >= 3, f"only {failing} failing lifecycles in the test fleet"
    # Every failing reading that is not the machine's last is followed by a fresh component.
    machine = fleet[schema.MACHINE].astype(str).to_numpy()
    rul = fleet[schema.RUL].to_numpy()
    tsm = fleet[schema.TIME_SINCE_MAINTENANCE].to_numpy()
    has_next = np.r_[machine[1:] == machine[:-1], False]
    failed = np.flatnonzero((rul == 0) & has_next)
    assert failed.size > 0
    assert (tsm[failed + 1] == 0).all(), "time_since_maintenance does not reset after failure"


def test_every_reset_is_a_failure_or_an_early_maintenance(fleet: pd.DataFrame) -> None:
    before = resets(fleet)[schema.RUL].to_numpy()
    odd = before[(before != 0) & (before <= SMALL.horizon)]
    assert odd.size == 0, f"resets with 0 < rul <= horizon just before: {odd[:5]}"


def test_maintenance_resets_exist_only_when_maintenance_is_possible() -> None:
    with_maintenance = simulate(
        SimulatorConfig(n_machines=8, n_steps=600, seed=5, maintenance_probability=0.5)
    )
    before = resets(with_maintenance)[schema.RUL]
    assert (before > SMALL.horizon).sum() > 0, "no maintenance reset with probability 0.5"

    without = simulate(
        SimulatorConfig(n_machines=8, n_steps=600, seed=5, maintenance_probability=0.0)
    )
    before = resets(without)[schema.RUL]
    assert len(before) > 0, "no resets at all"
    assert (before == 0).all(), f"maintenance resets with probability 0: {before[before != 0]}"


# ----------------------------------------------------------------------------------------------
# Failure modes, regimes and degradation


def test_default_fleet_has_several_failure_modes_and_regimes() -> None:
    frame = simulate(SimulatorConfig(n_machines=12, n_steps=600))
    modes = set(frame[schema.FAILURE_MODE].astype(str))
    regimes = set(frame[schema.REGIME].astype(str))
    assert len(modes) >= 2 and modes <= set(FAILURE_MODES), modes
    assert len(regimes) > 1 and regimes <= set(REGIMES), regimes
    assert NEW_REGIME not in regimes


def test_degradation_accelerates_towards_failure() -> None:
    # Short lives and no maintenance give many complete failing lifecycles in a small fleet.
    config = SimulatorConfig(
        n_machines=12, n_steps=600, seed=0, mean_life=150, maintenance_probability=0.0
    )
    frame = simulate(config).assign(_lc=lambda f: lifecycle_ids(f))
    for mode, sensor in MAIN_SENSOR.items():
        # Remove the regime baselines, which move every sensor.
        level = frame[sensor] - frame.groupby(schema.REGIME, observed=True)[sensor].transform(
            "mean"
        )
        early, late = [], []
        for _, rows in frame[frame[schema.FAILURE_MODE] == mode].groupby("_lc"):
            rul = rows[schema.RUL]
            if rul.iloc[-1] != 0 or rul.iloc[0] < 64:
                continue  # not a complete end of life inside the window
            # Mean level over 5 readings centred on rul 62, 32 and 2 (30 steps apart).
            at60, at30, at0 = (
                float(level.loc[rows.index][(rul - centre).abs() <= 2].mean())
                for centre in (62, 32, 2)
            )
            early.append(abs(at30 - at60))
            late.append(abs(at0 - at30))
        assert len(early) >= 5, f"{mode}: only {len(early)} complete failing lifecycles"
        assert np.mean(late) > 1.15 * np.mean(early), (
            f"{mode}: {sensor} changes by {np.mean(early):.3f} between rul 60 and 30 but "
            f"{np.mean(late):.3f} between rul 30 and 0; degradation should accelerate"
        )


# ----------------------------------------------------------------------------------------------
# Drift injection


def test_sensor_bias_shifts_only_that_sensor() -> None:
    base = simulate(SMALL)
    drifted = simulate(SMALL.with_drift(DriftSpec(sensor_bias={"temperature": 5.0})))
    shift = drifted["temperature"].mean() - base["temperature"].mean()
    assert shift == pytest.approx(5.0, rel=0.05), f"temperature mean moved by {shift}"
    for sensor in SENSORS:
        if sensor == "temperature":
            continue
        moved = abs(drifted[sensor].mean() - base[sensor].mean())
        assert moved < 0.05 * base[sensor].std(), f"{sensor} mean moved by {moved}"
    assert dataset_info(SMALL.with_drift(DriftSpec(sensor_bias={"pressure": 1.0}))).extra[
        "drift_active"
    ]
    assert not dataset_info(SMALL).extra["drift_active"]


def early_speed_residual_std(frame: pd.DataFrame) -> float:
    """Std of rotational speed around its (machine, regime) mean in the first 15% of life."""
    tsm = frame[schema.TIME_SINCE_MAINTENANCE]
    life = tsm + frame[schema.RUL] + 1
    early = frame[tsm / life < 0.15]
    groups = [early[schema.MACHINE].astype(str), early[schema.REGIME].astype(str)]
    speed = early["rotational_speed"]
    residual = speed - speed.groupby(groups).transform("mean")
    return float(residual.std())


def test_noise_scale_multiplies_sensor_noise() -> None:
    config = SimulatorConfig(n_machines=10, n_steps=600, seed=3)
    base = early_speed_residual_std(simulate(config))
    noisy = early_speed_residual_std(simulate(config.with_drift(DriftSpec(noise_scale=3.0))))
    ratio = noisy / base
    assert 2.8 < ratio < 3.2, f"noise_scale=3 changed the residual std by x{ratio:.2f}"


def test_new_regime_appears_only_with_drift() -> None:
    base = simulate(SMALL)
    drifted = simulate(SMALL.with_drift(DriftSpec(new_regime=True)))
    assert NEW_REGIME not in set(base[schema.REGIME].astype(str))
    share = (drifted[schema.REGIME].astype(str) == NEW_REGIME).mean()
    assert share > 0.1, f"overload regime covers only {share:.1%} of readings"


def test_degradation_rate_shortens_lifecycles() -> None:
    config = SimulatorConfig(n_machines=10, n_steps=600, seed=4)

    def mean_life(frame: pd.DataFrame) -> float:
        first = frame.groupby(lifecycle_ids(frame)).head(1)
        life = first[schema.TIME_SINCE_MAINTENANCE] + first[schema.RUL] + 1
        return float(life.mean())

    base = simulate(config)
    fast = simulate(config.with_drift(DriftSpec(degradation_rate=2.0)))
    ratio = mean_life(fast) / mean_life(base)
    assert ratio < 0.7, f"degradation_rate=2 changed the mean component life by x{ratio:.2f}"
    assert lifecycle_ids(fast).max() > lifecycle_ids(base).max()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sensor_bias": {"humidity": 1.0}}, "unknown sensors"),
        ({"noise_scale": 0.0}, "noise_scale"),
        ({"noise_scale": -1.0}, "noise_scale"),
        ({"degradation_rate": 0.0}, "degradation_rate"),
    ],
)
def test_invalid_drift_spec_is_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DriftSpec(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_machines": 0}, "n_machines"),
        ({"n_steps": 0}, "n_steps"),
        ({"horizon": 0}, "horizon"),
        ({"horizon": 30, "mean_life": 100.0}, "mean_life"),
        ({"maintenance_probability": 1.0}, "maintenance_probability"),
        ({"maintenance_probability": -0.1}, "maintenance_probability"),
    ],
)
def test_invalid_simulator_config_is_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulatorConfig(**kwargs)


# ----------------------------------------------------------------------------------------------
# Resuming a fleet


def _joined(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    joined = pd.concat([first, second], ignore_index=True)
    return joined.sort_values([schema.MACHINE, schema.CYCLE], kind="stable").reset_index(drop=True)


def test_a_resumed_simulation_continues_every_machine(fleet: pd.DataFrame) -> None:
    """Source + resumed run = one fleet: the lifecycle rules hold across the boundary."""
    _, states = simulate_states(SMALL)
    later = SimulatorConfig(n_machines=10, n_steps=600, seed=12, first_step=SMALL.n_steps)
    resumed, _ = simulate_states(later, resume=states)
    joined = _joined(fleet, resumed)
    test_failing_lifecycles_count_down_to_zero_then_reset(joined)
    test_every_reset_is_a_failure_or_an_early_maintenance(joined)
    last = fleet.groupby(schema.MACHINE, observed=True).last()
    first = resumed.groupby(schema.MACHINE, observed=True).first()
    going = first[schema.TIME_SINCE_MAINTENANCE] != 0
    assert going.sum() >= 8  # most components are mid-life at any moment
    pd.testing.assert_series_equal(
        first.loc[going, schema.TIME_SINCE_MAINTENANCE],
        last.loc[going, schema.TIME_SINCE_MAINTENANCE] + 1,
    )
    pd.testing.assert_series_equal(first.loc[going, schema.RUL], last.loc[going, schema.RUL] - 1)
    assert (first[schema.FAILURE_MODE] == last[schema.FAILURE_MODE])[going].all()
    assert (first[schema.REGIME].astype(str) == last[schema.REGIME].astype(str)).all()
    # The sensors step across the boundary as they step inside a run (same offsets, no jump).
    inside = fleet.groupby(schema.MACHINE, observed=True)["vibration"].diff().abs().median()
    across = (first["vibration"] - last["vibration"]).abs().median()
    assert across < 3 * inside, (across, inside)
    # Without resume the same later run starts other machine states.
    fresh = simulate(later).groupby(schema.MACHINE, observed=True).first()
    assert (fresh[schema.TIME_SINCE_MAINTENANCE] != last[schema.TIME_SINCE_MAINTENANCE] + 1).any()


def test_a_component_that_ended_is_replaced_by_a_new_one() -> None:
    _, states = simulate_states(SMALL)
    ended = replace(states, age=states.end.copy())  # every last reading was a component's last
    later = SimulatorConfig(n_machines=10, n_steps=200, seed=3, first_step=600)
    resumed = simulate_states(later, resume=ended)[0]
    first = resumed.groupby(schema.MACHINE, observed=True).first()
    assert (first[schema.TIME_SINCE_MAINTENANCE] == 0).all()
    with pytest.raises(ValueError, match="resume holds 10 machines, the simulation 4"):
        simulate_states(SimulatorConfig(n_machines=4, n_steps=50), resume=states)
