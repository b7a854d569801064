"""Tests for the mapping-driven CSV/Parquet loader."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pdm_core.errors import DataValidationError
from pdm_core.loaders import TabularMapping, load_mapping, load_tabular
from pdm_core.schema import (
    CYCLE,
    FAILURE_MODE,
    LABEL,
    MACHINE,
    REGIME,
    REJECT_COLUMNS,
    RUL,
    SOURCE_SPLIT,
    TIME_SINCE_MAINTENANCE,
    TIMESTAMP,
    LoadResult,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_MAPPING = REPO_ROOT / "examples" / "tabular" / "mapping.yaml"
FEATURES = ["vibration", "temperature", "pressure", "rotational_speed", "motor_current"]
HEADER = "machine_id,timestamp,regime," + ",".join(FEATURES) + ",failure_within_h"


def make_rows(machines: int = 3, steps: int = 40) -> list[str]:
    """Data lines (no header), machine by machine, one hour apart."""
    rows = []
    for m in range(1, machines + 1):
        for t in range(steps):
            stamp = pd.Timestamp("2024-01-01") + pd.Timedelta(hours=t)
            values = [0.5 + t / 100, 70 + m, 101.0, 1480 + t, 12.0 + m / 10]
            label = int(t >= steps - 5)
            cells = [f"M{m}", stamp.isoformat(), "normal" if t % 2 else "high"]
            rows.append(",".join([*cells, *(f"{v:g}" for v in values), str(label)]))
    return rows


def write_csv(path: Path, rows: list[str], header: str = HEADER, **kwargs: str) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", **kwargs)
    return path


def mapping_for(path: Path, **changes: object) -> TabularMapping:
    base = TabularMapping(
        path=str(path),
        entity_column="machine_id",
        time_column="timestamp",
        time_kind="timestamp",
        feature_columns=list(FEATURES),
        label_column="failure_within_h",
        positive_values=[1],
        regime_column="regime",
    )
    return replace(base, **changes)


def assert_accounting(result: LoadResult) -> None:
    distinct = result.rejects[["source", "line"]].drop_duplicates().shape[0]
    assert result.rows_read == len(result.frame) + distinct
    assert tuple(result.rejects.columns) == REJECT_COLUMNS


def assert_canonical(result: LoadResult) -> None:
    frame = result.frame
    expected = [MACHINE, CYCLE, TIMESTAMP, REGIME, *result.info.sensors]
    expected += [*result.info.categoricals, TIME_SINCE_MAINTENANCE, RUL, LABEL, FAILURE_MODE]
    assert list(frame.columns) == [*expected, SOURCE_SPLIT]
    assert frame[CYCLE].dtype == np.int64
    assert frame[TIMESTAMP].dtype == "datetime64[ns]"
    assert frame[LABEL].dtype == np.int8
    assert all(frame[c].dtype == np.float64 for c in result.info.sensors)
    assert frame[RUL].dtype == np.float64
    assert frame[MACHINE].map(type).eq(str).all()
    assert not frame.duplicated([MACHINE, CYCLE]).any()
    ordered = frame.sort_values([MACHINE, CYCLE]).reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, ordered)


@pytest.fixture
def csv_path(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "telemetry.csv", make_rows())


def load_error(mapping: TabularMapping, **kwargs: object) -> DataValidationError:
    with pytest.raises(DataValidationError) as caught:
        load_tabular(mapping, **kwargs)  # type: ignore[arg-type]
    return caught.value


# ----------------------------------------------------------------------------------------------
# Happy paths


def test_example_mapping_loads(csv_path: Path) -> None:
    shutil.copy(EXAMPLE_MAPPING, csv_path.parent / "mapping.yaml")
    mapping = load_mapping(csv_path.parent / "mapping.yaml")
    assert Path(mapping.path) == csv_path
    result = load_tabular(mapping)
    frame = result.frame
    assert len(frame) == 120 and result.rows_read == 120 and result.rejects.empty
    assert sorted(frame[MACHINE].unique()) == ["M1", "M2", "M3"]
    first = frame[frame[MACHINE] == "M1"]
    assert list(first[CYCLE]) == list(range(1, 41))
    assert first[TIMESTAMP].iloc[0] == pd.Timestamp("2024-01-01")
    assert first[LABEL].sum() == 5
    assert set(frame[REGIME]) == {"normal", "high"}
    assert (frame[FAILURE_MODE] == "unknown").all()
    assert (frame[SOURCE_SPLIT] == "").all()
    assert frame[RUL].isna().all() and frame[TIME_SINCE_MAINTENANCE].isna().all()
    info = result.info
    assert info.name == "telemetry" and info.sensors == tuple(FEATURES)
    assert info.ordered and not info.has_rul and info.horizon is None
    assert_canonical(result)
    assert_accounting(result)


def test_unsorted_timestamps_are_ranked(tmp_path: Path) -> None:
    rows = make_rows(machines=2, steps=10)
    path = write_csv(tmp_path / "t.csv", list(reversed(rows)))
    result = load_tabular(mapping_for(path))
    m1 = result.frame[result.frame[MACHINE] == "M1"]
    assert list(m1[CYCLE]) == list(range(1, 11))
    assert m1[TIMESTAMP].is_monotonic_increasing
    assert_canonical(result)


def test_cycle_time_and_optional_columns(tmp_path: Path) -> None:
    header = "unit;step;site;rul;mode;temp;label;note"
    rows = [
        "7;2;north;8;bearing;1.5;yes;x",
        "7;1;north;9;bearing;1.0;no;y",
        "12;1;south;3;seal;2.0; YES ;z",
    ]
    path = write_csv(tmp_path / "u.txt", rows, header=header)
    mapping = TabularMapping(
        path=str(path),
        entity_column="unit",
        time_column="step",
        feature_columns=["temp"],
        label_column="label",
        positive_values=["yes", "YES"],
        categorical_columns=["site"],
        rul_column="rul",
        failure_mode_column="mode",
        ignore_columns=["note"],
        delimiter=";",
    )
    result = load_tabular(mapping)
    frame = result.frame
    assert list(frame[MACHINE]) == ["12", "7", "7"]
    assert list(frame[CYCLE]) == [1, 1, 2]
    assert frame[TIMESTAMP].isna().all()
    assert list(frame[RUL]) == [3.0, 9.0, 8.0]
    assert list(frame[LABEL]) == [1, 0, 1]
    assert list(frame[FAILURE_MODE]) == ["seal", "bearing", "bearing"]
    assert list(frame["site"]) == ["south", "north", "north"]
    assert list(frame[REGIME]) == ["all"] * 3
    assert result.info.has_rul and result.info.categoricals == ("site",)
    assert result.info.extra["time_kind"] == "cycle"
    assert_canonical(result)


def test_no_time_and_no_entity(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", ["1.0,0", "2.0,1", "3.0,0"], header="temp,label")
    mapping = TabularMapping(
        path=str(path), feature_columns=["temp"], label_column="label", positive_values=[1]
    )
    result = load_tabular(mapping)
    assert list(result.frame[MACHINE]) == ["all"] * 3
    assert list(result.frame[CYCLE]) == [1, 2, 3]
    assert list(result.frame["temp"]) == [1.0, 2.0, 3.0]
    assert result.info.ordered is False
    assert_canonical(result)


def test_parquet_happy_path(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "machine": [2, 1, 1, 2],
            "ts": pd.to_datetime(["2024-01-02", "2024-01-02", "2024-01-01", "2024-01-01"]),
            "temp": [1.5, 2.0, 1.0, np.nan],
            "load": pd.array([3, 4, 5, 6], dtype="int64"),
            "label": [1.0, 0.0, 0.0, 0.0],
        }
    )
    path = tmp_path / "data.parquet"
    frame.to_parquet(path)
    mapping = TabularMapping(
        path=str(path),
        entity_column="machine",
        time_column="ts",
        feature_columns=["temp", "load"],
        label_column="label",
        positive_values=[1],
    )
    result = load_tabular(mapping, max_rejected_fraction=0.5)
    out = result.frame
    assert list(out[MACHINE]) == ["1", "1", "2"]
    assert list(out[CYCLE]) == [1, 2, 1]  # ranks among the accepted rows
    assert list(out["load"]) == [5.0, 4.0, 3.0]
    assert list(out[LABEL]) == [0, 0, 1]
    assert result.rejects.to_dict("records") == [
        {
            "source": "data.parquet",
            "line": 4,
            "column": "temp",
            "value": "",
            "reason": "empty value",
        }
    ]
    assert result.info.extra["format"] == "parquet"
    assert_canonical(result)
    assert_accounting(result)


def test_parquet_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    pd.DataFrame({"machine": ["a"], "temp": [1.0]}).to_parquet(path)
    mapping = TabularMapping(
        path=str(path),
        entity_column="machine",
        feature_columns=["temp"],
        label_column="label",
        positive_values=[1],
    )
    error = load_error(mapping)
    assert str(error).startswith("data.parquet, column 'label': missing column(s) ['label']")


# ----------------------------------------------------------------------------------------------
# Structural problems


def test_missing_column(csv_path: Path) -> None:
    error = load_error(mapping_for(csv_path, feature_columns=[*FEATURES, "humidity"]))
    assert str(error).startswith("telemetry.csv:1, column 'humidity': missing column(s)")


def test_extra_column(tmp_path: Path) -> None:
    rows = [row + ",x" for row in make_rows(1, 5)]
    path = write_csv(tmp_path / "telemetry.csv", rows, header=HEADER + ",operator")
    error = load_error(mapping_for(path))
    assert str(error).startswith("telemetry.csv:1, column 'operator': extra column(s)")
    assert "add them to ignore_columns or feature_columns" in str(error)
    result = load_tabular(mapping_for(path, ignore_columns=["operator"]))
    assert "operator" not in result.frame.columns


def test_duplicate_header(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["1,2,0"], header="temp,temp,label")
    mapping = mapping_for(path, entity_column=None, time_column=None, regime_column=None)
    error = load_error(replace(mapping, feature_columns=["temp"], label_column="label"))
    assert str(error).startswith("t.csv:1: duplicate column name(s) ['temp']")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.csv"
    path.write_text("")
    assert str(load_error(mapping_for(path))) == "telemetry.csv: file is empty (no header)"


def test_header_only(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "telemetry.csv", [])
    error = load_error(mapping_for(path))
    assert str(error) == "telemetry.csv:1: no data rows after the header"


def test_missing_data_file(tmp_path: Path) -> None:
    error = load_error(mapping_for(tmp_path / "nope.csv"))
    assert "nope.csv: file not found" in str(error)


def test_utf8_bom_gives_clean_names(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "telemetry.csv", make_rows(1, 5), encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    result = load_tabular(mapping_for(path))
    assert len(result.frame) == 5
    assert result.frame[MACHINE].iloc[0] == "M1"


def test_utf16_bom_loads(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "telemetry.csv", make_rows(2, 5), encoding="utf-16")
    assert path.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")
    result = load_tabular(mapping_for(path))
    assert len(result.frame) == 10 and result.rejects.empty


def test_invalid_utf8_names_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "telemetry.csv", make_rows(1, 5))
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"M1", b"M\xe91")
    path.write_bytes(b"\n".join(lines))
    error = load_error(mapping_for(path))
    assert str(error).startswith("telemetry.csv:4: cannot decode")
    assert error.line == 4


# ----------------------------------------------------------------------------------------------
# Row-level problems


def edit_cell(path: Path, line: int, column: str, value: str) -> None:
    lines = path.read_text().split("\n")
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines))


def test_non_numeric_value(csv_path: Path) -> None:
    edit_cell(csv_path, 6, "pressure", "high")
    error = load_error(mapping_for(csv_path), on_bad_rows="fail")
    assert str(error).startswith("telemetry.csv:6, column 'pressure': not a number")
    assert (error.source, error.line, error.column) == ("telemetry.csv", 6, "pressure")
    result = load_tabular(mapping_for(csv_path))
    assert result.rejects.to_dict("records") == [
        {
            "source": "telemetry.csv",
            "line": 6,
            "column": "pressure",
            "value": "high",
            "reason": "not a number",
        }
    ]
    assert len(result.frame) == 119
    assert_accounting(result)


def test_empty_value(csv_path: Path) -> None:
    edit_cell(csv_path, 9, "machine_id", "")
    error = load_error(mapping_for(csv_path), on_bad_rows="fail")
    assert str(error).startswith("telemetry.csv:9, column 'machine_id': empty value")
    result = load_tabular(mapping_for(csv_path))
    reject = result.rejects.iloc[0]
    assert (reject["line"], reject["column"], reject["reason"]) == (9, "machine_id", "empty value")
    assert_accounting(result)


def test_bad_time_value(csv_path: Path) -> None:
    edit_cell(csv_path, 3, "timestamp", "yesterday")
    result = load_tabular(mapping_for(csv_path))
    reject = result.rejects.iloc[0]
    assert (reject["line"], reject["column"], reject["value"]) == (3, "timestamp", "yesterday")
    assert reject["reason"] == "not a valid time value"
    assert_accounting(result)


def test_wrong_field_count(csv_path: Path) -> None:
    lines = csv_path.read_text().split("\n")
    lines[4] = lines[4].rsplit(",", 2)[0]  # line 5 loses two fields
    csv_path.write_text("\n".join(lines))
    error = load_error(mapping_for(csv_path), on_bad_rows="fail")
    assert str(error).startswith("telemetry.csv:5: expected 9 fields, found 7")
    result = load_tabular(mapping_for(csv_path))
    reject = result.rejects.iloc[0]
    assert (reject["line"], reject["column"]) == (5, "")
    assert reject["reason"] == "expected 9 fields, found 7"
    assert_accounting(result)


def test_several_problems_on_one_line_count_once(csv_path: Path) -> None:
    edit_cell(csv_path, 7, "pressure", "x")
    edit_cell(csv_path, 7, "vibration", "")
    result = load_tabular(mapping_for(csv_path), max_rejected_fraction=0.01)
    assert sorted(result.rejects["column"]) == ["pressure", "vibration"]
    assert result.rows_rejected == 1
    assert_accounting(result)


def test_duplicate_key(tmp_path: Path) -> None:
    rows = make_rows(2, 60)
    rows.insert(10, rows[3])  # exact duplicate of line 5 becomes line 12
    changed = rows[20].split(",")
    changed[1] = rows[7].split(",")[1]  # same machine and time as line 9, other values
    rows[20] = ",".join(changed)  # line 22
    path = write_csv(tmp_path / "telemetry.csv", rows)
    error = load_error(mapping_for(path), on_bad_rows="fail")
    assert str(error).startswith("telemetry.csv:12, column 'timestamp': duplicate key")
    assert "first seen on line 5" in str(error)
    result = load_tabular(mapping_for(path), max_rejected_fraction=0.05)
    got = result.rejects[["line", "column", "reason"]].to_dict("records")
    first, second = "2024-01-01 03:00:00", "2024-01-01 07:00:00"
    assert got == [
        {
            "line": 12,
            "column": "timestamp",
            "reason": f"duplicate key (machine M1, time {first}), first seen on line 5",
        },
        {
            "line": 22,
            "column": "timestamp",
            "reason": f"duplicate key (machine M1, time {second}), first seen on line 9",
        },
    ]
    assert result.rows_read == 121
    assert len(result.frame) == 119
    assert_accounting(result)


def test_too_many_rejects(csv_path: Path) -> None:
    edit_cell(csv_path, 4, "motor_current", "n/a")
    edit_cell(csv_path, 30, "motor_current", "n/a")
    error = load_error(mapping_for(csv_path))
    message = str(error)
    assert message.startswith("telemetry.csv:4, column 'motor_current': 2 of 120 rows rejected")
    assert "max_rejected_fraction=0.01" in message
    result = load_tabular(mapping_for(csv_path), max_rejected_fraction=0.02)
    assert list(result.rejects["line"]) == [4, 30]


# ----------------------------------------------------------------------------------------------
# Mapping files


def write_mapping(folder: Path, data: dict[str, object], suffix: str = ".yaml") -> Path:
    path = folder / f"mapping{suffix}"
    path.write_text(json.dumps(data))  # JSON is valid YAML
    return path


MINIMAL = {
    "path": "telemetry.csv",
    "feature_columns": ["temp"],
    "label_column": "label",
    "positive_values": [1],
}


def test_one_time_ordered_machine_needs_the_horizon(tmp_path: Path) -> None:
    """Its history is split by time, and only the mapping can say how far the label looks."""
    rows = [r.removeprefix("M1,") for r in make_rows(machines=1)]
    path = write_csv(tmp_path / "one.csv", rows, header=HEADER.removeprefix("machine_id,"))
    mapping = {"path": "one.csv", "time_column": "timestamp", "regime_column": "regime",
               "feature_columns": FEATURES, "label_column": "failure_within_h",
               "positive_values": [1]}  # fmt: skip
    with pytest.raises(
        DataValidationError, match=r"mapping\.yaml: one machine in time order .* needs 'horizon'"
    ):
        load_mapping(write_mapping(tmp_path, mapping))
    with pytest.raises(DataValidationError, match="needs 'horizon'"):
        load_tabular(mapping_for(path, entity_column=None))
    result = load_tabular(load_mapping(write_mapping(tmp_path, {**mapping, "horizon": 5})))
    assert result.info.horizon == 5 and result.info.ordered
    assert list(result.frame[MACHINE].unique()) == ["all"] and len(result.frame) == 40


def test_derived_columns_become_sensors_and_bad_results_are_quarantined(tmp_path: Path) -> None:
    rows = make_rows()
    cells = rows[6].split(",")
    cells[6] = "0"  # rotational_speed 0: temperature / speed is not finite on line 8
    rows[6] = ",".join(cells)
    path = write_csv(tmp_path / "t.csv", rows)
    derived = {"heat per turn": "temperature / rotational_speed", "double": "2 * `heat per turn`"}
    result = load_tabular(mapping_for(path, derived_columns=derived))
    assert result.info.sensors == (*FEATURES, "heat per turn", "double")
    assert result.info.derived == tuple(derived.items())
    [reject] = result.rejects.to_dict("records")
    assert (reject["line"], reject["column"]) == (8, "heat per turn")
    assert reject["reason"] == "temperature / rotational_speed is not a finite number"
    frame = result.frame
    np.testing.assert_allclose(
        frame["heat per turn"], frame["temperature"] / frame["rotational_speed"]
    )
    np.testing.assert_allclose(frame["double"], 2 * frame["heat per turn"])
    assert_canonical(result)
    assert_accounting(result)


@pytest.mark.parametrize(
    ("derived", "problem"),
    [
        ({"power": "torque * rotational_speed"}, "unknown column 'torque'"),
        ({"power": "rotational_speed *"}, "invalid expression"),
        ({"vibration": "2 * temperature"}, "named under several keys"),
        ({"cycle": "2 * temperature"}, "clashes with a canonical column name"),
    ],
)
def test_a_bad_derived_column_fails_the_mapping_naming_it(
    tmp_path: Path, derived: dict, problem: str
) -> None:
    data = {**MINIMAL, "feature_columns": FEATURES, "derived_columns": derived}
    with pytest.raises(DataValidationError, match=re.escape(problem)) as caught:
        load_mapping(write_mapping(tmp_path, data))
    assert caught.value.source.endswith("mapping.yaml")
    assert repr(next(iter(derived))) in str(caught.value)


def test_a_file_column_named_like_a_derived_one_is_refused(tmp_path: Path) -> None:
    rows = [f"{row},7.5" for row in make_rows()]
    path = write_csv(tmp_path / "t.csv", rows, header=HEADER + ",power")
    error = load_error(mapping_for(path, derived_columns={"power": "2 * vibration"}))
    assert "column(s) ['power'] of the file are also declared in derived_columns" in str(error)
    assert error.column == "power" and error.line == 1


def test_mapping_unknown_key(tmp_path: Path) -> None:
    path = write_mapping(tmp_path, {**MINIMAL, "sensor_columns": ["temp"]})
    with pytest.raises(DataValidationError, match=r"mapping\.yaml: unknown key\(s\) \['sensor_"):
        load_mapping(path)


def test_mapping_missing_key(tmp_path: Path) -> None:
    data = {k: v for k, v in MINIMAL.items() if k != "label_column"}
    path = write_mapping(tmp_path, data, suffix=".json")
    with pytest.raises(DataValidationError, match=r"mapping\.json: missing required key\(s\)"):
        load_mapping(path)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("feature_columns", []),
        ("feature_columns", "temp"),
        ("positive_values", []),
        ("time_kind", "hours"),
        ("entity_column", 3),
        ("delimiter", ";;"),
        ("horizon", 0),
        ("horizon", "30"),
    ],
)
def test_mapping_wrong_type(tmp_path: Path, key: str, value: object) -> None:
    path = write_mapping(tmp_path, {**MINIMAL, key: value})
    with pytest.raises(DataValidationError, match=rf"mapping\.yaml: key '{key}'"):
        load_mapping(path)


def test_mapping_column_in_two_roles(tmp_path: Path) -> None:
    path = write_mapping(tmp_path, {**MINIMAL, "entity_column": "temp"})
    with pytest.raises(DataValidationError, match="column 'temp' is named under several keys"):
        load_mapping(path)


def test_mapping_yaml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text("path: a.csv\nfeature_columns: [temp\nlabel_column: x\n")
    with pytest.raises(DataValidationError, match=r"mapping\.yaml:\d+: invalid YAML"):
        load_mapping(path)


def test_mapping_relative_path_and_defaults(tmp_path: Path) -> None:
    mapping = load_mapping(write_mapping(tmp_path, MINIMAL))
    assert mapping.path == str(tmp_path / "telemetry.csv")
    assert mapping.format == "auto" and mapping.time_kind == "auto"
    assert mapping.ignore_columns == [] and mapping.delimiter == ","
