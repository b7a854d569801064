"""Tests for the landing zone's file contract: batch ids, atomic writes, reading landed files."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pdm_core import schema
from pdm_core.landing import (
    BATCH_ID,
    LandedFileError,
    LandingContract,
    batch_id,
    is_candidate,
    read_landed_file,
    split_against_existing,
    write_batch,
)
from pdm_core.simulator import SENSORS, SimulatorConfig, dataset_info, simulate

CONFIG = SimulatorConfig(n_machines=3, n_steps=20, seed=7)
CONTRACT = LandingContract.from_info(dataset_info(CONFIG))
N_ROWS = CONFIG.n_machines * CONFIG.n_steps


def fleet() -> pd.DataFrame:
    """Simulated readings in the landing contract's columns (60 rows, sorted)."""
    return simulate(CONFIG).drop(columns=[schema.SOURCE_SPLIT])


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every cell as an object, so single cells can be replaced by text."""
    return frame.astype(object)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def csv_line(row: int) -> int:
    """1-based line of a data row in a CSV file (the header is line 1)."""
    return row + 2


# ---------------------------------------------------------------------- batch ids


def test_batch_id_is_stable_for_the_same_bytes_and_name() -> None:
    data = b"machine_id,cycle\nM1,1\n"
    assert batch_id("feed-000001.csv", data) == batch_id("feed-000001.csv", bytes(data))
    digest = hashlib.sha256(data).hexdigest()[:12]
    assert batch_id("feed-000001.csv", data) == f"feed-000001-{digest}"


def test_batch_id_changes_with_the_content() -> None:
    first = batch_id("feed.parquet", b"one")
    second = batch_id("feed.parquet", b"two")
    assert first != second
    assert first.startswith("feed-") and second.startswith("feed-")


def test_batch_id_sanitises_unsafe_names_and_drops_suffix() -> None:
    identifier = batch_id("some/dir/My Export (copy) #2.CSV", b"x")
    stem, digest = identifier.rsplit("-", 1)
    assert stem == "My_Export_copy_2"
    assert re.fullmatch(r"[0-9a-f]{12}", digest)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", identifier)
    assert ".csv" not in identifier.lower()
    assert batch_id("x.parquet", b"x").startswith("x-")
    # A name of nothing but unsafe characters still gives a usable id.
    assert batch_id("%%%.csv", b"x").startswith("batch-")
    # Long names are cut so partition keys stay short.
    assert len(batch_id("a" * 300 + ".csv", b"x")) == 80 + 1 + 12


def test_is_candidate_only_complete_known_files() -> None:
    assert is_candidate("feed.parquet")
    assert is_candidate("FEED.CSV")
    assert not is_candidate(".feed.parquet.part")
    assert not is_candidate(".feed.parquet")
    assert not is_candidate("feed.json")
    assert not is_candidate("feed.parquet.part")


# ---------------------------------------------------------------------- write_batch


def test_write_batch_is_atomic(tmp_path: Path) -> None:
    frame = fleet()
    directory = tmp_path / "landing" / "incoming"
    path = write_batch(frame, directory, "feed-000001")
    assert path == directory / "feed-000001.parquet"
    assert path.is_file()
    assert sorted(p.name for p in directory.iterdir()) == ["feed-000001.parquet"]
    assert not list(directory.glob(".*"))
    back = pd.read_parquet(path)
    assert len(back) == len(frame)
    np.testing.assert_array_equal(back["vibration"], frame["vibration"])
    # The temporary name a producer uses is never taken for a complete file.
    assert not is_candidate(".feed-000001.parquet.part")


def test_write_batch_same_frame_gives_same_bytes(tmp_path: Path) -> None:
    first = write_batch(fleet(), tmp_path / "a", "feed")
    second = write_batch(fleet(), tmp_path / "b", "feed")
    assert first.read_bytes() == second.read_bytes()
    assert batch_id(first.name, first.read_bytes()) == batch_id(second.name, second.read_bytes())


# ---------------------------------------------------------------------- good files


def test_read_good_csv_keeps_every_row(tmp_path: Path) -> None:
    frame = fleet()
    path = write_csv(frame, tmp_path / "good.csv")
    batch = read_landed_file(path, CONTRACT)
    assert batch.rows_read == N_ROWS
    assert batch.duplicates_in_file == 0
    assert batch.rejects.empty
    assert list(batch.rejects.columns) == list(schema.REJECT_COLUMNS)
    good = batch.frame
    assert len(good) == N_ROWS
    assert good[schema.CYCLE].dtype == np.int64
    assert good[schema.TIMESTAMP].dtype == "datetime64[ns]"
    assert good[schema.MACHINE].tolist() == frame[schema.MACHINE].astype(str).tolist()
    assert good[schema.CYCLE].tolist() == frame[schema.CYCLE].tolist()
    for column in SENSORS:
        np.testing.assert_allclose(good[column], frame[column], rtol=1e-12)
    np.testing.assert_array_equal(good[schema.LABEL], frame[schema.LABEL].astype(float))
    assert good[schema.REGIME].tolist() == frame[schema.REGIME].astype(str).tolist()
    assert (good[schema.TIMESTAMP] == frame[schema.TIMESTAMP]).all()


def test_read_good_parquet_keeps_every_row(tmp_path: Path) -> None:
    frame = fleet()
    path = write_batch(frame, tmp_path, "good")
    batch = read_landed_file(path, CONTRACT)
    assert batch.rows_read == N_ROWS
    assert batch.rejects.empty
    assert len(batch.frame) == N_ROWS
    for column in SENSORS:
        np.testing.assert_array_equal(batch.frame[column], frame[column])
    assert (
        batch.frame[schema.FAILURE_MODE].tolist() == frame[schema.FAILURE_MODE].astype(str).tolist()
    )


def test_read_uses_given_bytes_instead_of_the_file(tmp_path: Path) -> None:
    path = write_csv(fleet(), tmp_path / "good.csv")
    data = path.read_bytes()
    path.unlink()
    batch = read_landed_file(path, CONTRACT, data=data)
    assert len(batch.frame) == N_ROWS


def test_derived_sensors_are_computed_on_landing_and_a_non_finite_one_quarantined(
    tmp_path: Path,
) -> None:
    """A file carries the measured sensors; the contract computes the derived ones."""
    info = dataset_info(CONFIG)
    derived = (("load_per_speed", "motor_current / (rotational_speed - 1500)"),)
    contract = LandingContract.from_info(
        replace(info, sensors=(*info.sensors, "load_per_speed"), derived=derived)
    )
    assert "load_per_speed" not in contract.required
    assert "load_per_speed" in contract.table_columns()
    frame = as_text(fleet())
    frame.loc[4, "rotational_speed"] = 1500.0  # x / 0: not a finite number
    batch = read_landed_file(write_csv(frame, tmp_path / "batch.csv"), contract)
    assert len(batch.frame) == N_ROWS - 1
    [reject] = batch.rejects.to_dict("records")
    assert (reject["line"], reject["column"]) == (csv_line(4), "load_per_speed")
    assert reject["reason"] == "motor_current / (rotational_speed - 1500) is not a finite number"
    kept = fleet().drop(index=4).reset_index(drop=True)
    expected = kept["motor_current"] / (kept["rotational_speed"] - 1500)
    np.testing.assert_allclose(batch.frame["load_per_speed"], expected, rtol=1e-12)
    with pytest.raises(LandedFileError, match=r"unknown column\(s\) \['load_per_speed'\]"):
        read_landed_file(write_csv(batch.frame, tmp_path / "sent.csv"), contract)


def test_file_without_labels_gives_unlabelled_rows(tmp_path: Path) -> None:
    frame = fleet().drop(
        columns=[schema.LABEL, schema.RUL, schema.FAILURE_MODE, schema.REGIME, schema.TIMESTAMP]
    )
    path = write_csv(frame, tmp_path / "unlabelled.csv")
    batch = read_landed_file(path, CONTRACT)
    good = batch.frame
    assert len(good) == N_ROWS
    assert batch.rejects.empty
    assert good[schema.LABEL].isna().all()
    assert good[schema.RUL].isna().all()
    assert (good[schema.REGIME] == schema.NO_REGIME).all()
    assert (good[schema.FAILURE_MODE] == schema.UNKNOWN_MODE).all()
    assert good[schema.TIMESTAMP].isna().all()
    # time_since_maintenance was delivered and is kept.
    np.testing.assert_allclose(
        good[schema.TIME_SINCE_MAINTENANCE], frame[schema.TIME_SINCE_MAINTENANCE]
    )


def test_blank_label_cells_are_unlabelled_not_rejected(tmp_path: Path) -> None:
    text = as_text(fleet())
    text.loc[4, schema.LABEL] = ""
    path = write_csv(text, tmp_path / "partly.csv")
    batch = read_landed_file(path, CONTRACT)
    assert batch.rejects.empty
    assert batch.frame[schema.LABEL].isna().sum() == 1


# ---------------------------------------------------------------------- refused files


def test_missing_sensor_column_names_file_and_column(tmp_path: Path) -> None:
    path = write_csv(fleet().drop(columns=["pressure"]), tmp_path / "nopressure.csv")
    with pytest.raises(LandedFileError) as caught:
        read_landed_file(path, CONTRACT)
    assert "nopressure.csv" in str(caught.value)
    assert "pressure" in str(caught.value)
    assert caught.value.column == "pressure"
    assert caught.value.source == "nopressure.csv"


def test_unknown_extra_column_is_refused(tmp_path: Path) -> None:
    frame = fleet().assign(humidity=0.5)
    path = write_csv(frame, tmp_path / "extra.csv")
    with pytest.raises(LandedFileError) as caught:
        read_landed_file(path, CONTRACT)
    message = str(caught.value)
    assert message.startswith("extra.csv")
    assert "humidity" in message
    assert caught.value.column == "humidity"


def test_corrupt_parquet_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file at all PAR1")
    with pytest.raises(LandedFileError) as caught:
        read_landed_file(path, CONTRACT)
    assert str(caught.value).startswith("broken.parquet")
    assert "unreadable Parquet" in str(caught.value)


def test_truncated_parquet_names_the_file(tmp_path: Path) -> None:
    whole = write_batch(fleet(), tmp_path, "whole").read_bytes()
    path = tmp_path / "half.parquet"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(LandedFileError, match=r"^half\.parquet"):
        read_landed_file(path, CONTRACT)


def test_non_utf8_csv_names_the_file(tmp_path: Path) -> None:
    header = ",".join(fleet().columns).encode()
    path = tmp_path / "latin.csv"
    path.write_bytes(header + b"\nM\xe9000,1\n")
    with pytest.raises(LandedFileError) as caught:
        read_landed_file(path, CONTRACT)
    assert str(caught.value).startswith("latin.csv")
    assert "not UTF-8" in str(caught.value)


def test_header_only_csv_is_refused(tmp_path: Path) -> None:
    path = write_csv(fleet().iloc[0:0], tmp_path / "empty.csv")
    with pytest.raises(LandedFileError) as caught:
        read_landed_file(path, CONTRACT)
    assert str(caught.value).startswith("empty.csv")
    assert "no data rows" in str(caught.value)


def test_zero_byte_csv_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nothing.csv"
    path.write_bytes(b"")
    with pytest.raises(LandedFileError, match=r"^nothing\.csv"):
        read_landed_file(path, CONTRACT)


def test_empty_parquet_is_refused(tmp_path: Path) -> None:
    path = write_batch(fleet().iloc[0:0], tmp_path, "empty")
    with pytest.raises(LandedFileError, match="no data rows"):
        read_landed_file(path, CONTRACT)


# ---------------------------------------------------------------------- bad rows


def test_bad_cells_reject_their_rows_with_line_and_reason(tmp_path: Path) -> None:
    frame = fleet()
    text = as_text(frame)
    text.loc[3, "vibration"] = "abc"
    text.loc[5, "temperature"] = "nan"
    text.loc[7, "pressure"] = "99.0"  # declared range is [0, 25]
    text.loc[9, schema.LABEL] = "2"
    text.loc[11, schema.CYCLE] = "-4"
    path = write_csv(text, tmp_path / "cells.csv")
    batch = read_landed_file(path, CONTRACT, max_rejected_fraction=0.2)

    rejects = batch.rejects
    assert set(rejects["source"]) == {"cells.csv"}
    found = {(int(r.line), r.column): r.reason for r in rejects.itertuples()}
    assert set(found) == {
        (csv_line(3), "vibration"),
        (csv_line(5), "temperature"),
        (csv_line(7), "pressure"),
        (csv_line(9), schema.LABEL),
        (csv_line(11), schema.CYCLE),
    }
    assert found[(csv_line(3), "vibration")] == "not a finite number"
    assert found[(csv_line(5), "temperature")] == "not a finite number"
    assert "outside the plausible range [0.0, 25.0]" in found[(csv_line(7), "pressure")]
    assert found[(csv_line(9), schema.LABEL)] == "label must be 0 or 1"
    assert "non-negative integer" in found[(csv_line(11), schema.CYCLE)]
    values = {(int(r.line), r.column): r.value for r in rejects.itertuples()}
    assert values[(csv_line(3), "vibration")] == "abc"
    assert values[(csv_line(7), "pressure")] == "99.0"
    assert rejects["line"].is_monotonic_increasing

    good = batch.frame
    assert batch.rows_read == N_ROWS
    assert len(good) == N_ROWS - 5
    bad_keys = {(frame.loc[i, schema.MACHINE], frame.loc[i, schema.CYCLE]) for i in (3, 5, 7, 9)}
    kept = set(zip(good[schema.MACHINE], good[schema.CYCLE], strict=True))
    assert not bad_keys & kept
    assert (good[schema.CYCLE] >= 0).all()
    assert np.isfinite(good[list(SENSORS)].to_numpy()).all()


def test_bad_cell_in_parquet_names_the_row_number(tmp_path: Path) -> None:
    frame = fleet()
    frame.loc[2, "motor_current"] = np.nan
    path = write_batch(frame, tmp_path, "gap")
    batch = read_landed_file(path, CONTRACT)
    (reject,) = batch.rejects.itertuples()
    assert reject.line == 3  # row number (1-based) for Parquet
    assert reject.column == "motor_current"
    assert len(batch.frame) == N_ROWS - 1


def test_exact_duplicate_row_is_kept_once(tmp_path: Path) -> None:
    frame = fleet()
    doubled = pd.concat([frame, frame.iloc[[10]]], ignore_index=True)
    path = write_csv(doubled, tmp_path / "dup.csv")
    batch = read_landed_file(path, CONTRACT)
    assert batch.rows_read == N_ROWS + 1
    assert batch.duplicates_in_file == 1
    assert batch.rejects.empty
    assert len(batch.frame) == N_ROWS
    assert not batch.frame.duplicated([schema.MACHINE, schema.CYCLE]).any()


def test_same_key_with_other_values_rejects_both(tmp_path: Path) -> None:
    frame = fleet()
    clash = frame.iloc[[20]].copy()
    clash["vibration"] += 1.0
    clashing = pd.concat([frame, clash], ignore_index=True)
    path = write_csv(clashing, tmp_path / "clash.csv")
    batch = read_landed_file(path, CONTRACT, max_rejected_fraction=0.1)
    assert sorted(batch.rejects["line"].tolist()) == [csv_line(20), csv_line(N_ROWS)]
    assert set(batch.rejects["column"]) == {schema.CYCLE}
    assert all("other values" in r for r in batch.rejects["reason"])
    key = (frame.loc[20, schema.MACHINE], frame.loc[20, schema.CYCLE])
    kept = set(zip(batch.frame[schema.MACHINE], batch.frame[schema.CYCLE], strict=True))
    assert key not in kept
    assert len(batch.frame) == N_ROWS - 1
    assert batch.duplicates_in_file == 0


def test_duplicates_and_bad_cells_together(tmp_path: Path) -> None:
    frame = fleet()
    clash = frame.iloc[[20]].copy()
    clash["vibration"] += 1.0
    text = as_text(pd.concat([frame, frame.iloc[[0]], clash], ignore_index=True))
    text.loc[3, "vibration"] = "abc"
    path = write_csv(text, tmp_path / "mixed.csv")
    batch = read_landed_file(path, CONTRACT, max_rejected_fraction=0.2)
    assert batch.rows_read == N_ROWS + 2
    assert batch.duplicates_in_file == 1
    assert sorted(batch.rejects["line"].tolist()) == [
        csv_line(3),
        csv_line(20),
        csv_line(N_ROWS + 1),
    ]
    assert len(batch.frame) == N_ROWS - 2


def test_too_many_bad_rows_refuse_the_file(tmp_path: Path) -> None:
    text = as_text(fleet())
    for row in (5, 6, 7, 8):  # 4 of 60 > 5 %
        text.loc[row, "temperature"] = "hot"
    path = write_csv(text, tmp_path / "bad.csv")
    with pytest.raises(LandedFileError) as caught:
        read_landed_file(path, CONTRACT)
    error = caught.value
    assert error.line == csv_line(5)
    assert error.column == "temperature"
    assert str(error).startswith(f"bad.csv:{csv_line(5)}, column 'temperature'")
    assert "4 of 60 rows are bad" in str(error)
    assert "'hot'" in str(error)
    # Exactly at the limit the file is accepted with its rejects.
    accepted = read_landed_file(path, CONTRACT, max_rejected_fraction=4 / 60)
    assert len(accepted.rejects) == 4
    assert len(accepted.frame) == N_ROWS - 4


# ---------------------------------------------------------------------- split_against_existing


def landed(tmp_path: Path) -> pd.DataFrame:
    return read_landed_file(write_batch(fleet(), tmp_path, "landed"), CONTRACT).frame


def test_split_with_nothing_existing_keeps_everything(tmp_path: Path) -> None:
    batch = landed(tmp_path)
    empty = batch.iloc[0:0].assign(**{BATCH_ID: pd.Series(dtype=object)})
    new, conflicts, redelivered = split_against_existing(batch, empty, CONTRACT.numeric)
    assert len(new) == len(batch)
    assert conflicts.empty
    assert redelivered == 0


def test_split_new_redelivered_and_conflicting(tmp_path: Path) -> None:
    batch = landed(tmp_path)
    existing = batch.iloc[[0, 1, 2, 30]].copy()
    existing[BATCH_ID] = ["old-a", "old-a", "old-b", "old-b"]
    existing.loc[existing.index[2], "vibration"] += 0.5  # row 2 arrives with other values
    new, conflicts, redelivered = split_against_existing(batch, existing, CONTRACT.numeric)

    assert redelivered == 3
    assert len(new) == len(batch) - 4
    new_keys = set(zip(new[schema.MACHINE], new[schema.CYCLE], strict=True))
    for row in (0, 1, 2, 30):
        assert (batch.loc[row, schema.MACHINE], batch.loc[row, schema.CYCLE]) not in new_keys
    assert len(conflicts) == 1
    conflict = conflicts.iloc[0]
    assert conflict["previous_batch"] == "old-b"
    assert conflict[schema.MACHINE] == batch.loc[2, schema.MACHINE]
    assert conflict[schema.CYCLE] == batch.loc[2, schema.CYCLE]
    # The conflict carries the new batch's value, not the stored one.
    assert conflict["vibration"] == batch.loc[2, "vibration"]
    assert set(batch.columns) | {"previous_batch"} == set(conflicts.columns)


def test_split_tolerates_float_noise_as_redelivery(tmp_path: Path) -> None:
    batch = landed(tmp_path)
    existing = batch.iloc[[4]].copy()
    existing[BATCH_ID] = "old"
    existing["temperature"] *= 1 + 1e-12
    new, conflicts, redelivered = split_against_existing(batch, existing, CONTRACT.numeric)
    assert redelivered == 1
    assert conflicts.empty
    assert len(new) == len(batch) - 1


def test_readme_example_batch_meets_the_default_contract() -> None:
    from pdm_core.landing import LandingContract, read_landed_file
    from pdm_core.simulator import SimulatorConfig, dataset_info

    path = Path(__file__).resolve().parents[2] / "examples" / "landing" / "example-batch.csv"
    batch = read_landed_file(path, LandingContract.from_info(dataset_info(SimulatorConfig())))
    assert len(batch.frame) == 10 and batch.rejects.empty
    assert batch.frame["failure_within_h"].notna().all()  # labelled: usable for retraining
