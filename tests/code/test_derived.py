"""Derived columns: declared expressions, checked at load, evaluated by numexpr (no Python)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pdm_core.derived import (
    DerivedColumnError,
    evaluate,
    evaluate_checked,
    parse_derived,
    raw_inputs,
)

COLUMNS = ["Torque [Nm]", "Rotational speed [rpm]", "air", "process"]
VALUES = {
    "Torque [Nm]": np.array([40.0, 50.0, 0.0]),
    "Rotational speed [rpm]": np.array([1500.0, 1400.0, 1200.0]),
    "air": np.array([300.0, 301.0, np.nan]),
    "process": np.array([310.0, 309.0, 308.0]),
}


def test_backticked_and_bare_names_chained_in_declaration_order() -> None:
    derived = parse_derived(
        {
            "power": "`Torque [Nm]` * `Rotational speed [rpm]` * 2 * 3.141592653589793 / 60",
            "dT": "process - air",
            "overheats": "where(dT < 8.6, 1, 0)",
            "per_torque": "dT / `Torque [Nm]`",
        },
        COLUMNS,
    )
    assert [d.inputs for d in derived] == [
        ("Torque [Nm]", "Rotational speed [rpm]"), ("process", "air"), ("dT",),
        ("Torque [Nm]", "dT"),
    ]  # fmt: skip
    out = evaluate(derived, VALUES)
    np.testing.assert_allclose(out["power"], [40 * 1500 * np.pi / 30, 50 * 1400 * np.pi / 30, 0])
    np.testing.assert_array_equal(out["dT"], [10.0, 8.0, np.nan])
    np.testing.assert_array_equal(out["overheats"], [0.0, 1.0, 0.0])
    assert all(v.dtype == np.float64 for v in out.values())
    # The service's windows are 2-D (machines x readings): the same expression applies.
    grid = {c: np.tile(v, (2, 1)) for c, v in VALUES.items()}
    np.testing.assert_array_equal(evaluate(derived, grid)["dT"][1], out["dT"])
    assert raw_inputs(derived, ["overheats", "air", "power"]) == (
        "process", "air", "Torque [Nm]", "Rotational speed [rpm]",
    )  # fmt: skip


def test_non_finite_values_from_finite_inputs_are_flagged_once() -> None:
    derived = parse_derived(
        {"dT": "process - air", "per_torque": "process / `Torque [Nm]`"}, COLUMNS
    )
    out, broken = evaluate_checked(derived, VALUES)
    assert np.isinf(out["per_torque"][2])
    np.testing.assert_array_equal(broken["per_torque"], [False, False, True])
    # air is missing on row 2: its own check reports it, not the derived column's.
    np.testing.assert_array_equal(broken["dT"], [False, False, False])


@pytest.mark.parametrize(
    ("declared", "problem"),
    [
        ({"p": "torq * 2"}, "unknown column 'torq'"),
        ({"p": "`Torque [N]` * 2"}, "unknown column 'Torque [N]'"),
        ({"p": "`Torque [Nm]` *"}, "invalid expression"),
        ({"p": "`air"}, "unbalanced backtick"),
        ({"air": "process * 2"}, "the name is already a column"),
        ({"p": "1 + 2"}, "reads no column"),
        ({"p": "  "}, "the expression is empty"),
        ({"p": "air.__class__"}, "invalid expression"),
        ({"p": "__import__('os').getcwd()"}, "reads no column"),
        ({"p": "open(air)"}, "invalid expression"),
        ({"p": "air if process else 1"}, "invalid expression"),
        ({"q": "p * 2", "p": "air"}, "unknown column 'p'"),  # only earlier ones may be read
    ],
)
def test_bad_declarations_name_the_derived_column(declared: dict, problem: str) -> None:
    with pytest.raises(DerivedColumnError, match=re.escape(problem)) as caught:
        parse_derived(declared, COLUMNS)
    assert caught.value.column == next(iter(declared))
    assert str(caught.value).startswith(f"derived column '{caught.value.column}': ")
