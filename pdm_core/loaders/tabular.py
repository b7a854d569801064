"""Loader for a user's own tabular telemetry (CSV or Parquet), described by a mapping.

The mapping (:class:`TabularMapping`, usually read from YAML with :func:`load_mapping`) says
which column holds the machine, the time, the numeric features, the label, and so on. Every
column of the file must be named in the mapping, if only in ``ignore_columns``, so that a new
column in an export never goes unnoticed.

Line numbers in errors and rejects are physical lines of the CSV file (the header is line 1;
a quoted value spanning lines is reported on the line where its record starts). For Parquet
files, "line" is the 1-based row number.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import pydantic
import yaml
from pydantic import AfterValidator, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from pdm_core.derived import (
    DerivedColumn,
    DerivedColumnError,
    evaluate_checked,
    parse_derived,
)
from pdm_core.errors import DataValidationError
from pdm_core.loaders._text import (
    BadRowPolicy,
    Reject,
    RejectLog,
    RejectPolicy,
    as_text,
    clip,
    duplicate_problems,
    parse_floats,
    parse_texts,
    problems_to_rejects,
    read_text,
    require_file,
)
from pdm_core.schema import (
    CYCLE,
    FAILURE_MODE,
    LABEL,
    MACHINE,
    NO_REGIME,
    NON_MEASUREMENT_COLUMNS,
    REGIME,
    RUL,
    SOURCE_SPLIT,
    TIME_SINCE_MAINTENANCE,
    TIMESTAMP,
    UNKNOWN_MODE,
    DatasetInfo,
    LoadResult,
)

FileFormat = Literal["csv", "parquet", "auto"]
TimeKind = Literal["cycle", "timestamp", "auto"]

NO_ENTITY = "all"
"""Machine id given to every row when the mapping has no entity column."""

_CSV_SUFFIXES = (".csv", ".txt", ".tsv")
_PARQUET_SUFFIXES = (".parquet", ".pq")


def _distinct(names: list[str]) -> list[str]:
    if duplicated := sorted(name for name, n in Counter(names).items() if n > 1):
        raise ValueError(f"column name(s) {duplicated} listed twice")
    return names


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a non-empty string")
    return value


def _one_character(value: str) -> str:
    if len(value) != 1 or value in "\r\n\"'":
        raise ValueError("expected a single character other than a quote or newline")
    return value


Name = Annotated[StrictStr, AfterValidator(_not_blank)]
"""A column name: a string that is not blank."""
Names = Annotated[list[Name], AfterValidator(_distinct)]
Delimiter = Annotated[StrictStr, AfterValidator(_one_character)]
Scalar = StrictStr | StrictInt | StrictFloat | StrictBool


@pydantic.dataclasses.dataclass(kw_only=True, config=pydantic.ConfigDict(extra="forbid"))
class TabularMapping:
    """How the columns of a CSV or Parquet file map onto the canonical frame.

    Attributes:
        path: Data file. :func:`load_mapping` resolves a relative path against the mapping
            file's folder; built in code, a relative path is taken from the working directory.
        format: ``"csv"``, ``"parquet"`` or ``"auto"`` (from the file suffix).
        name: Dataset name; the file stem when None.
        entity_column: Machine identifier column; None when the file holds a single machine.
        time_column: Time column; None when rows carry no time (then row order is used and the
            data is treated as unordered).
        time_kind: ``"cycle"`` (integer steps), ``"timestamp"`` (date/time values) or
            ``"auto"`` (integers mean cycles, anything else is parsed as timestamps).
        feature_columns: Numeric sensor columns; at least one.
        label_column: Column holding the failure label.
        positive_values: Label values meaning "fails within the horizon"; compared by their
            string form after stripping (and numerically when both sides are numbers).
        categorical_columns: Categorical feature columns, kept as strings.
        regime_column: Operating-regime column, if any.
        rul_column: Remaining-useful-life column, if any.
        failure_mode_column: Failure-mode column, if any.
        ignore_columns: Columns present in the file that are deliberately not used.
        delimiter: CSV field delimiter (one character).
        derived_columns: New sensor columns computed from the feature columns, name to
            expression (:mod:`pdm_core.derived`: arithmetic and numexpr functions; names bare
            or in backticks), e.g. ``power: "`Torque [Nm]` * `Rotational speed [rpm]`"``.
            Training, landed batches, live scoring and the service evaluate the same
            expression; a reading whose derived value is not finite is quarantined.
        horizon: How many readings ahead the label looks (a positive label means "fails within
            the next ``horizon`` readings"). Required for a single time-ordered machine: its
            history is split by time, and the readings between splits must be set aside for
            that long, or validation labels would look into the test period.
    """

    path: Name
    format: FileFormat = "auto"
    name: Name | None = None
    entity_column: Name | None = None
    time_column: Name | None = None
    time_kind: TimeKind = "auto"
    feature_columns: Annotated[Names, Field(min_length=1)]
    label_column: Name
    positive_values: Annotated[list[Scalar], Field(min_length=1)]
    categorical_columns: Names = field(default_factory=list)
    regime_column: Name | None = None
    rul_column: Name | None = None
    failure_mode_column: Name | None = None
    ignore_columns: Names = field(default_factory=list)
    delimiter: Delimiter = ","
    derived_columns: dict[Name, StrictStr] = field(default_factory=dict)
    horizon: Annotated[StrictInt, Field(ge=1)] | None = None

    def roles(self) -> list[tuple[str, str]]:
        """Returns ``(column, role)`` for every column the mapping names, ignored ones last."""
        single = {
            "entity_column": self.entity_column,
            "time_column": self.time_column,
            "label_column": self.label_column,
            "regime_column": self.regime_column,
            "rul_column": self.rul_column,
            "failure_mode_column": self.failure_mode_column,
        }
        pairs = [(column, role) for role, column in single.items() if column is not None]
        pairs += [(c, "feature_columns") for c in self.feature_columns]
        pairs += [(c, "categorical_columns") for c in self.categorical_columns]
        pairs += [(c, "ignore_columns") for c in self.ignore_columns]
        pairs += [(c, "derived_columns") for c in self.derived_columns]
        return pairs

    @property
    def derived(self) -> tuple[tuple[str, str], ...]:
        """The derived columns as ``(name, expression)`` pairs, in declaration order."""
        return tuple(self.derived_columns.items())

    def used_columns(self) -> list[str]:
        """Returns the columns the loader reads (every named file column except ignored ones)."""
        unread = ("ignore_columns", "derived_columns")
        return [column for column, role in self.roles() if role not in unread]


# ----------------------------------------------------------------------------------------------
# Mapping files


def load_mapping(path: str | Path) -> TabularMapping:
    """Reads a mapping from a YAML (or JSON, by ``.json`` suffix) file.

    Args:
        path: Mapping file. A relative ``path`` inside it is resolved against its folder.

    Returns:
        The validated mapping.

    Raises:
        DataValidationError: Unreadable file, unknown keys, missing required keys, values of
            the wrong type, or a column given two roles; the message names the file and key.
    """
    mapping_path = Path(path)
    source = str(mapping_path)
    data = _parse_mapping_text(read_text(mapping_path, source), mapping_path.suffix, source)
    if not isinstance(data, dict):
        raise DataValidationError(source, "a mapping file must hold a mapping of keys to values")
    mapping = mapping_from_dict(data, source)
    if not Path(mapping.path).is_absolute():
        mapping = replace(mapping, path=str(mapping_path.parent / mapping.path))
    return mapping


def mapping_from_dict(data: dict[str, Any], source: str) -> TabularMapping:
    """The mapping that ``data`` describes, with every key's type and every role checked.

    Raises:
        DataValidationError: Unknown keys, missing required keys, the first value of the wrong
            type (naming its key), or a column given two roles.
    """
    known = [f.name for f in fields(TabularMapping)]
    try:
        mapping = TabularMapping(**data)
    except pydantic.ValidationError as error:
        problems = error.errors()
        unknown = [str(p["loc"][0]) for p in problems if p["type"] == "unexpected_keyword_argument"]
        if unknown:
            raise DataValidationError(
                source, f"unknown key(s) {unknown}; valid keys: {', '.join(known)}"
            ) from None
        missing = [str(p["loc"][0]) for p in problems if p["type"] == "missing"]
        if missing:
            raise DataValidationError(source, f"missing required key(s) {missing}") from None
        first = problems[0]
        key, problem = str(first["loc"][0]), first["msg"].removeprefix("Value error, ")
        given = data.get(key)
        raise DataValidationError(source, f"key '{key}': {problem}, got {given!r}") from None
    check_mapping(mapping, source)
    return mapping


def _parse_mapping_text(text: str, suffix: str, source: str) -> Any:
    """Parses JSON (``.json``) or YAML text, naming the line of a syntax error."""
    if suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise DataValidationError(source, f"invalid JSON: {error.msg}", error.lineno) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = None if mark is None else mark.line + 1
        raise DataValidationError(source, f"invalid YAML: {error}", line) from None


def check_mapping_roles(mapping: TabularMapping, source: str) -> None:
    """Checks that no column plays two roles and no output column clashes with a canonical one.

    Args:
        mapping: Mapping to check.
        source: Name used in error messages (the mapping file).

    Raises:
        DataValidationError: Naming the offending column and keys.
    """
    roles: dict[str, list[str]] = {}
    for column, role in mapping.roles():
        roles.setdefault(column, []).append(role)
    for column, names in roles.items():
        if len(names) > 1:
            raise DataValidationError(
                source, f"column '{column}' is named under several keys: {', '.join(names)}"
            )
    for column in (
        *mapping.feature_columns,
        *mapping.categorical_columns,
        *mapping.derived_columns,
    ):
        if column in NON_MEASUREMENT_COLUMNS:
            raise DataValidationError(
                source,
                f"feature/categorical column '{column}' clashes with a canonical column name; "
                f"reserved names: {', '.join(NON_MEASUREMENT_COLUMNS)}",
            )


def check_mapping(mapping: TabularMapping, source: str) -> None:
    """Every rule a mapping must keep beyond its keys' types (roles, shape, derived columns).

    Raises:
        DataValidationError: Naming the file and the offending key or column.
    """
    check_mapping_roles(mapping, source)
    check_mapping_shape(mapping, source)
    derived_columns(mapping, source)


def derived_columns(mapping: TabularMapping, source: str) -> tuple[DerivedColumn, ...]:
    """The mapping's derived columns, compiled; they may read feature columns and earlier ones.

    Raises:
        DataValidationError: An invalid expression, naming the derived column.
    """
    try:
        return parse_derived(mapping.derived, mapping.feature_columns)
    except DerivedColumnError as error:
        problem = str(error).removeprefix(f"derived column '{error.column}': ")
        raise DataValidationError(
            source, f"derived_columns: {problem}", column=error.column
        ) from None


def check_mapping_shape(mapping: TabularMapping, source: str) -> None:
    """Checks that the mapping says what its shape of data needs to be split without leaking.

    A single machine in time order can only be split by time, with the label horizon set aside
    between splits (:mod:`pdm_core.split`); the file cannot tell the horizon, so the mapping
    must.

    Raises:
        DataValidationError: A time-ordered single machine without ``horizon``.
    """
    if mapping.entity_column is None and mapping.time_column is not None and not mapping.horizon:
        raise DataValidationError(
            source,
            "one machine in time order (time_column set, no entity_column) needs 'horizon': "
            "the readings the label looks ahead, set aside between the train, validation and "
            "test periods; add e.g. 'horizon: 30' to the mapping",
        )


# ----------------------------------------------------------------------------------------------
# Reading the data file


@dataclass
class _RawTable:
    """Rows read from a data file before any conversion.

    Attributes:
        source: File name, used in errors and rejects.
        columns: Raw values per column (strings for CSV, typed for Parquet), in file order.
        lines: Line (CSV) or row (Parquet) number of each row.
        rows_read: Data rows read, including rows already rejected.
        rejects: Rows rejected while reading (wrong number of fields).
        header_line: Line of the CSV header; None for Parquet.
    """

    source: str
    columns: dict[str, pd.Series]
    lines: np.ndarray
    rows_read: int
    rejects: list[Reject]
    header_line: int | None


def _resolve_format(mapping: TabularMapping, path: Path) -> str:
    """Returns ``"csv"`` or ``"parquet"``, using the suffix when the format is ``"auto"``."""
    if mapping.format != "auto":
        return mapping.format
    suffix = path.suffix.lower()
    if suffix in _CSV_SUFFIXES:
        return "csv"
    if suffix in _PARQUET_SUFFIXES:
        return "parquet"
    raise DataValidationError(
        path.name, f"cannot tell the format from suffix {suffix!r}; set format: csv or parquet"
    )


def _read_csv(path: Path, delimiter: str) -> _RawTable:
    """Reads a CSV file with the csv module, keeping physical line numbers."""
    source = path.name
    reader = csv.reader(io.StringIO(read_text(path, source), newline=""), delimiter=delimiter)
    header: list[str] | None = None
    header_line = 1
    rows: list[list[str]] = []
    lines: list[int] = []
    rejects: list[Reject] = []
    previous = 0
    try:
        for record in reader:
            start, previous = previous + 1, reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue
            if header is None:
                header, header_line = _check_header(record, source, start), start
            elif len(record) != len(header):
                raw = clip(delimiter.join(record))
                why = f"expected {len(header)} fields, found {len(record)}"
                rejects.append(Reject(start, "", raw, why))
            else:
                rows.append(record)
                lines.append(start)
    except csv.Error as error:
        raise DataValidationError(source, f"unreadable CSV: {error}", reader.line_num) from None
    if header is None:
        raise DataValidationError(source, "file is empty (no header)")
    rows_read = len(rows) + len(rejects)
    if rows_read == 0:
        raise DataValidationError(source, "no data rows after the header", header_line)
    cells = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    columns = {name: pd.Series(list(cells[i]), dtype=object) for i, name in enumerate(header)}
    line_array = np.array(lines, dtype=np.int64)
    return _RawTable(source, columns, line_array, rows_read, rejects, header_line)


def _check_header(record: list[str], source: str, line: int) -> list[str]:
    """Strips header names and rejects blank or repeated ones."""
    names = [name.strip() for name in record]
    if blank := [i + 1 for i, name in enumerate(names) if not name]:
        raise DataValidationError(source, f"blank column name at position(s) {blank}", line)
    if repeated := sorted(name for name, n in Counter(names).items() if n > 1):
        raise DataValidationError(source, f"duplicate column name(s) {repeated}", line)
    return names


def _read_parquet(path: Path) -> _RawTable:
    """Reads a Parquet file with pyarrow; row numbers (1-based) stand in for lines."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = path.name
    require_file(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise DataValidationError(source, f"unreadable Parquet file: {error}") from None
    names = [name.strip() for name in table.column_names]
    if repeated := sorted(name for name, n in Counter(names).items() if n > 1):
        raise DataValidationError(source, f"duplicate column name(s) {repeated}")
    if table.num_rows == 0:
        raise DataValidationError(source, "no data rows")
    columns = {name: table.column(i).to_pandas() for i, name in enumerate(names)}
    lines = np.arange(1, table.num_rows + 1, dtype=np.int64)
    return _RawTable(source, columns, lines, table.num_rows, [], None)


def _check_columns(raw: _RawTable, mapping: TabularMapping) -> None:
    """Raises when mapped columns are absent or file columns are not mapped."""
    if clash := [c for c in raw.columns if c in mapping.derived_columns]:
        raise DataValidationError(
            raw.source,
            f"column(s) {clash} of the file are also declared in derived_columns; rename the "
            "derived column or ignore the file's",
            raw.header_line,
            clash[0],
        )
    named = {column for column, _ in mapping.roles()}
    missing = [c for c in mapping.used_columns() if c not in raw.columns]
    if missing:
        raise DataValidationError(
            raw.source,
            f"missing column(s) {missing} named in the mapping; columns in the file: "
            f"{list(raw.columns)}",
            raw.header_line,
            missing[0] if len(missing) == 1 else None,
        )
    extra = [c for c in raw.columns if c not in named]
    if extra:
        raise DataValidationError(
            raw.source,
            f"extra column(s) {extra} not named in the mapping; add them to ignore_columns "
            f"or feature_columns",
            raw.header_line,
            extra[0] if len(extra) == 1 else None,
        )


# ----------------------------------------------------------------------------------------------
# Converting columns


@dataclass
class _Columns:
    """Converted values of the used columns plus the problems found on the way."""

    values: dict[str, np.ndarray] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    time_kind: str | None = None

    def add(
        self,
        raw: _RawTable,
        column: str,
        converted: tuple[np.ndarray, list[tuple[int, str]]],
    ) -> None:
        """Stores one converted column and turns its problems into rejects."""
        values, problems = converted
        self.values[column] = values
        self.rejects += problems_to_rejects(problems, column, raw.columns[column], raw.lines)

    def bad_rows(self, lines: np.ndarray) -> np.ndarray:
        """Returns a mask of the rows with at least one problem."""
        return np.isin(lines, [r.line for r in self.rejects])


def _convert(raw: _RawTable, mapping: TabularMapping) -> _Columns:
    """Converts every used column, collecting row-level problems."""
    out = _Columns()
    text_columns = [
        mapping.entity_column,
        mapping.label_column,
        mapping.regime_column,
        mapping.failure_mode_column,
        *mapping.categorical_columns,
    ]
    for column in text_columns:
        if column is not None:
            out.add(raw, column, parse_texts(raw.columns[column]))
    for column in (*mapping.feature_columns, mapping.rul_column):
        if column is not None:
            out.add(raw, column, parse_floats(raw.columns[column]))
    _derive(out, raw, derived_columns(mapping, "mapping"))
    if mapping.time_column is not None:
        series = raw.columns[mapping.time_column]
        out.time_kind = _resolve_time_kind(series, mapping.time_kind, raw.source, mapping)
        parse = _parse_cycles if out.time_kind == "cycle" else _parse_times
        out.add(raw, mapping.time_column, parse(series))
    return out


def _derive(out: _Columns, raw: _RawTable, derived: tuple[DerivedColumn, ...]) -> None:
    """Adds the derived columns; a non-finite value from finite inputs is a row problem."""
    values, broken = evaluate_checked(derived, out.values)
    for column in derived:
        why = f"{column.expression} is not a finite number"
        problems = [(int(i), why) for i in np.flatnonzero(broken[column.name])]
        shown = pd.Series(values[column.name], dtype=object)
        out.rejects += problems_to_rejects(problems, column.name, shown, raw.lines)
        out.values[column.name] = values[column.name]


def _resolve_time_kind(raw: pd.Series, kind: str, source: str, mapping: TabularMapping) -> str:
    """Returns ``"cycle"`` or ``"timestamp"`` for the time column.

    ``"auto"`` picks ``"cycle"`` for integer columns and for text columns whose non-empty values
    are mostly integers (the others are then rejected), ``"timestamp"`` otherwise.
    """
    numeric = pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw)
    if kind == "timestamp" and numeric:
        raise DataValidationError(
            source,
            "time_kind is 'timestamp' but the column is numeric; use time_kind: cycle",
            column=mapping.time_column,
        )
    if kind == "cycle" and pd.api.types.is_datetime64_any_dtype(raw.dtype):
        raise DataValidationError(
            source,
            "time_kind is 'cycle' but the column holds date/times; use time_kind: timestamp",
            column=mapping.time_column,
        )
    if kind != "auto":
        return kind
    if numeric:
        return "cycle"
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        return "timestamp"
    text = as_text(raw)
    text = text[text != ""]
    integers = text.str.fullmatch(r"[+-]?\d+").sum()
    return "cycle" if len(text) and integers * 2 >= len(text) else "timestamp"


def _parse_cycles(raw: pd.Series) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Parses integer time steps; non-integers are problems."""
    values, problems = parse_floats(raw)
    with np.errstate(invalid="ignore"):
        fractional = np.isfinite(values) & (values != np.floor(values))
    problems += [(int(i), "not an integer cycle") for i in np.flatnonzero(fractional)]
    return np.where(np.isfinite(values) & ~fractional, values, 0).astype(np.int64), problems


def _parse_times(raw: pd.Series) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Parses timestamps (ISO 8601 preferred; offsets are converted to naive UTC)."""
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        parsed = pd.Series(raw).reset_index(drop=True)
        if parsed.dt.tz is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        empty = parsed.isna().to_numpy()
    else:
        text = as_text(raw)
        parsed = _to_datetime(text)
        empty = (text == "").to_numpy()
    values = parsed.astype("datetime64[ns]").to_numpy()
    bad = np.isnat(values)
    problems = [
        (int(i), "empty value" if empty[i] else "not a valid time value")
        for i in np.flatnonzero(bad)
    ]
    return values, problems


def _to_datetime(text: pd.Series) -> pd.Series:
    """Parses text as ISO 8601, falling back to pandas' format inference when that fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
        filled = int((text != "").sum())
        if parsed.notna().sum() * 2 < filled:
            parsed = pd.to_datetime(text, errors="coerce", utc=True)
    return parsed.dt.tz_localize(None)


def _positive(labels: np.ndarray, positive_values: list[Any]) -> np.ndarray:
    """True where a label matches one of the positive values (as text, or as a number)."""
    wanted = [str(v).strip() for v in positive_values]
    text = pd.Series(labels, dtype=object)
    hit = text.isin(wanted).to_numpy()
    numbers = pd.to_numeric(pd.Series(wanted), errors="coerce").dropna()
    if not numbers.empty:
        hit |= pd.to_numeric(text, errors="coerce").isin(numbers.to_numpy()).to_numpy()
    return hit


# ----------------------------------------------------------------------------------------------
# Loading


def load_tabular(
    mapping: TabularMapping,
    *,
    on_bad_rows: BadRowPolicy = "quarantine",
    max_rejected_fraction: float = 0.01,
) -> LoadResult:
    """Loads a CSV or Parquet file described by ``mapping`` into the canonical frame.

    Args:
        mapping: Column roles and file location.
        on_bad_rows: ``"quarantine"`` sets bad rows aside in ``rejects``; ``"fail"`` raises at
            the first one.
        max_rejected_fraction: In quarantine mode, the largest share of the rows read that may
            be rejected before the load fails.

    Returns:
        The canonical frame, its :class:`DatasetInfo`, the rejects and the number of data rows
        read.

    Raises:
        ValueError: Invalid policy arguments.
        DataValidationError: An invalid mapping, a missing, empty or undecodable file, missing
            or extra columns, or (depending on the policy) bad rows.
    """
    policy = RejectPolicy(on_bad_rows, max_rejected_fraction)
    check_mapping(mapping, "mapping")  # types were checked when it was made
    path = Path(mapping.path)
    file_format = _resolve_format(mapping, path)
    raw = _read_csv(path, mapping.delimiter) if file_format == "csv" else _read_parquet(path)
    _check_columns(raw, mapping)
    columns = _convert(raw, mapping)
    keep = ~columns.bad_rows(raw.lines)
    keep &= _reject_duplicates(raw, mapping, columns, keep)
    log = RejectLog(policy)
    log.record(raw.source, raw.rejects + columns.rejects, raw.rows_read)
    frame = _assemble(columns, mapping, keep)
    info = mapping_info(
        mapping,
        format=file_format,
        time_kind=columns.time_kind,
        entity_column=mapping.entity_column,
        label_column=mapping.label_column,
    )
    return LoadResult(frame, info, log.frame(), raw.rows_read)


def mapping_info(mapping: TabularMapping, **extra: Any) -> DatasetInfo:
    """Column roles of the data a mapping describes, known without reading the data file.

    Args:
        mapping: The mapping.
        **extra: Details added to ``DatasetInfo.extra`` besides the path.
    """
    return DatasetInfo(
        name=mapping.name or Path(mapping.path).stem,
        sensors=(*mapping.feature_columns, *mapping.derived_columns),
        categoricals=tuple(mapping.categorical_columns),
        ordered=mapping.time_column is not None,
        has_rul=mapping.rul_column is not None,
        horizon=mapping.horizon,
        derived=mapping.derived,
        extra={"path": str(Path(mapping.path)), **extra},
    )


def _reject_duplicates(
    raw: _RawTable, mapping: TabularMapping, columns: _Columns, keep: np.ndarray
) -> np.ndarray:
    """Rejects later rows repeating an earlier (machine, time) key; returns the rows to keep."""
    if mapping.time_column is None:
        return np.ones(len(keep), dtype=bool)
    positions = np.flatnonzero(keep)
    keys = pd.DataFrame(
        {
            "machine": _machines(columns, mapping)[positions],
            "time": columns.values[mapping.time_column][positions],
        }
    )
    mask, problems = duplicate_problems(
        keys, raw.lines[positions], "machine {machine}, time {time}"
    )
    rejects = [(int(positions[i]), why) for i, why in problems]
    time_raw = raw.columns[mapping.time_column]
    columns.rejects += problems_to_rejects(rejects, mapping.time_column, time_raw, raw.lines)
    result = np.ones(len(keep), dtype=bool)
    result[positions[mask]] = False
    return result


def _machines(columns: _Columns, mapping: TabularMapping) -> np.ndarray:
    """Returns the machine id of every row."""
    if mapping.entity_column is None:
        n = len(next(iter(columns.values.values())))
        return np.full(n, NO_ENTITY, dtype=object)
    return columns.values[mapping.entity_column]


def _text_or(columns: _Columns, column: str | None, default: str, n: int) -> pd.Series:
    """Returns a text column, or ``default`` on every row when the mapping has none."""
    if column is None:
        return pd.Series([default] * n, dtype=object)
    return pd.Series(columns.values[column], dtype=object)


def _assemble(columns: _Columns, mapping: TabularMapping, keep: np.ndarray) -> pd.DataFrame:
    """Builds the canonical frame from the converted columns of the kept rows."""
    total = len(keep)
    machines = pd.Series(_machines(columns, mapping), dtype=object)
    time_column = mapping.time_column
    timestamps = np.full(total, np.datetime64("NaT"), dtype="datetime64[ns]")
    if columns.time_kind == "timestamp":
        timestamps = columns.values[time_column]
    data: dict[str, Any] = {
        MACHINE: machines,
        CYCLE: np.zeros(total, dtype=np.int64),
        TIMESTAMP: pd.Series(timestamps, dtype="datetime64[ns]"),
        REGIME: _text_or(columns, mapping.regime_column, NO_REGIME, total),
    }
    for column in (*mapping.feature_columns, *mapping.derived_columns):
        data[column] = columns.values[column]
    for column in mapping.categorical_columns:
        data[column] = pd.Series(columns.values[column], dtype=object)
    data[TIME_SINCE_MAINTENANCE] = np.full(total, np.nan)
    rul = mapping.rul_column
    data[RUL] = np.full(total, np.nan) if rul is None else columns.values[rul]
    labels = columns.values[mapping.label_column]
    data[LABEL] = _positive(labels, mapping.positive_values).astype(np.int8)
    data[FAILURE_MODE] = _text_or(columns, mapping.failure_mode_column, UNKNOWN_MODE, total)
    data[SOURCE_SPLIT] = pd.Series([""] * total, dtype=object)
    frame = pd.DataFrame(data)[keep].reset_index(drop=True)
    frame[CYCLE] = _cycles(frame, columns, time_column, keep)
    return frame.sort_values([MACHINE, CYCLE], kind="stable").reset_index(drop=True)


def _cycles(
    frame: pd.DataFrame, columns: _Columns, time_column: str | None, keep: np.ndarray
) -> np.ndarray:
    """Returns the cycle of each kept row: the value, the timestamp rank or the row order."""
    if columns.time_kind == "cycle":
        return columns.values[time_column][keep].astype(np.int64)
    groups = frame.groupby(MACHINE, sort=False)
    if columns.time_kind == "timestamp":
        return groups[TIMESTAMP].rank(method="first").to_numpy(dtype=np.int64)
    return (groups.cumcount() + 1).to_numpy(dtype=np.int64)
