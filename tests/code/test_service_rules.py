"""Request rules of the risk service, checked on the pydantic models (no server).

Each rule must reject with an error whose ``type`` names the rule and whose message names the
field; ``tests/test_service_http.py`` checks the same rules over HTTP.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from bento_service.convert import columns_from_window
from bento_service.schemas import FleetWindows, MachineWindow, WindowContract, set_contract

CONTRACT = WindowContract(
    sensors=("vibration", "temperature"),
    ignored_sensors=("humidity",),
    settings=(),
    needs_regime=False,
    needs_time_since_maintenance=True,
    categoricals=(),
    window_length=3,
)


@pytest.fixture(autouse=True)
def contract() -> Iterator[WindowContract]:
    set_contract(CONTRACT)
    yield CONTRACT
    set_contract(None)


def window(n: int = 3, machine: str = "m1") -> dict:
    return {
        "machine_id": machine,
        "readings": [
            {
                "cycle": i + 1,
                "sensors": {"vibration": 0.5 + i, "temperature": 70.0},
                "time_since_maintenance": float(i),
            }
            for i in range(n)
        ],
    }


def rejection(body: dict, model: type = MachineWindow) -> dict:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return caught.value.errors()[0]


def test_a_valid_window_passes() -> None:
    parsed = MachineWindow.model_validate(window())
    assert [r.cycle for r in parsed.readings] == [1, 2, 3]


def test_timestamps_can_order_readings() -> None:
    body = window()
    for i, reading in enumerate(body["readings"]):
        del reading["cycle"]
        reading["timestamp"] = f"2026-01-01T00:0{i}:00Z"
    assert MachineWindow.model_validate(body).readings[2].timestamp is not None


def test_ignored_sensors_are_accepted() -> None:
    body = window()
    body["readings"][0]["sensors"]["humidity"] = 40.0
    MachineWindow.model_validate(body)


@pytest.mark.parametrize(
    ("mutate", "rule", "field"),
    [
        (lambda b: b["readings"].__delitem__(slice(2, None)), "window_too_short", "readings"),
        (lambda b: b["readings"][1]["sensors"].pop("vibration"), "missing_sensor", "readings[1]"),
        (lambda b: b["readings"][2]["sensors"].update(oil=1.0), "unknown_sensor", "readings[2]"),
        (lambda b: b["readings"][1].update(cycle=1), "duplicate_time", "readings[1].cycle"),
        (lambda b: b["readings"][2].update(cycle=0), "unsorted", "readings[2].cycle"),
        (lambda b: b["readings"][0].pop("cycle"), "ordering_key", "readings[0]"),
        (
            lambda b: b["readings"][1].pop("time_since_maintenance"),
            "missing_time_since_maintenance",
            "readings[1].time_since_maintenance",
        ),
    ],
)
def test_model_rules_name_rule_and_field(mutate, rule: str, field: str) -> None:
    body = window(4)
    mutate(body)
    error = rejection(body)
    assert error["type"] == rule
    assert field in error["msg"]


@pytest.mark.parametrize(
    ("path", "value", "rule"),
    [
        (("readings", 0, "sensors", "vibration"), float("nan"), "finite_number"),
        (("readings", 0, "sensors", "vibration"), float("inf"), "finite_number"),
        (("readings", 0, "sensors", "vibration"), "hot", "float_parsing"),
        (("readings", 0, "sensors", "vibration"), 1e13, "less_than_equal"),
        (("readings", 0, "cycle"), "first", "int_parsing"),
        (("readings", 0, "cycle"), -1, "greater_than_equal"),
        (("machine_id",), "", "string_too_short"),
        (("readings", 0, "colour"), "red", "extra_forbidden"),
    ],
)
def test_type_rules_name_rule_and_location(path: tuple, value, rule: str) -> None:
    body = window()
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    error = rejection(body)
    assert error["type"] == rule
    assert tuple(error["loc"])[: len(path)] == path


def test_json_nan_is_rejected_as_not_finite() -> None:
    text = '{"machine_id": "m", "readings": [{"cycle": 1, "sensors": {"vibration": NaN}}]}'
    with pytest.raises(ValidationError) as caught:
        MachineWindow.model_validate_json(text)
    assert caught.value.errors()[0]["type"] == "finite_number"


def test_empty_and_oversized_windows_are_rejected() -> None:
    assert rejection({"machine_id": "m", "readings": []})["type"] == "too_short"
    big = window(3)
    big["readings"] = [copy.deepcopy(big["readings"][0]) for _ in range(1001)]
    assert rejection(big)["type"] == "too_long"


def test_batch_rejects_duplicate_machines_and_empty_batches() -> None:
    error = rejection({"machines": [window(machine="a"), window(machine="a")]}, FleetWindows)
    assert error["type"] == "duplicate_machine" and "machines[1]" in error["msg"]
    assert rejection({"machines": []}, FleetWindows)["type"] == "too_short"


def test_without_a_loaded_model_only_type_rules_apply() -> None:
    """Model rules wait for a model (the service answers 503 until then)."""
    set_contract(None)
    MachineWindow.model_validate(window(1))
    assert rejection({"machine_id": "m", "readings": [{"cycle": "x"}]})["type"] == "int_parsing"


def as_columns(body: dict) -> dict:
    return columns_from_window(body)


def test_the_columnar_form_passes_and_holds_the_same_readings() -> None:
    parsed = MachineWindow.model_validate(as_columns(window(4)))
    assert parsed.readings is None and parsed.columns is not None
    assert parsed.columns.cycle == [1, 2, 3, 4]
    assert parsed.columns.sensors["vibration"] == [0.5, 1.5, 2.5, 3.5]
    assert len(parsed.columns) == 4


@pytest.mark.parametrize(
    ("mutate", "rule", "field"),
    [
        (lambda c: c["sensors"]["vibration"].pop(), "ragged_columns", "columns.sensors.vibration"),
        (lambda c: c["cycle"].append(9), "ragged_columns", "columns.cycle"),
        (
            lambda c: [v.__delitem__(slice(2, None)) for v in _lists(c)],
            "window_too_short",
            "columns",
        ),
        (lambda c: c["sensors"].pop("vibration"), "missing_sensor", "columns.sensors"),
        (lambda c: c["sensors"].update(oil=[1.0] * 4), "unknown_sensor", "columns.sensors"),
        (lambda c: c["cycle"].__setitem__(2, 2), "duplicate_time", "columns.cycle[2]"),
        (lambda c: c["cycle"].__setitem__(3, 0), "unsorted", "columns.cycle[3]"),
        (lambda c: c.pop("cycle"), "ordering_key", "cycle or timestamp"),
        (
            lambda c: c.pop("time_since_maintenance"),
            "missing_time_since_maintenance",
            "columns.time_since_maintenance",
        ),
        (
            lambda c: c["time_since_maintenance"].__setitem__(2, None),
            "missing_time_since_maintenance",
            "columns.time_since_maintenance[2]",
        ),
    ],
)
def test_columnar_rules_name_rule_and_field(mutate, rule: str, field: str) -> None:
    body = as_columns(window(4))
    mutate(body["columns"])
    error = rejection(body)
    assert error["type"] == rule
    assert field in error["msg"]


def _lists(columns: dict) -> list[list]:
    out = [columns[k] for k in ("cycle", "time_since_maintenance") if k in columns]
    return out + list(columns["sensors"].values())


def test_columnar_type_rules_name_the_value() -> None:
    body = as_columns(window(3))
    body["columns"]["sensors"]["temperature"][1] = float("inf")
    error = rejection(body)
    assert error["type"] == "finite_number"
    assert tuple(error["loc"])[:4] == ("columns", "sensors", "temperature", 1)


def test_a_window_gives_readings_or_columns_not_both_nor_neither() -> None:
    both = {**window(3), "columns": as_columns(window(3))["columns"]}
    assert rejection(both)["type"] == "one_form"
    assert rejection({"machine_id": "m1"})["type"] == "one_form"


def test_timestamps_can_order_columns() -> None:
    body = as_columns(window(3))
    body["columns"].pop("cycle")
    body["columns"]["timestamp"] = [
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:01:00Z",
        "2026-01-01T00:01:00Z",
    ]
    error = rejection(body)
    assert error["type"] == "duplicate_time" and "columns.timestamp[2]" in error["msg"]
    body["columns"]["timestamp"][2] = "2026-01-01T00:02:00Z"
    MachineWindow.model_validate(body)


def test_settings_and_categories_the_model_needs_are_required_in_both_forms() -> None:
    set_contract(
        WindowContract(
            sensors=("vibration",), ignored_sensors=(), settings=("altitude",),
            needs_regime=False, needs_time_since_maintenance=False,
            categoricals=("model",), window_length=2,
        )
    )  # fmt: skip
    readings = [
        {"cycle": i, "sensors": {"vibration": 1.0}, "settings": {"altitude": 10.0},
         "categories": {"model": "pump-a"}}
        for i in (1, 2)
    ]  # fmt: skip
    body = {"machine_id": "m1", "readings": readings}
    MachineWindow.model_validate(body)
    MachineWindow.model_validate(as_columns(body))
    no_setting = copy.deepcopy(body)
    no_setting["readings"][1]["settings"] = {}
    error = rejection(no_setting)
    assert error["type"] == "missing_setting" and "readings[1].settings" in error["msg"]
    columns = as_columns(body)
    del columns["columns"]["settings"]
    error = rejection(columns)
    assert error["type"] == "missing_setting" and "columns.settings" in error["msg"]
    no_category = copy.deepcopy(body)
    no_category["readings"][0]["categories"] = {}
    error = rejection(no_category)
    assert error["type"] == "missing_category" and "readings[0].categories" in error["msg"]
    columns = as_columns(body)
    del columns["columns"]["categories"]
    error = rejection(columns)
    assert error["type"] == "missing_category" and "['model']" in error["msg"]
