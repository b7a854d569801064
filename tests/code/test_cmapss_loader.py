"""Tests for the C-MAPSS loader: the real FD001 files and small synthetic/broken directories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pdm_core.errors import DataValidationError
from pdm_core.loaders import CMAPSS_SUBSETS, load_cmapss
from pdm_core.schema import (
    CYCLE,
    LABEL,
    MACHINE,
    REGIME,
    REJECT_COLUMNS,
    RUL,
    SOURCE_SPLIT,
    TIMESTAMP,
    LoadResult,
    regime_from_settings,
)

SENSORS = [f"sensor_{i}" for i in range(1, 22)]
SETTINGS = [f"setting_{i}" for i in range(1, 4)]
FD002_CONDITIONS = [
    (0.0, 0.0, 100.0),
    (10.0, 0.25, 100.0),
    (20.0, 0.7, 100.0),
    (25.0, 0.62, 60.0),
    (35.0, 0.84, 100.0),
    (42.0, 0.84, 100.0),
]


def assert_accounting(result: LoadResult) -> None:
    """Nothing vanishes: every row read is either in the frame or a distinct rejected line."""
    distinct = result.rejects[["source", "line"]].drop_duplicates().shape[0]
    assert result.rows_read == len(result.frame) + distinct
    assert result.rows_rejected == distinct
    assert tuple(result.rejects.columns) == REJECT_COLUMNS


def assert_canonical(frame: pd.DataFrame) -> None:
    assert frame[CYCLE].dtype == np.int64
    assert frame[TIMESTAMP].dtype == "datetime64[ns]"
    assert frame[LABEL].dtype == np.int8
    assert frame[RUL].dtype == np.float64
    assert all(frame[c].dtype == np.float64 for c in SETTINGS + SENSORS)
    assert frame[MACHINE].map(type).eq(str).all()
    assert not frame.duplicated([MACHINE, CYCLE]).any()
    ordered = frame.sort_values([MACHINE, CYCLE]).reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, ordered)
    assert frame.index.equals(pd.RangeIndex(len(frame)))


# ----------------------------------------------------------------------------------------------
# Synthetic files


def engine_line(unit: int, cycle: int, settings: tuple[float, ...], seed: int = 0) -> str:
    rng = np.random.default_rng(seed + 1000 * unit + cycle)
    sensors = 500 + rng.normal(0, 1, 21)
    fields = [str(unit), str(cycle), *(f"{s:.4f}" for s in settings)]
    fields += [f"{v:.2f}" for v in sensors]
    return " ".join(fields) + " "


def write_subset(
    folder: Path,
    subset: str = "FD001",
    train_cycles: tuple[int, ...] = (30, 25, 40),
    test_cycles: tuple[int, ...] = (12, 20),
    final_rul: tuple[int, ...] = (7, 40),
    conditions: list[tuple[float, float, float]] | None = None,
) -> Path:
    """Writes a small C-MAPSS-format subset; settings cycle through ``conditions`` plus noise."""
    conditions = conditions or [(0.0, 0.0, 100.0)]
    rng = np.random.default_rng(42)

    def lines(cycles: tuple[int, ...]) -> str:
        out = []
        for unit, n in enumerate(cycles, start=1):
            for cycle in range(1, n + 1):
                base = np.array(conditions[(unit + cycle) % len(conditions)])
                noise = rng.uniform(-0.004, 0.004, 3) * np.array([1, 1, 0])
                out.append(engine_line(unit, cycle, tuple(base + noise)))
        return "\n".join(out) + "\n"

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"train_{subset}.txt").write_text(lines(train_cycles))
    (folder / f"test_{subset}.txt").write_text(lines(test_cycles))
    (folder / f"RUL_{subset}.txt").write_text("".join(f"{v}\n" for v in final_rul))
    return folder


def edit_line(path: Path, line: int, new: str | None) -> str:
    """Replaces (or with None deletes) 1-based ``line`` of ``path``; returns the old line."""
    lines = path.read_text().split("\n")
    old = lines[line - 1]
    if new is None:
        del lines[line - 1]
    else:
        lines[line - 1] = new
    path.write_text("\n".join(lines))
    return old


@pytest.fixture
def small(tmp_path: Path) -> Path:
    return write_subset(tmp_path / "cmapss")


# ----------------------------------------------------------------------------------------------
# Real FD001


@pytest.fixture(scope="module")
def fd001(cmapss_dir: Path) -> LoadResult:
    return load_cmapss(cmapss_dir, "FD001")


def test_fd001_sizes(fd001: LoadResult) -> None:
    frame = fd001.frame
    train = frame[frame[SOURCE_SPLIT] == "train"]
    test = frame[frame[SOURCE_SPLIT] == "test"]
    assert len(train) == 20_631
    assert train[MACHINE].nunique() == 100
    assert len(test) == 13_096
    assert test[MACHINE].nunique() == 100
    assert fd001.rows_read == 20_631 + 13_096
    assert fd001.rejects.empty
    assert_accounting(fd001)
    assert_canonical(frame)


def test_fd001_machine_ids_and_info(fd001: LoadResult) -> None:
    ids = set(fd001.frame[MACHINE])
    assert "FD001_train_001" in ids
    assert "FD001_test_100" in ids
    info = fd001.info
    assert info.name == "cmapss/FD001"
    assert info.sensors == tuple(SENSORS)
    assert info.settings == tuple(SETTINGS)
    assert info.regime_rounding == (0, 2, 0)
    assert info.has_rul and info.ordered and info.horizon == 30
    assert info.extra["subset"] == "FD001"
    assert fd001.frame[TIMESTAMP].isna().all()
    assert fd001.frame["time_since_maintenance"].isna().all()
    assert (fd001.frame["failure_mode"] == "unknown").all()


def test_fd001_rul(fd001: LoadResult, cmapss_dir: Path) -> None:
    frame = fd001.frame
    last = frame.groupby(MACHINE).tail(1).set_index(MACHINE)
    train_last = last[last[SOURCE_SPLIT] == "train"]
    assert (train_last[RUL] == 0).all()
    expected = np.loadtxt(cmapss_dir / "RUL_FD001.txt")
    test_last = last[last[SOURCE_SPLIT] == "test"].sort_index()
    np.testing.assert_array_equal(test_last[RUL].to_numpy(), expected)
    # RUL decreases by one per cycle and is not capped.
    assert (frame.groupby(MACHINE)[RUL].diff().dropna() == -1).all()
    assert frame[RUL].max() > 125
    np.testing.assert_array_equal(frame[LABEL], (frame[RUL] <= 30).astype(np.int8))


def test_fd001_one_regime(fd001: LoadResult) -> None:
    assert fd001.frame[REGIME].nunique() == 1


# ----------------------------------------------------------------------------------------------
# Synthetic subsets


def test_fd002_six_regimes_by_name(tmp_path: Path) -> None:
    folder = write_subset(tmp_path, "FD002", conditions=FD002_CONDITIONS)
    result = load_cmapss(folder, subset="FD002", horizon=10)
    assert result.frame[REGIME].nunique() == 6
    assert result.info.name == "cmapss/FD002"
    assert result.frame[MACHINE].str.startswith("FD002_").all()
    assert set(result.frame[REGIME]) >= {"42_0.84_100", "25_0.62_60", "0_0.00_100"}
    expected = regime_from_settings(result.frame[SETTINGS], (0, 2, 0))
    assert (result.frame[REGIME] == expected).all()
    assert_canonical(result.frame)
    assert_accounting(result)


def test_synthetic_rul_and_label(small: Path) -> None:
    result = load_cmapss(small, horizon=10)
    frame = result.frame.set_index([MACHINE, CYCLE])
    assert frame.loc[("FD001_train_001", 30), RUL] == 0
    assert frame.loc[("FD001_train_001", 1), RUL] == 29
    assert frame.loc[("FD001_test_001", 12), RUL] == 7
    assert frame.loc[("FD001_test_002", 1), RUL] == 40 + 19
    assert frame.loc[("FD001_test_001", 9), LABEL] == 1
    assert frame.loc[("FD001_test_002", 20), LABEL] == 0
    assert result.rows_read == 30 + 25 + 40 + 12 + 20


def test_cycles_as_age_fills_time_since_maintenance(small: Path) -> None:
    plain = load_cmapss(small).frame
    aged = load_cmapss(small, cycles_as_age=True).frame
    assert plain["time_since_maintenance"].isna().all()
    np.testing.assert_array_equal(aged["time_since_maintenance"], aged[CYCLE].astype(float))
    pd.testing.assert_frame_equal(
        aged.drop(columns="time_since_maintenance"), plain.drop(columns="time_since_maintenance")
    )


def test_unknown_subset_raises(small: Path) -> None:
    with pytest.raises(DataValidationError, match="FD001, FD002, FD003, FD004") as caught:
        load_cmapss(small, subset="FD005")
    assert isinstance(caught.value, ValueError)
    assert CMAPSS_SUBSETS == ("FD001", "FD002", "FD003", "FD004")


def test_missing_file(small: Path) -> None:
    (small / "test_FD001.txt").unlink()
    with pytest.raises(DataValidationError, match=r"test_FD001\.txt: file not found"):
        load_cmapss(small)


def test_empty_file(small: Path) -> None:
    (small / "train_FD001.txt").write_text("\n  \n")
    with pytest.raises(DataValidationError, match=r"train_FD001\.txt: file is empty"):
        load_cmapss(small)


def test_crlf_line_endings(small: Path) -> None:
    reference = load_cmapss(small)
    for path in small.iterdir():
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    result = load_cmapss(small)
    pd.testing.assert_frame_equal(result.frame, reference.frame)


def test_unordered_lines_are_sorted(small: Path) -> None:
    path = small / "train_FD001.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(reversed(lines)) + "\n")
    result = load_cmapss(small)
    assert_canonical(result.frame)
    assert result.rejects.empty


# ----------------------------------------------------------------------------------------------
# Row-level problems


def test_wrong_field_count_quarantined(small: Path) -> None:
    path = small / "train_FD001.txt"
    old = edit_line(path, 5, "1 5 0.0 0.0 100.0 518.67")
    result = load_cmapss(small, max_rejected_fraction=0.05)
    reject = result.rejects.iloc[0]
    assert (reject["source"], reject["line"], reject["column"]) == ("train_FD001.txt", 5, "")
    assert reject["reason"] == "expected 26 fields, found 6"
    assert reject["value"] == "1 5 0.0 0.0 100.0 518.67"
    assert 5 not in result.frame.loc[result.frame[MACHINE] == "FD001_train_001", CYCLE].values
    assert old
    assert_accounting(result)


def test_wrong_field_count_fails(small: Path) -> None:
    edit_line(small / "train_FD001.txt", 5, "1 5 0.0 0.0 100.0 518.67")
    with pytest.raises(DataValidationError, match=r"train_FD001\.txt:5: expected 26 fields"):
        load_cmapss(small, on_bad_rows="fail")


def test_non_numeric_value(small: Path) -> None:
    path = small / "test_FD001.txt"
    fields = edit_line(path, 3, "").split()
    fields[7] = "abc"
    edit_line(path, 3, " ".join(fields))
    with pytest.raises(
        DataValidationError, match=r"test_FD001\.txt:3, column 'sensor_3': not a number"
    ):
        load_cmapss(small, on_bad_rows="fail")
    result = load_cmapss(small, max_rejected_fraction=0.1)
    assert result.rejects.to_dict("records") == [
        {
            "source": "test_FD001.txt",
            "line": 3,
            "column": "sensor_3",
            "value": "abc",
            "reason": "not a number",
        }
    ]
    assert_accounting(result)


def test_bad_unit_and_cycle(small: Path) -> None:
    path = small / "train_FD001.txt"
    for line, position, value in ((2, 0, "0"), (4, 1, "2.5")):
        fields = edit_line(path, line, "").split()
        fields[position] = value
        edit_line(path, line, " ".join(fields))
    result = load_cmapss(small, max_rejected_fraction=0.1)
    got = result.rejects[["line", "column", "value", "reason"]].to_dict("records")
    assert got == [
        {"line": 2, "column": "unit", "value": "0", "reason": "must be a positive integer"},
        {"line": 4, "column": "cycle", "value": "2.5", "reason": "must be a positive integer"},
    ]
    assert_accounting(result)


def test_duplicate_key(small: Path) -> None:
    path = small / "train_FD001.txt"
    lines = path.read_text().split("\n")
    lines.insert(10, lines[2])  # exact copy of line 3 becomes line 11
    path.write_text("\n".join(lines))
    with pytest.raises(
        DataValidationError, match=r"train_FD001\.txt:11: duplicate key .* first seen on line 3"
    ):
        load_cmapss(small, on_bad_rows="fail")
    result = load_cmapss(small, max_rejected_fraction=0.05)
    assert len(result.rejects) == 1
    reject = result.rejects.iloc[0]
    assert reject["line"] == 11
    assert reject["reason"] == "duplicate key (unit 1, cycle 3), first seen on line 3"
    assert result.rows_read == len(result.frame) + 1
    assert_accounting(result)


def test_too_many_rejects(small: Path) -> None:
    path = small / "train_FD001.txt"
    edit_line(path, 4, "garbage")
    edit_line(path, 9, "more garbage")
    with pytest.raises(DataValidationError) as caught:
        load_cmapss(small)  # 2 of 95 rows > 1%
    message = str(caught.value)
    assert message.startswith("train_FD001.txt:4: 2 of 95 rows rejected")
    assert "max_rejected_fraction=0.01" in message
    result = load_cmapss(small, max_rejected_fraction=0.05)
    assert list(result.rejects["line"]) == [4, 9]
    assert_accounting(result)


def test_invalid_policy_arguments(small: Path) -> None:
    with pytest.raises(ValueError, match="on_bad_rows"):
        load_cmapss(small, on_bad_rows="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_rejected_fraction"):
        load_cmapss(small, max_rejected_fraction=1.5)


# ----------------------------------------------------------------------------------------------
# RUL file and encodings


def test_rul_length_mismatch(small: Path) -> None:
    (small / "RUL_FD001.txt").write_text("7\n40\n3\n")
    with pytest.raises(DataValidationError, match=r"RUL_FD001\.txt: has 3 values .* 2 units"):
        load_cmapss(small)


def test_rul_bad_value(small: Path) -> None:
    (small / "RUL_FD001.txt").write_text("7\n-4\n")
    with pytest.raises(DataValidationError, match=r"RUL_FD001\.txt:2: expected one non-negative"):
        load_cmapss(small)


def test_invalid_utf8_names_line(small: Path) -> None:
    path = small / "train_FD001.txt"
    data = path.read_bytes().split(b"\n")
    data[6] = data[6].replace(b"100.0000", b"100.\xff000", 1)
    path.write_bytes(b"\n".join(data))
    with pytest.raises(DataValidationError, match=r"train_FD001\.txt:7: cannot decode"):
        load_cmapss(small)


def test_bom_files_load(small: Path) -> None:
    reference = load_cmapss(small)
    train = small / "train_FD001.txt"
    test = small / "test_FD001.txt"
    train.write_bytes(b"\xef\xbb\xbf" + train.read_bytes())
    test.write_text(test.read_text(), encoding="utf-16")
    result = load_cmapss(small)
    pd.testing.assert_frame_equal(result.frame, reference.frame)
