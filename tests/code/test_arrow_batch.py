"""The Arrow form of ``/predict_batch``: every rule, and the same windows as the JSON form."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from bento_service.arrow_batch import (
    FILE,
    STREAM,
    BatchRuleError,
    arrow_from_frame,
    batch_from_table,
    read_batch,
    read_table,
)
from bento_service.convert import arrays_from_windows, window_from_frame
from bento_service.schemas import MachineWindow, WindowContract, set_contract
from pdm_core.features import fit_feature_state, latest_window_features
from pdm_core.simulator import SimulatorConfig, dataset_info, simulate

LENGTH = 30


@pytest.fixture(scope="module")
def fleet() -> tuple[pd.DataFrame, WindowContract, object]:
    config = SimulatorConfig(n_machines=6, n_steps=300, seed=11)
    telemetry = simulate(config)
    state = fit_feature_state(telemetry, dataset_info(config))
    return telemetry, WindowContract.of(state), state


def recent(telemetry: pd.DataFrame, machines: list[str], rows: int = 40) -> pd.DataFrame:
    """Each machine's last ``rows`` readings, machines in the given order."""
    return pd.concat([telemetry[telemetry["machine_id"] == m].tail(rows) for m in machines])


def accepted(contract: WindowContract) -> list[str]:
    """The canonical columns this model's Arrow batch takes (the simulator's fleet)."""
    return ["machine_id", "cycle", *contract.sensors, "regime", "time_since_maintenance"]


def table(frame: pd.DataFrame, contract: WindowContract) -> pa.Table:
    return read_table(arrow_from_frame(frame, contract))


def test_the_arrow_batch_gives_the_json_form_s_features(fleet) -> None:
    telemetry, contract, state = fleet
    machines = sorted(telemetry["machine_id"].unique())[::-1]  # not sorted: request order
    frame = recent(telemetry, machines)
    batch = read_batch(arrow_from_frame(frame, contract), STREAM, contract)
    assert batch.machine_ids == machines and batch.readings == len(frame)
    set_contract(contract)
    try:
        windows = [
            MachineWindow.model_validate(
                window_from_frame(frame[frame["machine_id"] == m], contract)
            )
            for m in machines
        ]
    finally:
        set_contract(None)
    expected = latest_window_features(arrays_from_windows(windows, contract), state)
    got = latest_window_features(batch.arrays, state)
    np.testing.assert_array_equal(got, expected)


def test_the_file_format_and_plain_strings_read_the_same(fleet) -> None:
    telemetry, contract, state = fleet
    frame = recent(telemetry, ["M001", "M002"])
    plain = pa.Table.from_pandas(
        frame[accepted(contract)].astype({"machine_id": str, "regime": str}), preserve_index=False
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, plain.schema) as writer:
        for chunk in plain.to_batches(max_chunksize=17):  # several record batches
            writer.write_batch(chunk)
    from_file = read_batch(sink.getvalue().to_pybytes(), FILE, contract)
    from_stream = read_batch(arrow_from_frame(frame, contract), STREAM, contract)
    assert from_file.machine_ids == from_stream.machine_ids == ["M001", "M002"]
    np.testing.assert_array_equal(
        latest_window_features(from_file.arrays, state),
        latest_window_features(from_stream.arrays, state),
    )


def edit(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def apply(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame.iloc[row, frame.columns.get_loc(column)] = value
        return frame

    return apply


CASES: list[tuple[str, Callable[[pd.DataFrame], pd.DataFrame], str, list]] = [
    # pandas' NaN becomes Arrow's null in Table.from_pandas: rejected as a missing value
    ("nan sensor", edit("vibration", 45, np.nan), "missing_value", ["body", "vibration", 45]),
    ("inf sensor", edit("pressure", 3, np.inf), "finite_number", ["body", "pressure", 3]),
    ("huge value", edit("temperature", 7, 1e13), "value_too_large", ["body", "temperature", 7]),
    ("repeated cycle", lambda f: edit("cycle", 50, f["cycle"].iloc[49])(f), "duplicate_time",
     ["body", "cycle", 50]),
    ("cycle goes back", lambda f: edit("cycle", 50, f["cycle"].iloc[48] - 5)(f), "unsorted",
     ["body", "cycle", 50]),
    ("negative maintenance age", edit("time_since_maintenance", 12, -1.0), "greater_than_equal",
     ["body", "time_since_maintenance", 12]),
    ("machine split in two runs", lambda f: pd.concat([f.iloc[40:60], f.iloc[:40], f.iloc[60:]]),
     "duplicate_machine", ["body", "machine_id", 60]),
    ("too few readings", lambda f: f.drop(f.index[40:65]), "window_too_short",
     ["body", "machine_id", 40]),
    ("unknown column", lambda f: f.assign(colour="red"), "unknown_column", ["body", "colour"]),
    ("missing sensor", lambda f: f.drop(columns="motor_current"), "missing_sensor",
     ["body", "motor_current"]),
    ("no machine id", lambda f: f.drop(columns="machine_id"), "missing_column",
     ["body", "machine_id"]),
    ("no cycle", lambda f: f.drop(columns="cycle"), "ordering_key", ["body"]),
    ("no maintenance age", lambda f: f.drop(columns="time_since_maintenance"),
     "missing_time_since_maintenance", ["body", "time_since_maintenance"]),
    ("no regime", lambda f: f.drop(columns="regime"), "missing_regime", ["body", "regime"]),
    ("sensor as text", lambda f: f.astype({"vibration": str}), "wrong_type",
     ["body", "vibration"]),
    ("cycle as float", lambda f: f.astype({"cycle": float}), "wrong_type", ["body", "cycle"]),
    ("empty", lambda f: f.iloc[:0], "empty_batch", ["body"]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "change", "rule", "loc"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_names_the_column_and_row(fleet, case, change, rule, loc) -> None:
    telemetry, contract, _ = fleet
    base = recent(telemetry, ["M000", "M001", "M002"])[accepted(contract)]
    frame = change(base.reset_index(drop=True))
    data = pa.Table.from_pandas(frame, preserve_index=False)
    with pytest.raises(BatchRuleError) as caught:
        batch_from_table(data, contract)
    assert (caught.value.rule, caught.value.loc) == (rule, loc), caught.value
    if len(loc) == 3 and rule not in ("duplicate_machine", "window_too_short"):
        machine = frame["machine_id"].iloc[loc[2]]
        assert f"machine '{machine}'" in caught.value.msg


@pytest.mark.parametrize(("value", "rule"), [(None, "missing_value"), (np.nan, "finite_number")])
def test_nulls_and_nans_are_named_by_column_and_row(fleet, value, rule) -> None:
    telemetry, contract, _ = fleet
    data = table(recent(telemetry, ["M003"]), contract)
    values = data.column("vibration").to_numpy().astype(object)
    values[33] = value
    column = pa.array(values, type=pa.float64(), from_pandas=False)
    data = data.set_column(data.column_names.index("vibration"), "vibration", column)
    with pytest.raises(BatchRuleError) as caught:
        batch_from_table(data, contract)
    assert (caught.value.rule, caught.value.loc) == (rule, ["body", "vibration", 33])


def test_limits_on_machines_and_readings(fleet) -> None:
    telemetry, contract, _ = fleet
    data = table(recent(telemetry, ["M000", "M001", "M002"]), contract)
    with pytest.raises(BatchRuleError, match="3 machines, at most 2") as caught:
        batch_from_table(data, contract, max_machines=2)
    assert caught.value.rule == "too_many_machines"
    with pytest.raises(BatchRuleError) as caught:
        batch_from_table(data, contract, max_readings=39)
    assert caught.value.rule == "too_many_readings"
    assert len(batch_from_table(data, contract, max_machines=3).machine_ids) == 3


def test_a_column_given_twice(fleet) -> None:
    telemetry, contract, _ = fleet
    data = table(recent(telemetry, ["M001"]), contract)
    data = data.append_column("vibration", data.column("vibration"))
    with pytest.raises(BatchRuleError) as caught:
        batch_from_table(data, contract)
    assert (caught.value.rule, caught.value.loc) == ("duplicate_column", ["body", "vibration"])


def test_a_body_that_is_not_arrow(fleet) -> None:
    _, contract, _ = fleet
    for body in (b"", b"{}", b"\xff" * 64):
        with pytest.raises(BatchRuleError) as caught:
            read_batch(body, STREAM, contract)
        assert caught.value.rule == "invalid_arrow"
    with pytest.raises(BatchRuleError, match="Arrow IPC file"):
        read_batch(b"ARROW1", FILE, contract)


def test_timestamps_order_the_readings_when_there_is_no_cycle(fleet) -> None:
    telemetry, contract, _ = fleet
    frame = recent(telemetry, ["M004"]).drop(columns="cycle")
    frame["timestamp"] = pd.date_range("2026-01-01", periods=len(frame), freq="h", tz="UTC")
    columns = ["timestamp" if c == "cycle" else c for c in accepted(contract)]
    data = pa.Table.from_pandas(frame[columns], preserve_index=False)
    batch = batch_from_table(data, contract)
    assert batch.machine_ids == ["M004"]
    swapped = frame.iloc[[*range(10), 11, 10, *range(12, len(frame))]]
    with pytest.raises(BatchRuleError) as caught:
        batch_from_table(pa.Table.from_pandas(swapped[data.column_names], preserve_index=False),
                         contract)  # fmt: skip
    assert (caught.value.rule, caught.value.loc) == ("unsorted", ["body", "timestamp", 11])


def test_simulator_telemetry_has_the_columns_the_form_names() -> None:
    """The form's column names are the canonical telemetry schema's."""
    columns = set(simulate(SimulatorConfig(n_machines=2, n_steps=5, seed=1)).columns)
    assert {"machine_id", "cycle", "timestamp", "regime", "time_since_maintenance"} <= columns


def test_random_tables_give_a_batch_or_a_named_rule(fleet) -> None:
    """Never another exception (that would be an HTTP 500): 300 seeded random corruptions."""
    telemetry, contract, _ = fleet
    base = recent(telemetry, ["M000", "M001", "M002"])[accepted(contract)].reset_index(drop=True)
    rng = np.random.default_rng(7)
    outcomes: dict[str, int] = {}
    for _ in range(300):
        frame = base.copy()
        for _ in range(int(rng.integers(1, 4))):
            column = str(rng.choice(frame.columns)) if len(frame.columns) else "cycle"
            action = rng.integers(0, 7)
            if action == 0 and len(frame):
                frame = frame.iloc[rng.permutation(len(frame))[: int(rng.integers(0, len(frame)))]]
            elif action == 1 and column in frame:
                frame = frame.drop(columns=column)
            elif action == 2 and column in frame and len(frame):
                frame[column] = frame[column].astype(object)
                frame.iloc[int(rng.integers(len(frame))), frame.columns.get_loc(column)] = None
            elif action == 3 and column in frame:
                frame[column] = frame[column].astype(str)
            elif action == 4 and column in frame and len(frame):
                frame[column] = rng.choice([np.inf, -1e300, 0.0, -5.0], len(frame))
            elif action == 5:
                frame[f"extra{rng.integers(3)}"] = 1.0
            elif action == 6 and len(frame):
                frame = pd.concat([frame, frame.iloc[: int(rng.integers(1, 5))]])
        try:
            data = pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError):
            continue  # pandas could not make a table of it: nothing reaches the service
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, data.schema) as writer:
            writer.write_table(data)
        try:
            read_batch(sink.getvalue().to_pybytes(), STREAM, contract)
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except BatchRuleError as error:
            outcomes[error.rule] = outcomes.get(error.rule, 0) + 1
    assert sum(outcomes.values()) >= 250 and len(outcomes) >= 6, outcomes


RACE = """
import sys, threading
from bento_service.arrow_batch import STREAM, load_pyarrow, read_table
assert "pyarrow" not in sys.modules
body = open(sys.argv[1], "rb").read()
barrier, errors, rows = threading.Barrier(2), [], []
def warm():  # what the service's model loader does after readiness
    barrier.wait()
    try:
        load_pyarrow()
    except Exception as error:
        errors.append(repr(error))
def request():  # the first Arrow batch, meanwhile
    barrier.wait()
    try:
        rows.append(read_table(body, STREAM).num_rows)
    except Exception as error:
        errors.append(repr(error))
threads = [threading.Thread(target=warm), threading.Thread(target=request)]
for t in threads: t.start()
for t in threads: t.join()
print(errors, rows)
assert not errors and rows, (errors, rows)
"""


def test_pyarrow_imported_by_two_threads_at_once(fleet, tmp_path) -> None:
    """The service's pyarrow warm-up and the first Arrow batch, in two threads at once.

    pyarrow's package and ``ipc`` module import each other: the model loader's former
    ``import pyarrow.ipc`` racing the first request's ``import pyarrow`` failed both (that
    request was answered 500); both now go through :func:`load_pyarrow`.
    """
    import subprocess
    import sys

    telemetry, contract, _ = fleet
    path = tmp_path / "batch.arrow"
    path.write_bytes(arrow_from_frame(recent(telemetry, ["M001"]), contract))
    for _ in range(2):  # a fresh interpreter each time: the import happens once per process
        done = subprocess.run(
            [sys.executable, "-c", RACE, str(path)], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
