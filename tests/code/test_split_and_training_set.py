"""Tests for leak-free splits (by machine, by time with an embargo) and the training-set join."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from pdm_core import schema
from pdm_core.features import compute_features, fit_feature_state
from pdm_core.loaders import load_cmapss
from pdm_core.simulator import SimulatorConfig, dataset_info, simulate
from pdm_core.split import (
    EMBARGO,
    SEGMENT_COLUMNS,
    SPLITS,
    TEST,
    TRAIN,
    VALIDATION,
    SplitConfig,
    assign_splits,
    leakage_problems,
    split_of_rows,
)
from pdm_core.training_set import SPLIT, build_training_set

HORIZON = 30


def fleet(n_machines: int, n_steps: int = 300, seed: int = 8) -> pd.DataFrame:
    return simulate(
        SimulatorConfig(n_machines=n_machines, n_steps=n_steps, seed=seed, horizon=HORIZON)
    )


INFO = dataset_info(SimulatorConfig(horizon=HORIZON))


def segments_table(rows: list[tuple[str, str, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(m, s, lo, hi, hi - lo + 1) for m, s, lo, hi in rows], columns=list(SEGMENT_COLUMNS)
    )


# ----------------------------------------------------------------------------------------------
# Split by machine


def test_split_by_machine_is_disjoint_complete_and_proportionate() -> None:
    frame = fleet(20)
    segments = assign_splits(frame, INFO)
    assert list(segments.columns) == list(SEGMENT_COLUMNS)
    machines = sorted(frame[schema.MACHINE].astype(str).unique())
    assert sorted(segments[schema.MACHINE]) == machines, "every machine exactly once"
    assert set(segments["split"]) == set(SPLITS)
    counts = segments["split"].value_counts()
    config = SplitConfig()
    for name, fraction in ((VALIDATION, config.validation_fraction), (TEST, config.test_fraction)):
        assert abs(counts[name] - fraction * len(machines)) <= 1, f"{name}: {counts[name]}"
    sizes = frame.groupby(schema.MACHINE, observed=True)[schema.CYCLE].agg(["min", "max", "size"])
    sizes.index = sizes.index.astype(str)
    indexed = segments.set_index(schema.MACHINE).loc[sizes.index]
    np.testing.assert_array_equal(indexed["cycle_from"], sizes["min"])
    np.testing.assert_array_equal(indexed["cycle_to"], sizes["max"])
    np.testing.assert_array_equal(indexed["rows"], sizes["size"])
    assert leakage_problems(segments) == []
    assert (split_of_rows(frame, segments) != "").all()


def test_split_by_machine_is_deterministic() -> None:
    frame = fleet(20)
    first = assign_splits(frame, INFO)
    pd.testing.assert_frame_equal(assign_splits(frame, INFO), first)
    shuffled = frame.sample(frac=1.0, random_state=4).astype({schema.MACHINE: str})
    pd.testing.assert_frame_equal(assign_splits(shuffled, INFO), first)
    reseeded = assign_splits(frame, INFO, SplitConfig(seed=8))
    assert not reseeded["split"].equals(first["split"]), "the seed does not change the split"


def test_small_fleet_by_machine_still_gets_validation_and_test() -> None:
    segments = assign_splits(fleet(5, n_steps=100), INFO)
    counts = segments["split"].value_counts()
    assert counts[VALIDATION] >= 1 and counts[TEST] >= 1 and counts[TRAIN] >= 1, counts


def test_source_test_machines_stay_in_test() -> None:
    frame = fleet(12, n_steps=100)
    machine = frame[schema.MACHINE].astype(str)
    fixed = {"M001", "M004", "M007", "M010"}
    frame[schema.SOURCE_SPLIT] = np.where(machine.isin(fixed), "test", "train")
    segments = assign_splits(frame, INFO)
    split = segments.set_index(schema.MACHINE)["split"]
    assert set(split[split == TEST].index) == fixed
    assert (split.drop(sorted(fixed)) != TEST).all()
    assert (split == VALIDATION).any() and (split == TRAIN).any()
    assert leakage_problems(segments) == []


def test_cmapss_test_engines_are_the_test_split(cmapss_dir) -> None:
    result = load_cmapss(cmapss_dir)
    segments = assign_splits(result.frame, result.info)
    split = segments.set_index(schema.MACHINE)["split"]
    test_engines = {m for m in split.index if "_test_" in m}
    assert len(test_engines) == 100
    assert set(split[split == TEST].index) == test_engines
    counts = split.value_counts()
    assert counts[VALIDATION] == round(100 * 0.15 / 0.85), counts
    assert counts[TRAIN] == 100 - counts[VALIDATION]


# ----------------------------------------------------------------------------------------------
# Split by time


def test_few_machines_are_split_by_time_with_an_embargo() -> None:
    frame = fleet(3, n_steps=600)
    segments = assign_splits(frame, INFO)
    expected_order = [TRAIN, EMBARGO, VALIDATION, EMBARGO, TEST]
    for machine, seg in segments.groupby(schema.MACHINE):
        seg = seg.sort_values("cycle_from")
        assert list(seg["split"]) == expected_order, machine
        assert seg["cycle_from"].iloc[0] == 1 and seg["cycle_to"].iloc[-1] == 600, machine
        gaps = seg["cycle_from"].to_numpy()[1:] - seg["cycle_to"].to_numpy()[:-1]
        assert (gaps == 1).all(), f"{machine}: segments are not contiguous"
        np.testing.assert_array_equal(seg["rows"], seg["cycle_to"] - seg["cycle_from"] + 1)
        rows = dict(zip(seg["split"], seg["rows"], strict=False))
        assert (seg.loc[seg["split"] == EMBARGO, "rows"] == HORIZON).all(), machine
        assert rows[VALIDATION] == 90 and rows[TEST] == 90, rows
        assert rows[TRAIN] == 600 - 180 - 2 * HORIZON, rows
    assert leakage_problems(segments) == []
    split = split_of_rows(frame, segments)
    assert (split != "").all()
    assert (split == EMBARGO).sum() == 3 * 2 * HORIZON


def test_time_split_refuses_too_short_machines() -> None:
    with pytest.raises(ValueError, match="too few"):
        assign_splits(fleet(2, n_steps=60), INFO)


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ([("A", TRAIN, 1, 100), ("A", EMBARGO, 90, 95), ("A", TEST, 80, 150)], "overlap"),
        ([("A", TEST, 1, 50), ("A", EMBARGO, 51, 80), ("A", TRAIN, 81, 200)], "out of time order"),
        ([("A", TRAIN, 1, 100), ("A", TEST, 101, 200)], "no embargo"),
        (
            [
                ("A", TRAIN, 1, 100),
                ("A", EMBARGO, 101, 130),
                ("A", VALIDATION, 131, 160),
                ("A", TEST, 161, 200),
            ],
            "no embargo between validation and test",
        ),
    ],
)
def test_leaking_segments_are_reported(rows: list, problem: str) -> None:
    clean = [("B", TRAIN, 1, 50), ("C", TEST, 1, 80)]
    problems = leakage_problems(segments_table(rows + clean))
    assert problems, f"no problem reported for {rows}"
    assert any(problem in p for p in problems), problems
    assert all(p.startswith("machine A:") for p in problems), problems


def test_clean_segments_are_not_reported() -> None:
    rows = [
        ("A", TRAIN, 1, 100),
        ("A", EMBARGO, 101, 130),
        ("A", VALIDATION, 131, 160),
        ("A", EMBARGO, 161, 190),
        ("A", TEST, 191, 250),
        ("B", TEST, 1, 80),
    ]
    assert leakage_problems(segments_table(rows)) == []


# ----------------------------------------------------------------------------------------------
# Training set


def features_of(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    state = fit_feature_state(frame, INFO)
    return compute_features(frame, state), state.window_length


def check_accounting(summary, n_rows: int) -> None:
    total = summary.rows_out + summary.warmup_rows + summary.embargo_rows
    assert summary.rows_in == n_rows
    assert total + summary.unassigned_rows == summary.rows_in, summary


def test_training_set_by_machine() -> None:
    telemetry = fleet(8)
    features, window_length = features_of(telemetry)
    segments = assign_splits(telemetry, INFO)
    train_set, summary = build_training_set(features, telemetry, segments, window_length)

    check_accounting(summary, len(telemetry))
    assert summary.embargo_rows == 0 and summary.unassigned_rows == 0
    assert summary.warmup_rows == 8 * (window_length - 1)
    assert len(train_set) == summary.rows_out

    # Warm-up rows are exactly each machine's first window_length - 1 readings.
    position = telemetry.groupby(schema.MACHINE, observed=True).cumcount()
    keys = telemetry[[schema.MACHINE, schema.CYCLE]].astype({schema.MACHINE: str})
    expected_keys = keys[position.to_numpy() >= window_length - 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        train_set[[schema.MACHINE, schema.CYCLE]].reset_index(drop=True), expected_keys
    )

    # Split, features and labels belong to the same reading.
    assignment = segments.set_index(schema.MACHINE)["split"]
    np.testing.assert_array_equal(
        train_set[SPLIT].to_numpy(), assignment.loc[train_set[schema.MACHINE]].to_numpy()
    )
    labels = telemetry.astype({schema.MACHINE: str}).merge(
        train_set, on=[schema.MACHINE, schema.CYCLE], suffixes=("_telemetry", "")
    )
    assert len(labels) == len(train_set)
    for column in (schema.RUL, schema.LABEL, schema.FAILURE_MODE, schema.REGIME):
        np.testing.assert_array_equal(
            labels[column].astype(str), labels[f"{column}_telemetry"].astype(str), err_msg=column
        )
    feature_rows = features.astype({schema.MACHINE: str}).merge(
        train_set[[schema.MACHINE, schema.CYCLE]], on=[schema.MACHINE, schema.CYCLE]
    )
    for column in ("vibration__z", "temperature__mean_w30", "time_since_maintenance"):
        np.testing.assert_array_equal(train_set[column], feature_rows[column], err_msg=column)

    for name in SPLITS:
        part = train_set[train_set[SPLIT] == name]
        assert summary.rows[name] == len(part) > 0, name
        assert summary.positives[name] == int(part[schema.LABEL].sum()), name
        assert summary.machines[name] == part[schema.MACHINE].nunique(), name


def test_training_set_by_time_leaves_out_embargo_rows() -> None:
    telemetry = fleet(3, n_steps=600)
    features, window_length = features_of(telemetry)
    segments = assign_splits(telemetry, INFO)
    train_set, summary = build_training_set(features, telemetry, segments, window_length)
    check_accounting(summary, len(telemetry))
    assert summary.embargo_rows == 3 * 2 * HORIZON
    assert summary.warmup_rows == 3 * (window_length - 1)
    assert set(train_set[SPLIT]) == set(SPLITS)
    assert summary.machines == {TRAIN: 3, VALIDATION: 3, TEST: 3}
    embargo = split_of_rows(telemetry, segments) == EMBARGO
    embargo_rows = telemetry.loc[embargo, [schema.MACHINE, schema.CYCLE]]
    embargo_keys = set(embargo_rows.astype({schema.MACHINE: str}).itertuples(index=False))
    kept_keys = set(train_set[[schema.MACHINE, schema.CYCLE]].itertuples(index=False))
    assert not embargo_keys & kept_keys, "embargo readings made it into the training set"


def test_training_set_counts_unassigned_rows_and_accepts_shuffled_telemetry() -> None:
    telemetry = fleet(8)
    features, window_length = features_of(telemetry)
    segments = assign_splits(telemetry, INFO)
    dropped = segments[schema.MACHINE].iloc[0]
    partial = segments[segments[schema.MACHINE] != dropped]
    shuffled = telemetry.sample(frac=1.0, random_state=9)
    train_set, summary = build_training_set(features, shuffled, partial, window_length)
    check_accounting(summary, len(telemetry))
    assert summary.unassigned_rows == int((telemetry[schema.MACHINE] == dropped).sum())
    assert summary.warmup_rows == 7 * (window_length - 1)
    assert dropped not in set(train_set[schema.MACHINE])
    full, _ = build_training_set(features, telemetry, segments, window_length)
    pd.testing.assert_frame_equal(
        train_set, full[full[schema.MACHINE] != dropped].reset_index(drop=True)
    )


def test_training_set_rejects_mismatched_inputs() -> None:
    telemetry = fleet(6, n_steps=100)
    features, window_length = features_of(telemetry)
    segments = assign_splits(telemetry, INFO)
    with pytest.raises(ValueError, match="same readings"):
        build_training_set(features.iloc[:-1], telemetry, segments, window_length)


def test_embargo_length_follows_the_horizon() -> None:
    frame = fleet(3, n_steps=600)
    segments = assign_splits(frame, dataclasses.replace(INFO, horizon=12))
    assert (segments.loc[segments["split"] == EMBARGO, "rows"] == 12).all()
