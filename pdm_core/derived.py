"""Derived columns: sensors computed from other sensors by an expression the user declares.

A mapping may declare, for example, ``power: "`Torque [Nm]` * `Rotational speed [rpm]`"``. The
expression is evaluated by numexpr, an array-expression library with a fixed vocabulary
(arithmetic, comparisons, ``where``, ``sqrt``, ``log``, ``exp``, ``abs``, trigonometry): it
cannot call Python, read attributes or import, so a mapping file cannot run code. It needs only
numpy, so the service evaluates derived columns without pandas, Dagster or DuckDB. Names are
written bare when they are identifiers (``torque * speed``) and in backticks otherwise, as in
``pandas.eval``.

Training (the loader), landed batches (the landing zone), live scoring and the service all
evaluate the same declared expression through :func:`evaluate`; the feature code recomputes
derived columns from their inputs rather than trusting a stored copy.

This module must not import pandas or Dagster: the service imports it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_QUOTED = re.compile(r"`([^`]+)`")


class DerivedColumnError(ValueError):
    """A derived column's expression is invalid; ``column`` names the derived column."""

    def __init__(self, column: str, problem: str) -> None:
        self.column = column
        super().__init__(f"derived column '{column}': {problem}")


@dataclass(frozen=True)
class DerivedColumn:
    """One derived column.

    Attributes:
        name: The new column's name.
        expression: The declared expression (names bare or in backticks).
        inputs: The columns it reads (those in backticks first, then bare ones).
        program: The expression with every column replaced by a placeholder identifier.
    """

    name: str
    expression: str
    inputs: tuple[str, ...]
    program: str

    def evaluate(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """The column's values (float64) from its inputs' arrays (any equal shape)."""
        import numexpr

        local = {
            f"_c{i}": np.asarray(values[c], dtype=np.float64) for i, c in enumerate(self.inputs)
        }
        result = numexpr.evaluate(self.program, local_dict=local, global_dict={})
        shape = np.broadcast_shapes(*(v.shape for v in local.values())) if local else ()
        return np.broadcast_to(np.asarray(result, dtype=np.float64), shape).copy()


def _program(name: str, expression: str, known: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """Replaces column names by placeholders; returns the program and the columns it reads."""
    inputs: list[str] = []

    def placeholder(column: str) -> str:
        if column not in known:
            raise DerivedColumnError(
                name, f"unknown column '{column}'; it may use {', '.join(map(repr, known))}"
            )
        if column not in inputs:
            inputs.append(column)
        return f"_c{inputs.index(column)}"

    text = _QUOTED.sub(lambda m: placeholder(m.group(1)), expression)
    if "`" in text:
        raise DerivedColumnError(name, f"unbalanced backtick in {expression!r}")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        raise DerivedColumnError(name, f"invalid expression {expression!r}: {error.msg}") from None
    calls = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    bare = [
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and id(node) not in calls and not node.id.startswith("_c")
    ]
    for column in dict.fromkeys(bare):
        text = re.sub(rf"\b{re.escape(column)}\b", placeholder(column), text)
    return text, tuple(inputs)


def parse_derived(
    declared: Sequence[tuple[str, str]] | Mapping[str, str], columns: Sequence[str]
) -> tuple[DerivedColumn, ...]:
    """Checks declared derived columns and compiles them, in declaration order.

    Args:
        declared: ``(name, expression)`` pairs (or a mapping of them).
        columns: Columns an expression may read; each derived column may also read the
            derived columns declared before it.

    Raises:
        DerivedColumnError: A name that clashes with a column, an unknown column, a syntax
            error, or an expression numexpr refuses (naming the derived column).
    """
    import numexpr

    pairs = list(declared.items()) if isinstance(declared, Mapping) else list(declared)
    known = list(columns)
    parsed = []
    for name, expression in pairs:
        if name in known:
            raise DerivedColumnError(name, "the name is already a column")
        if not str(expression).strip():
            raise DerivedColumnError(name, "the expression is empty")
        program, inputs = _program(name, str(expression), known)
        if not inputs:
            raise DerivedColumnError(name, f"{expression!r} reads no column")
        sample = {f"_c{i}": np.ones(2) for i in range(len(inputs))}
        problem = numexpr.validate(program, local_dict=sample, global_dict={})
        if problem is not None:
            raise DerivedColumnError(name, f"invalid expression {expression!r}: {problem}")
        parsed.append(DerivedColumn(name, str(expression), inputs, program))
        known.append(name)
    return tuple(parsed)


def measured_columns(columns: Sequence[str], declared: Sequence[tuple[str, str]]) -> list[str]:
    """The columns that are not derived (what a reading carries), in their order."""
    names = {name for name, _ in declared}
    return [c for c in columns if c not in names]


def evaluate(
    derived: Sequence[DerivedColumn], values: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Every derived column's values, in order (a later one may read an earlier one)."""
    known = dict(values)
    out: dict[str, np.ndarray] = {}
    for column in derived:
        out[column.name] = known[column.name] = column.evaluate(known)
    return out


def evaluate_checked(
    derived: Sequence[DerivedColumn], values: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Derived values, and per derived column where its value is not finite though every input is.

    Rows with a bad input are not flagged again: their input's own check reports them.
    """
    with np.errstate(all="ignore"):
        out = evaluate(derived, values)
    known = {**values, **out}
    broken = {}
    for column in derived:
        finite_inputs = np.logical_and.reduce([np.isfinite(known[c]) for c in column.inputs])
        broken[column.name] = finite_inputs & ~np.isfinite(out[column.name])
    return out, broken


def raw_inputs(derived: Sequence[DerivedColumn], wanted: Sequence[str]) -> tuple[str, ...]:
    """The non-derived columns that ``wanted`` needs: itself where not derived, else inputs."""
    by_name = {d.name: d for d in derived}
    needed: list[str] = []

    def visit(column: str) -> None:
        if column in by_name:
            for source in by_name[column].inputs:
                visit(source)
        elif column not in needed:
            needed.append(column)

    for column in wanted:
        visit(column)
    return tuple(needed)
