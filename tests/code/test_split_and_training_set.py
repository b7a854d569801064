"""Leak-free splits (by machine, by time with an embargo, by row) and the training-set join."""

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
    BY_MACHINE,
    BY_ROW,
    BY_TIME,
    EMBARGO,
    SEGMENT_COLUMNS,
    SPLITS,
    TEST,
    TRAIN,
    VALIDATION,
    SplitConfig,
    SplitError,
    SplitPlan,
    assign_splits,
    leakage_problems,
    plan_split,
    split_of_rows,
)
from pdm_core.training_set import SPLIT, build_training_set

HORIZON = 30


def fleet(n_machines: int, n_steps: int = 300, seed: int = 8) -> pd.DataFrame:
    return simulate(
        SimulatorConfig(n_machines=n_machines, n_steps=n_steps, seed=seed, horizon=HORIZON)
    )


INFO = dataset_info(SimulatorConfig(horizon=HORIZON))
WHOLE_MACHINES = SplitPlan(BY_MACHINE)
IN_TIME = SplitPlan(BY_TIME, embargo=HORIZON)


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
    assert plan_split(frame, INFO) == WHOLE_MACHINES
    assert leakage_problems(segments, WHOLE_MACHINES) == []
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
    assert leakage_problems(segments, plan_split(frame, INFO)) == []


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
    assert plan_split(frame, INFO) == IN_TIME
    assert leakage_problems(segments, IN_TIME) == []
    split = split_of_rows(frame, segments)
    assert (split != "").all()
    assert (split == EMBARGO).sum() == 3 * 2 * HORIZON


def test_time_split_refuses_too_short_machines() -> None:
    with pytest.raises(SplitError, match="too few"):
        assign_splits(fleet(2, n_steps=60), INFO)


def test_time_split_without_a_horizon_is_refused_naming_the_setting() -> None:
    """No embargo is safe without the label's horizon, so the plan refuses rather than leak."""
    frame = fleet(2, n_steps=600)
    with pytest.raises(SplitError, match="`horizon:`"):
        plan_split(frame, dataclasses.replace(INFO, horizon=None))


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
        (
            [("A", TRAIN, 1, 100), ("A", EMBARGO, 101, 110), ("A", VALIDATION, 111, 160)],
            "10 embargoed readings between train and validation, fewer than the horizon of 30",
        ),
    ],
)
def test_leaking_segments_are_reported(rows: list, problem: str) -> None:
    clean = [("B", TRAIN, 1, 50), ("C", TEST, 1, 80)]
    problems = leakage_problems(segments_table(rows + clean), IN_TIME)
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
    assert leakage_problems(segments_table(rows), IN_TIME) == []


def test_a_machine_in_two_splits_leaks_when_whole_machines_are_the_rule() -> None:
    rows = [("A", TRAIN, 1, 100), ("A", EMBARGO, 101, 130), ("A", TEST, 131, 200)]
    rows += [("B", TEST, 1, 80)]
    assert leakage_problems(segments_table(rows), WHOLE_MACHINES) == [
        "machine A: in 2 splits ['train', 'test']"
    ]
    assert leakage_problems(segments_table(rows), IN_TIME) == []


# ----------------------------------------------------------------------------------------------
# Split by row (independent rows: no machine, no time order)

ROWS_INFO = schema.DatasetInfo(name="rows", sensors=("a", "b"), ordered=False, has_rul=False)


def independent_rows(n: int = 2000, seed: int = 3, duplicates: int = 0) -> pd.DataFrame:
    """One-machine rows as the tabular loader gives them without entity and time columns."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n).round(6), rng.normal(size=n).round(6)
    if duplicates:  # the first rows repeat as the last ones (same readings, same label)
        a[-duplicates:], b[-duplicates:] = a[:duplicates], b[:duplicates]
    label = (a + 0.5 * b > 1.2).astype(np.int8)
    return pd.DataFrame(
        {
            schema.MACHINE: "all",
            schema.CYCLE: np.arange(1, n + 1),
            schema.REGIME: schema.NO_REGIME,
            "a": a,
            "b": b,
            schema.LABEL: label,
        }
    )


def test_independent_rows_are_split_by_label_with_identical_readings_on_one_side() -> None:
    frame = independent_rows(duplicates=150)
    plan = plan_split(frame, ROWS_INFO)
    assert plan.shape == BY_ROW and plan.embargo == 0
    segments = assign_splits(frame, ROWS_INFO)
    split = split_of_rows(frame, segments)
    assert (split != "").all() and set(split) == set(SPLITS)
    assert int(segments["rows"].sum()) == len(frame), "every row in exactly one segment"
    config = SplitConfig()
    share = pd.Series(split).value_counts(normalize=True)
    assert abs(share[TEST] - config.test_fraction) < 0.01, share
    assert abs(share[VALIDATION] - config.validation_fraction) < 0.01, share
    prevalence = frame[schema.LABEL].mean()
    for name in SPLITS:  # stratified: each split keeps the label's prevalence
        assert abs(frame.loc[split == name, schema.LABEL].mean() - prevalence) < 0.01, name
    repeated = pd.Series(split[:150]) == pd.Series(split[-150:])
    assert repeated.all(), "an identical reading was put on two sides"
    assert leakage_problems(segments, plan, frame) == []
    pd.testing.assert_frame_equal(assign_splits(frame, ROWS_INFO), segments)
    reseeded = assign_splits(frame, ROWS_INFO, SplitConfig(seed=8))
    assert not np.array_equal(split_of_rows(frame, reseeded), split)


def test_row_split_check_finds_identical_readings_on_two_sides() -> None:
    frame = independent_rows(duplicates=150)
    plan = plan_split(frame, ROWS_INFO)
    first, last = frame[schema.CYCLE].iloc[0], frame[schema.CYCLE].iloc[-1]
    naive = segments_table([("all", TRAIN, first, 1000), ("all", TEST, 1001, last)])
    assert leakage_problems(naive, plan, frame) == [
        "150 identical reading(s) appear in more than one split"
    ]
    overlapping = segments_table([("all", TRAIN, first, 1200), ("all", TEST, 1001, last)])
    assert "machine all: split segments overlap in time" in leakage_problems(
        overlapping, plan, frame
    )


def test_row_split_refuses_a_label_with_too_few_cases() -> None:
    frame = independent_rows(n=300)
    frame[schema.LABEL] = 0
    frame.loc[:1, schema.LABEL] = 1
    with pytest.raises(SplitError, match="at least 3 distinct readings of each label"):
        assign_splits(frame, ROWS_INFO)


def test_unordered_rows_of_many_machines_are_split_by_machine() -> None:
    frame = fleet(8, n_steps=50)
    assert plan_split(frame, dataclasses.replace(INFO, ordered=False)) == WHOLE_MACHINES


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
