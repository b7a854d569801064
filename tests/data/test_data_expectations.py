"""Data expectations on the real C-MAPSS FD001 data and the default simulator, and proof that
each quality measurement notices the problem it is for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pdm_core import quality, schema
from pdm_core.loaders import load_cmapss
from pdm_core.schema import DatasetInfo
from pdm_core.simulator import SENSORS, SimulatorConfig, dataset_info, simulate
from pdm_core.versioning import frame_version

SIM_CONFIG = SimulatorConfig(n_machines=20, n_steps=1000)


@pytest.fixture(scope="module")
def cmapss(cmapss_dir) -> tuple[pd.DataFrame, DatasetInfo]:
    result = load_cmapss(cmapss_dir)
    return result.frame, result.info


@pytest.fixture(scope="module")
def simulated() -> tuple[pd.DataFrame, DatasetInfo]:
    return simulate(SIM_CONFIG), dataset_info(SIM_CONFIG)


@pytest.fixture(params=["cmapss", "simulator"])
def dataset(request: pytest.FixtureRequest) -> tuple[pd.DataFrame, DatasetInfo]:
    return request.getfixturevalue("cmapss" if request.param == "cmapss" else "simulated")


def known_columns(frame: pd.DataFrame, info: DatasetInfo) -> list[str]:
    """Columns that must be complete.

    Timestamp and time since maintenance are NaT/NaN throughout where the source lacks them
    (C-MAPSS has neither); a source that has them must have them on every row.
    """
    columns = [*quality.REQUIRED_COLUMNS, *info.value_columns, *info.categoricals]
    for optional in (schema.TIMESTAMP, schema.TIME_SINCE_MAINTENANCE):
        if frame[optional].isna().all():
            columns.remove(optional)
    return columns


# ----------------------------------------------------------------------------------------------
# Expectations that real and simulated data must meet


def test_schema_is_canonical(dataset: tuple[pd.DataFrame, DatasetInfo]) -> None:
    frame, info = dataset
    assert len(frame) > 10_000
    assert quality.schema_problems(frame, info) == []


def test_no_missing_values(dataset: tuple[pd.DataFrame, DatasetInfo]) -> None:
    frame, info = dataset
    assert quality.null_counts(frame, known_columns(frame, info)) == {}


def test_values_within_declared_ranges(dataset: tuple[pd.DataFrame, DatasetInfo]) -> None:
    frame, info = dataset
    ranges = quality.declared_ranges(info)
    assert set(ranges) == set(info.sensors), "every sensor has a declared range"
    assert quality.range_violations(frame, ranges) == {}


def test_time_order(dataset: tuple[pd.DataFrame, DatasetInfo]) -> None:
    frame, _ = dataset
    assert quality.time_order_violations(frame) == 0


def test_labels(dataset: tuple[pd.DataFrame, DatasetInfo]) -> None:
    frame, info = dataset
    prevalence = quality.label_prevalence(frame)
    assert 0.001 <= prevalence <= 0.5, f"label prevalence {prevalence:.4f}"
    rul = frame[schema.RUL].to_numpy()
    assert (rul >= 0).all(), "negative remaining useful life"
    expected = (rul <= info.horizon).astype(np.int8)
    assert (frame[schema.LABEL].to_numpy() == expected).all(), "label != (rul <= horizon)"


def test_cmapss_specifics(cmapss: tuple[pd.DataFrame, DatasetInfo]) -> None:
    frame, _ = cmapss
    machines = frame.groupby(schema.SOURCE_SPLIT)[schema.MACHINE].nunique()
    assert machines.to_dict() == {"test": 100, "train": 100}
    # Training engines run to failure: their last reading has rul 0.
    train = frame[frame[schema.SOURCE_SPLIT] == "train"]
    assert (train.groupby(schema.MACHINE)[schema.RUL].min() == 0).all()
    assert frame[schema.TIME_SINCE_MAINTENANCE].isna().all()
    assert frame[schema.TIMESTAMP].isna().all()
    assert set(frame[schema.REGIME]) == {"0_0.00_100"}, "FD001 runs at one condition"


# ----------------------------------------------------------------------------------------------
# Each measurement notices its problem


@pytest.fixture
def small() -> tuple[pd.DataFrame, DatasetInfo]:
    config = SimulatorConfig(n_machines=3, n_steps=200, seed=2)
    return simulate(config), dataset_info(config)


def test_null_counts_reports_nan_and_inf(small: tuple[pd.DataFrame, DatasetInfo]) -> None:
    frame, info = small
    assert quality.null_counts(frame, known_columns(frame, info)) == {}
    frame.loc[17, "temperature"] = np.nan
    frame.loc[[3, 250], "pressure"] = [np.inf, -np.inf]
    frame.loc[400, schema.REGIME] = None
    frame.loc[401, schema.TIMESTAMP] = pd.NaT
    counts = quality.null_counts(frame, known_columns(frame, info))
    expected = {"temperature": 1, "pressure": 2, schema.REGIME: 1, schema.TIMESTAMP: 1}
    assert counts == expected, counts


def test_range_violations_reports_out_of_range_values(
    small: tuple[pd.DataFrame, DatasetInfo],
) -> None:
    frame, info = small
    ranges = quality.declared_ranges(info)
    assert quality.range_violations(frame, ranges) == {}
    frame.loc[5, "vibration"] = -0.5
    frame.loc[[6, 7, 8], "temperature"] = 400.0
    assert quality.range_violations(frame, ranges) == {"vibration": 1, "temperature": 3}


def test_declared_ranges_by_source() -> None:
    cmapss_like = DatasetInfo(name="cmapss/FD003", sensors=("s1", "s2"))
    assert quality.declared_ranges(cmapss_like) == {
        "s1": (0.0, float("inf")),
        "s2": (0.0, float("inf")),
    }
    assert quality.declared_ranges(DatasetInfo(name="csv", sensors=("s1",))) == {}


def test_time_order_violations_reports_swapped_cycles(
    small: tuple[pd.DataFrame, DatasetInfo],
) -> None:
    frame, _ = small
    swapped = frame.copy()
    swapped.loc[[10, 11], schema.CYCLE] = swapped.loc[[11, 10], schema.CYCLE].to_numpy()
    assert quality.time_order_violations(swapped) == 1
    repeated = frame.copy()
    repeated.loc[20, schema.CYCLE] = repeated.loc[19, schema.CYCLE]
    assert quality.time_order_violations(repeated) == 1
    # A machine whose rows come in two separate runs is out of order too.
    split_runs = pd.concat([frame.iloc[:100], frame.iloc[200:300], frame.iloc[100:200]])
    assert quality.time_order_violations(split_runs) >= 1


def test_schema_problems_reports_missing_columns_and_wrong_dtypes(
    small: tuple[pd.DataFrame, DatasetInfo],
) -> None:
    frame, info = small
    problems = quality.schema_problems(frame.drop(columns=["pressure", schema.RUL]), info)
    assert len(problems) == 1 and "missing columns" in problems[0], problems
    assert "'pressure'" in problems[0] and f"'{schema.RUL}'" in problems[0], problems
    wrong = frame.astype({schema.CYCLE: "float64", "vibration": "int64"})
    problems = quality.schema_problems(wrong, info)
    assert any(f"'{schema.CYCLE}'" in p and "integer" in p for p in problems), problems
    assert any("'vibration'" in p and "float64" in p for p in problems), problems


def test_label_prevalence() -> None:
    frame = pd.DataFrame({schema.LABEL: np.array([0, 1, 0, 0], dtype=np.int8)})
    assert quality.label_prevalence(frame) == 0.25
    assert quality.label_prevalence(frame.iloc[:0]) == 0.0


# ----------------------------------------------------------------------------------------------
# Versioning


def test_frame_version_follows_content(small: tuple[pd.DataFrame, DatasetInfo]) -> None:
    frame, _ = small
    version = frame_version(frame)
    assert len(version) == 16 and int(version, 16) >= 0
    same = simulate(SimulatorConfig(n_machines=3, n_steps=200, seed=2))
    assert frame_version(same) == version, "same content, different hash"
    assert frame_version(frame.set_index(frame.index + 1000)) == version, "index is not content"

    changed = frame.copy()
    changed.loc[123, SENSORS[1]] += 1e-9
    assert frame_version(changed) != version, "a changed value keeps the hash"
    assert frame_version(frame.rename(columns={"vibration": "vib"})) != version
    assert frame_version(frame.iloc[::-1]) != version, "row order is part of the version"
