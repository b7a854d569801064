"""The binary form of ``POST /predict_batch``: the fleet's readings as one Arrow IPC table.

A JSON batch spends more time parsing and validating text (about 40 us per 30-reading window)
than the model spends scoring it, so fleets that score thousands of machines per call can send
their readings the way they already hold them: a long table, one row per reading, with the
canonical telemetry columns (:mod:`pdm_core.schema`), as an Arrow IPC stream
(``application/vnd.apache.arrow.stream``) or file (``application/vnd.apache.arrow.file``):

* ``machine_id`` (string) and ``cycle`` (integer) or ``timestamp`` (Arrow timestamp);
* every sensor the model reads (any numeric type); sensors known from training but unused are
  accepted;
* where the model needs them: its operating settings, ``regime`` (string),
  ``time_since_maintenance`` (numeric) and categorical columns (string).

A machine's rows are contiguous and oldest first; predictions come back as the JSON of the
other form (``FleetPredictions``), machines in the order they first appear. The rules are those
of the JSON form (same ``type`` names where the rule is the same); each error's ``loc`` is
``["body", column, row]`` (row: 0-based in the table) and its message names the machine.
:func:`batch_from_table` does all of it with vectorised numpy over whole columns.

This module must not import Dagster or pandas: pyarrow imports pandas for ``Array.to_numpy``
and for Python values, so columns are read through their buffers (:func:`_values`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from bento_service.schemas import (
    ARROW_MEDIA_TYPES,
    ARROW_STREAM,
    MAX_BATCH,
    MAX_READINGS,
    MAX_VALUE,
    WindowContract,
)
from pdm_core import schema
from pdm_core.features import WindowArrays

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

STREAM, FILE = ARROW_STREAM, ARROW_MEDIA_TYPES[1]
_PYARROW_IMPORT = threading.Lock()


def load_pyarrow() -> ModuleType:
    """``pyarrow`` with ``pyarrow.ipc``, imported by one thread at a time.

    pyarrow's package and its ``ipc`` module import each other: a thread running ``import
    pyarrow.ipc`` while another runs ``import pyarrow`` made both fail with ImportError
    ("partially initialized module"). The service's model loader warms this import while the
    first Arrow batch may be arriving, so both can happen at once; every use of pyarrow in the
    service goes through here.
    """
    with _PYARROW_IMPORT:
        import pyarrow as pa
        import pyarrow.ipc
    return pa


class BatchRuleError(ValueError):
    """A broken request rule: HTTP 400 with ``{"type": rule, "loc": loc, "msg": msg}``."""

    def __init__(self, rule: str, loc: list[str | int], msg: str) -> None:
        super().__init__(f"{rule}: {msg}")
        self.rule, self.loc, self.msg = rule, loc, msg

    def detail(self) -> dict[str, Any]:
        """The error as one entry of the 400 body's ``detail`` list."""
        return {"type": self.rule, "loc": self.loc, "msg": self.msg}


@dataclass
class ArrowBatch:
    """A validated batch: machine ids (first-appearance order) and their windows' arrays."""

    machine_ids: list[str]
    arrays: WindowArrays
    readings: int


def read_table(body: bytes, media_type: str = STREAM) -> pa.Table:
    """Decodes an Arrow IPC stream or file.

    Raises:
        BatchRuleError: ``invalid_arrow`` when the body is not one.
    """
    pa = load_pyarrow()

    try:
        source = pa.py_buffer(body)
        reader = pa.ipc.open_file(source) if media_type == FILE else pa.ipc.open_stream(source)
        return reader.read_all()
    except (pa.ArrowException, OSError, ValueError) as error:
        kind = "file" if media_type == FILE else "stream"
        raise BatchRuleError(
            "invalid_arrow", ["body"], f"the body is not an Arrow IPC {kind}: {error}"
        ) from None


def read_batch(body: bytes, media_type: str, contract: WindowContract) -> ArrowBatch:
    """:func:`read_table` then :func:`batch_from_table`.

    Raises:
        BatchRuleError: The first rule broken; ``invalid_arrow`` also for a table pyarrow
            itself cannot process (an error of pyarrow's, never an HTTP 500).
    """
    pa = load_pyarrow()

    table = read_table(body, media_type)
    try:
        return batch_from_table(table, contract)
    except pa.ArrowException as error:
        raise BatchRuleError("invalid_arrow", ["body"], f"unreadable table: {error}") from None


def _values(array: pa.Array) -> np.ndarray:
    """A fixed-width numeric Arrow array's values, as a numpy view of its data buffer."""
    pa = load_pyarrow()

    kind = array.type
    code = "f" if pa.types.is_floating(kind) else "i" if pa.types.is_signed_integer(kind) else "u"
    dtype = np.dtype(f"{code}{kind.bit_width // 8}")
    return np.frombuffer(
        array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize
    )


def _first_null(array: pa.Array) -> int:
    """Row of the first null (the array has at least one)."""
    bits = np.frombuffer(array.buffers()[0], dtype=np.uint8)
    valid = np.unpackbits(bits, bitorder="little")[array.offset : array.offset + len(array)]
    return int(np.argmin(valid))


class _Table:
    """Column access with the errors of this form (wrong type, nulls, positions)."""

    def __init__(self, table: pa.Table) -> None:
        pa = load_pyarrow()

        self.pa = pa
        self.table = table.unify_dictionaries().combine_chunks()
        self.rows = self.table.num_rows
        self.machine_at: np.ndarray | None = None
        self.names: list[str] = []

    def where(self, row: int) -> str:
        """``row 12 (machine 'pump-17')`` for error messages."""
        if self.machine_at is None:
            return f"row {row}"
        return f"row {row} (machine '{self.names[self.machine_at[row]]}')"

    def _column(self, name: str) -> pa.Array:
        return self.table.column(name).chunk(0)  # one chunk: combined (called with rows > 0)

    def _no_nulls(self, name: str, rule: str = "missing_value") -> None:
        column = self._column(name)
        if column.null_count:
            row = _first_null(column)
            raise BatchRuleError(rule, ["body", name, row], f"{name} is null at {self.where(row)}")

    def _type_error(self, name: str, wanted: str) -> BatchRuleError:
        found = self.table.schema.field(name).type
        return BatchRuleError("wrong_type", ["body", name], f"{name} must be {wanted}, not {found}")

    def labels(self, name: str, rule: str = "missing_value") -> tuple[np.ndarray, list[str]]:
        """A string column as (codes per row, levels)."""
        pa = self.pa
        column = self._column(name)
        kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise self._type_error(name, "a string column")
        self._no_nulls(name, rule)
        if not pa.types.is_dictionary(column.type):
            column = column.dictionary_encode()
        codes = _values(column.indices).astype(np.intp)
        return codes, [str(v) for v in column.dictionary.to_pylist()]

    def numbers(self, name: str, rule: str = "missing_value") -> np.ndarray:
        """A numeric column as float64, checked finite and within :data:`MAX_VALUE`."""
        pa = self.pa
        column = self._column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            raise self._type_error(name, "a numeric column")
        self._no_nulls(name, rule)
        values = _values(column).astype(np.float64)
        self.reject_first(
            ~np.isfinite(values), "finite_number", name,
            lambda row: f"{name} is {values[row]} at {self.where(row)}: values must be finite",
        )  # fmt: skip
        self.reject_first(
            np.abs(values) > MAX_VALUE, "value_too_large", name,
            lambda row: f"{name} is {values[row]:g} at {self.where(row)}: at most {MAX_VALUE:g}",
        )  # fmt: skip
        return values

    @staticmethod
    def reject_first(bad: np.ndarray, rule: str, name: str, say: Callable[[int], str]) -> None:
        """Raises ``rule`` at the first row where ``bad`` holds (message ``say(row)``)."""
        if bad.any():
            row = int(np.argmax(bad))
            raise BatchRuleError(rule, ["body", name, row], say(row))

    def order_key(self) -> tuple[str, np.ndarray]:
        """``cycle`` (integers >= 0) or ``timestamp`` (nanoseconds), as int64 per row."""
        pa = self.pa
        given = [n for n in (schema.CYCLE, schema.TIMESTAMP) if n in self.table.column_names]
        if not given:
            raise BatchRuleError(
                "ordering_key", ["body"], "the table needs a cycle or timestamp column"
            )
        name = given[0]
        column = self._column(name)
        if name == schema.CYCLE and not pa.types.is_integer(column.type):
            raise self._type_error(name, "an integer column")
        if name == schema.TIMESTAMP and not pa.types.is_timestamp(column.type):
            raise self._type_error(name, "an Arrow timestamp column")
        self._no_nulls(name, "ordering_key")
        if name == schema.TIMESTAMP:
            column = column.cast(pa.timestamp("ns", column.type.tz)).cast(pa.int64())
        key = _values(column).astype(np.int64)
        if name == schema.CYCLE:
            self.reject_first(
                (key < 0) | (key > 2**53), "cycle_out_of_range", name,
                lambda row: f"cycle {key[row]} at {self.where(row)}: not in 0..2**53",
            )  # fmt: skip
        return name, key


def batch_from_table(
    table: pa.Table,
    contract: WindowContract,
    max_machines: int = MAX_BATCH,
    max_readings: int = MAX_READINGS,
) -> ArrowBatch:
    """Validates a long readings table and cuts each machine's latest window from it.

    Args:
        table: One row per reading (see the module docstring for the columns).
        contract: What the served model needs.
        max_machines: Most machines in one batch.
        max_readings: Most readings of one machine.

    Returns:
        The machines in first-appearance order and their last ``contract.window_length``
        readings as :class:`~pdm_core.features.WindowArrays`.

    Raises:
        BatchRuleError: The first rule the table breaks.
    """
    t, columns = _checked_columns(table, contract)
    codes, starts, counts = _machine_runs(t, contract, max_machines, max_readings)
    _check_order(t, codes)
    return _latest_windows(t, contract, columns, codes[starts], starts + counts)


def _checked_columns(table: pa.Table, contract: WindowContract) -> tuple[_Table, set[str]]:
    """The table with its column names, once no column is repeated, unknown or missing."""
    repeated = sorted({n for n in table.column_names if table.column_names.count(n) > 1})
    if repeated:
        raise BatchRuleError(
            "duplicate_column", ["body", repeated[0]], f"columns {repeated} appear more than once"
        )
    t = _Table(table)
    columns = set(t.table.column_names)
    if t.rows == 0:
        raise BatchRuleError("empty_batch", ["body"], "the table has no rows")
    if schema.MACHINE not in columns:
        raise BatchRuleError("missing_column", ["body", schema.MACHINE], "machine_id is required")
    known = {
        schema.MACHINE, schema.CYCLE, schema.TIMESTAMP, schema.REGIME,
        schema.TIME_SINCE_MAINTENANCE, *contract.known_sensors,
        *contract.settings, *contract.categoricals,
    }  # fmt: skip
    unknown = sorted(columns - known)
    if unknown:
        raise BatchRuleError(
            "unknown_column", ["body", unknown[0]],
            f"columns {unknown} are unknown to the model (known: {sorted(known)})",
        )  # fmt: skip
    missing = contract.first_missing(
        columns,
        columns,
        columns,
        schema.REGIME in columns,
        schema.TIME_SINCE_MAINTENANCE in columns,
    )
    if missing is not None:
        rule, absent = missing
        raise BatchRuleError(rule, ["body", absent[0]], f"the table lacks {absent}")
    return t, columns


def _machine_runs(
    t: _Table, contract: WindowContract, max_machines: int, max_readings: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's machine code, where each machine's rows start, and how many there are.

    Each machine's rows must be together, their number within the limits, and the batch must
    hold few enough machines.
    """
    codes, names = t.labels(schema.MACHINE)
    t.machine_at, t.names = codes, names
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    run_machine = codes[starts]
    if len(np.unique(run_machine)) != len(starts):
        seen = np.zeros(len(names), dtype=bool)
        for start, machine in zip(starts.tolist(), run_machine.tolist(), strict=True):
            if seen[machine]:
                raise BatchRuleError(
                    "duplicate_machine", ["body", schema.MACHINE, start],
                    f"machine '{names[machine]}' starts again at row {start}: "
                    "send each machine's rows together",
                )  # fmt: skip
            seen[machine] = True
    if len(starts) > max_machines:
        raise BatchRuleError(
            "too_many_machines", ["body", schema.MACHINE],
            f"{len(starts)} machines, at most {max_machines} per call (PDM_SERVE_MAX_BATCH)",
        )  # fmt: skip
    counts = np.diff(np.r_[starts, t.rows])
    for rule, bad, limit in (
        ("window_too_short", counts < contract.window_length, "at least"),
        ("too_many_readings", counts > max_readings, "at most"),
    ):
        if bad.any():
            i = int(np.argmax(bad))
            need = contract.window_length if rule == "window_too_short" else max_readings
            raise BatchRuleError(
                rule, ["body", schema.MACHINE, int(starts[i])],
                f"machine '{names[run_machine[i]]}' has {counts[i]} readings; "
                f"the model needs {limit} {need}",
            )  # fmt: skip
    return codes, starts, counts


def _check_order(t: _Table, codes: np.ndarray) -> None:
    """Each machine's readings oldest first, no reading repeated (``codes``: row -> machine)."""
    key_name, key = t.order_key()
    same_machine = codes[1:] == codes[:-1]
    steps = np.diff(key)
    oldest_first = "send each machine's readings oldest first"
    t.reject_first(
        np.r_[False, (steps == 0) & same_machine], "duplicate_time", key_name,
        lambda row: f"{key_name} at {t.where(row)} repeats the reading before it; {oldest_first}",
    )  # fmt: skip
    t.reject_first(
        np.r_[False, (steps < 0) & same_machine], "unsorted", key_name,
        lambda row: f"{key_name} at {t.where(row)} is earlier than the one before; {oldest_first}",
    )  # fmt: skip


def _latest_windows(
    t: _Table, contract: WindowContract, columns: set[str], machines: np.ndarray, ends: np.ndarray
) -> ArrowBatch:
    """Each machine's last ``contract.window_length`` readings, every value checked.

    ``machines`` are the machines' codes in batch order and ``ends`` where their rows end.
    """
    length = contract.window_length
    window = ends[:, None] - length + np.arange(length)
    last = ends - 1
    sensors = np.stack([t.numbers(s)[window] for s in contract.sensors])
    for name in sorted(columns & {*contract.ignored_sensors}):
        t.numbers(name)  # accepted, unused: still held to the value rules
    settings = (
        np.stack([t.numbers(s, "missing_setting")[window] for s in contract.settings])
        if contract.settings
        else None
    )
    regimes, levels = None, None
    if contract.needs_regime:
        regime_codes, regime_levels = t.labels(schema.REGIME, "missing_regime")
        regimes, levels = regime_codes[window], tuple(regime_levels)
    tsm = None
    if contract.needs_time_since_maintenance:
        values = t.numbers(schema.TIME_SINCE_MAINTENANCE, "missing_time_since_maintenance")
        t.reject_first(
            values < 0, "greater_than_equal", schema.TIME_SINCE_MAINTENANCE,
            lambda row: f"time_since_maintenance is {values[row]:g} at {t.where(row)}: at least 0",
        )  # fmt: skip
        tsm = values[last]
    categories = {}
    for column in contract.categoricals:
        category_codes, category_levels = t.labels(column, "missing_category")
        categories[column] = np.array(category_levels, dtype=object)[category_codes[last]]
    arrays = WindowArrays(
        sensors=sensors,
        regimes=regimes,
        regime_levels=levels,
        settings=settings,
        time_since_maintenance=tsm,
        categories=categories,
    )
    return ArrowBatch([t.names[m] for m in machines.tolist()], arrays, t.rows)


def arrow_from_frame(readings: pd.DataFrame, contract: WindowContract) -> bytes:
    """The Arrow IPC stream body of canonical rows (one or more machines), for clients.

    Keeps the columns the served model accepts, in the frame's row order (each machine's rows
    together, oldest first).
    """
    pa = load_pyarrow()

    keep = [
        c
        for c in (
            schema.MACHINE, schema.CYCLE, *contract.known_sensors,
            *contract.settings, *contract.categoricals,
        )
        if c in readings.columns
    ]  # fmt: skip
    if contract.needs_regime:
        keep.append(schema.REGIME)
    if contract.needs_time_since_maintenance:
        keep.append(schema.TIME_SINCE_MAINTENANCE)
    frame = readings[keep].copy()
    labels = [c for c in (schema.MACHINE, schema.REGIME, *contract.categoricals) if c in keep]
    for column in labels:
        frame[column] = frame[column].astype(str)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for column in labels:  # dictionary-encoded: a code per row instead of a string
        at = table.column_names.index(column)
        table = table.set_column(at, column, table.column(column).dictionary_encode())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
