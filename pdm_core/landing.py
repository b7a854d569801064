"""The landing zone's file contract: writing micro-batches, naming them, reading them safely.

New telemetry arrives as CSV or Parquet files in a landing location. A producer (the MQTT
bridge, the simulator feed, a user's export job) writes a file under a temporary name that
starts with ``.`` and renames it when complete, so a reader never sees half a file
(:func:`write_batch` does exactly that).

Each file becomes one batch whose id, :func:`batch_id`, joins a readable stem and a content
hash: the same file offered twice gets the same id, so it is ingested once (a copy under
another name is another batch, whose readings ingestion recognises as already stored).

:func:`read_landed_file` checks a file against the contract of the fleet's telemetry: which
columns must be there (machine, cycle, every sensor and setting of the dataset), which may be
(timestamp, regime, time since maintenance, labels), and that no other column is. A file that
cannot be read or breaks the column contract raises :class:`LandedFileError`; bad rows are set
aside as rejects that name their line and column.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pdm_core import schema
from pdm_core.derived import evaluate_checked, measured_columns, parse_derived
from pdm_core.errors import DataValidationError
from pdm_core.loaders._text import clip

SUFFIXES = (".csv", ".parquet")
BATCH_ID = "batch_id"
"""Column of the landed table holding each row's batch (the Dagster partition key)."""

LANDED_LABEL = schema.LABEL
OPTIONAL_COLUMNS = (schema.TIMESTAMP, schema.REGIME, *schema.TRAILING_COLUMNS)
"""Columns a landed file may carry besides the required ones."""


class LandedFileError(DataValidationError):
    """A landed file as a whole cannot be ingested (unreadable, wrong columns, too many bad rows).

    The file goes to quarantine with this message as its recorded reason.
    """


def is_candidate(name: str) -> bool:
    """True for a complete landed file: a known suffix, not hidden or temporary."""
    return not name.startswith(".") and name.lower().endswith(SUFFIXES)


def batch_id(name: str, data: bytes) -> str:
    """The batch id of a file: its stem made partition-safe plus 12 hex digits of its SHA-256.

    Args:
        name: File name (a directory part is ignored).
        data: The file's bytes.

    Returns:
        E.g. ``"feed-000042-3fa1c09be2d4"``; only letters, digits, ``-`` and ``_``.
    """
    stem = Path(name).name
    for suffix in SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:80] or "batch"
    return f"{safe}-{hashlib.sha256(data).hexdigest()[:12]}"


def write_batch(frame: pd.DataFrame, directory: Path, name: str) -> Path:
    """Writes a micro-batch as Parquet atomically: temporary hidden file, fsync, rename.

    Args:
        frame: Readings in the landing contract's columns.
        directory: The landing zone's incoming directory (created if needed).
        name: File stem; ``.parquet`` is appended.

    Returns:
        Path of the complete file.
    """
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{name}.parquet"
    temporary = directory / f".{name}.parquet.part"
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    with open(temporary, "wb") as handle:
        handle.write(buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, final)
    return final


@dataclass(frozen=True)
class LandingContract:
    """Which columns a landed file must and may hold (from the fleet's dataset info)."""

    sensors: tuple[str, ...]
    settings: tuple[str, ...] = ()
    categoricals: tuple[str, ...] = ()
    sensor_ranges: dict[str, tuple[float, float]] | None = None
    derived: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_info(cls, info: schema.DatasetInfo) -> LandingContract:
        """The contract of data shaped like ``info`` (a source's dataset info)."""
        ranges = info.extra.get("sensor_ranges") or {}
        return cls(
            sensors=tuple(info.sensors),
            settings=tuple(info.settings),
            categoricals=tuple(info.categoricals),
            sensor_ranges={k: (float(v[0]), float(v[1])) for k, v in ranges.items()},
            derived=tuple(info.derived),
        )

    @property
    def measured(self) -> tuple[str, ...]:
        """The sensors a file carries (derived ones are computed on landing, never sent)."""
        return tuple(measured_columns(self.sensors, self.derived))

    @property
    def required(self) -> tuple[str, ...]:
        """Columns every file must have."""
        return (schema.MACHINE, schema.CYCLE, *self.settings, *self.measured, *self.categoricals)

    @property
    def numeric(self) -> tuple[str, ...]:
        """Numeric measurement columns (settings then sensors)."""
        return (*self.settings, *self.sensors)

    def table_columns(self) -> list[str]:
        """Columns of the landed table, in order (batch id first)."""
        return [
            BATCH_ID,
            *schema.LEADING_COLUMNS,
            *self.numeric,
            *self.categoricals,
            *schema.TRAILING_COLUMNS,
        ]


@dataclass
class LandedBatch:
    """A landed file read against the contract.

    Attributes:
        frame: Good rows in the landed table's columns (labels NaN where unknown).
        rejects: Bad rows, columns :data:`pdm_core.schema.REJECT_COLUMNS`.
        rows_read: Data rows in the file.
        duplicates_in_file: Rows that repeat an earlier row of the file exactly (kept once).
    """

    frame: pd.DataFrame
    rejects: pd.DataFrame
    rows_read: int
    duplicates_in_file: int


def _read_table(path: Path, data: bytes) -> tuple[pd.DataFrame, int]:
    """Reads CSV (all text) or Parquet; returns the table and the line number of row 0."""
    source = path.name
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(io.BytesIO(data)), 1
        text = data.decode("utf-8-sig")
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        return table, 2
    except UnicodeDecodeError as error:
        reason = f"not UTF-8 text ({error.reason} at byte {error.start})"
        raise LandedFileError(source, reason) from None
    except Exception as error:  # pandas/pyarrow raise many types for a corrupt file
        kind = "Parquet" if path.suffix.lower() == ".parquet" else "CSV"
        raise LandedFileError(source, f"unreadable {kind}: {error}".strip()) from error


def _numbers(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parses a column to float64; returns values and a mask of unparseable or missing cells."""
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
        return values, ~np.isfinite(values)
    text = raw.astype(str).str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    return values, ~np.isfinite(values)


def read_landed_file(
    path: Path,
    contract: LandingContract,
    data: bytes | None = None,
    max_rejected_fraction: float = 0.05,
) -> LandedBatch:
    """Reads one landed file and checks it against the contract.

    Args:
        path: The file (its name is used in every message).
        contract: Required and allowed columns.
        data: The file's bytes when already read (else read from ``path``).
        max_rejected_fraction: Largest share of bad rows before the whole file is refused.

    Returns:
        The good rows, the rejected rows and counts.

    Raises:
        LandedFileError: Unreadable or empty file, missing or unknown columns, or too many bad
            rows. The message names the file and, where it applies, the column.
    """
    source = path.name
    if data is None:
        data = path.read_bytes()
    table, first_line = _read_table(path, data)
    if table.empty:
        raise LandedFileError(source, "the file holds no data rows")
    table.columns = [str(c) for c in table.columns]
    _check_columns(source, list(table.columns), contract)
    problems = _RowProblems(table)
    frame = _typed_rows(table, contract, problems)
    bad_rows = problems.rows()
    exact = frame.duplicated(keep="first").to_numpy() & ~bad_rows
    bad_rows |= _conflicting_keys(frame, bad_rows | exact, problems)
    rejects = problems.rejects(source, first_line)
    n = len(table)
    rejected_rows = int(bad_rows.sum())
    if rejected_rows > max_rejected_fraction * n:
        first = rejects.iloc[0]
        raise LandedFileError(
            source,
            f"{rejected_rows} of {n} rows are bad (more than {max_rejected_fraction:.0%}); "
            f"first: {first['reason']} (value {first['value']!r})",
            line=int(first["line"]),
            column=str(first["column"]) or None,
        )
    keys = [schema.MACHINE, schema.CYCLE]
    good = frame[~bad_rows & ~exact].sort_values(keys, kind="stable").reset_index(drop=True)
    return LandedBatch(good, rejects, n, int(exact.sum()))


def _check_columns(source: str, columns: list[str], contract: LandingContract) -> None:
    """Refuses the file when a required column is missing or an unknown one is present."""
    missing = [c for c in contract.required if c not in columns]
    if missing:
        raise LandedFileError(source, f"missing required column(s) {missing}", column=missing[0])
    allowed = set(contract.required) | set(OPTIONAL_COLUMNS)
    unknown = [c for c in columns if c not in allowed]
    if unknown:
        raise LandedFileError(
            source,
            f"unknown column(s) {unknown}; a landed file may hold {sorted(allowed)}",
            column=unknown[0],
        )


class _RowProblems:
    """Every broken rule of a file's rows: row index, column, value and reason."""

    def __init__(self, table: pd.DataFrame) -> None:
        self.table = table
        self.found: list[tuple[int, str, object, str]] = []

    def flag(
        self, mask: np.ndarray, column: str, reason: str, values: np.ndarray | None = None
    ) -> None:
        """Records ``reason`` for each row where ``mask`` holds, with the row's raw value.

        ``values`` stands in for a column the file does not hold (a derived one).
        """
        rows = np.flatnonzero(mask)
        if not rows.size:
            return
        shown = self.table[column].to_numpy() if values is None else values
        self.found += [(int(i), column, shown[i], reason) for i in rows]

    def rows(self) -> np.ndarray:
        """Which rows broke at least one rule."""
        bad = np.zeros(len(self.table), dtype=bool)
        bad[[i for i, _, _, _ in self.found]] = True
        return bad

    def rejects(self, source: str, first_line: int) -> pd.DataFrame:
        """The problems as reject rows, in file order, each naming its line."""
        return pd.DataFrame(
            [(source, i + first_line, column, clip(value), reason)
             for i, column, value, reason in sorted(self.found, key=lambda p: p[0])],
            columns=list(schema.REJECT_COLUMNS),
        )  # fmt: skip


def _typed_rows(
    table: pd.DataFrame, contract: LandingContract, problems: _RowProblems
) -> pd.DataFrame:
    """The file's rows in the warehouse's types; each value that breaks a rule is flagged."""
    flag = problems.flag
    columns = set(table.columns)
    machines = table[schema.MACHINE].astype(str).str.strip()
    flag((machines == "").to_numpy() | table[schema.MACHINE].isna().to_numpy(),
         schema.MACHINE, "empty machine id")  # fmt: skip
    cycles, bad = _numbers(table[schema.CYCLE])
    bad |= ~bad & ((cycles != np.round(cycles)) | (cycles < 0))
    flag(bad, schema.CYCLE, "cycle must be a non-negative integer")
    sensors: dict[str, object] = {}
    ranges = contract.sensor_ranges or {}
    for column in (*contract.settings, *contract.measured):
        values, bad = _numbers(table[column])
        flag(bad, column, "not a finite number")
        if column in ranges:
            low, high = ranges[column]
            outside = ~bad & ((values < low) | (values > high))
            flag(outside, column, f"outside the plausible range [{low}, {high}]")
        sensors[column] = values
    if contract.derived:
        derived = parse_derived(contract.derived, contract.measured)
        values, broken = evaluate_checked(derived, sensors)
        for column in derived:
            reason = f"{column.expression} is not a finite number"
            flag(broken[column.name], column.name, reason, values[column.name])
        sensors.update(values)
        sensors = {c: sensors[c] for c in contract.numeric}  # the table's column order
    optional = {}
    for column in (schema.TIME_SINCE_MAINTENANCE, schema.RUL, schema.LABEL):
        if column in columns:
            raw = table[column]
            values, bad = _numbers(raw)
            blank = _blank(raw)
            flag(bad & ~blank, column, "not a number")
            values[blank] = np.nan
            optional[column] = values
        else:
            optional[column] = np.full(len(table), np.nan)
    label = optional[schema.LABEL]
    flag(np.isfinite(label) & ~np.isin(label, (0.0, 1.0)), schema.LABEL, "label must be 0 or 1")
    timestamps = pd.Series(pd.NaT, index=table.index, dtype="datetime64[ns]")
    if schema.TIMESTAMP in columns:
        raw = table[schema.TIMESTAMP]
        parsed = pd.to_datetime(raw, errors="coerce", utc=True).dt.tz_localize(None)
        flag(parsed.isna().to_numpy() & ~_blank(raw), schema.TIMESTAMP, "not a date/time")
        timestamps = parsed.astype("datetime64[ns]")
    return pd.DataFrame(
        {
            schema.MACHINE: machines,
            schema.CYCLE: np.where(np.isfinite(cycles), cycles, -1).astype(np.int64),
            schema.TIMESTAMP: timestamps,
            schema.REGIME: _text(table, schema.REGIME, schema.NO_REGIME),
            **sensors,
            **{c: table[c].astype(str).str.strip() for c in contract.categoricals},
            schema.TIME_SINCE_MAINTENANCE: optional[schema.TIME_SINCE_MAINTENANCE],
            schema.RUL: optional[schema.RUL],
            schema.LABEL: label,
            schema.FAILURE_MODE: _text(table, schema.FAILURE_MODE, schema.UNKNOWN_MODE),
        }
    )


def _conflicting_keys(
    frame: pd.DataFrame, excluded: np.ndarray, problems: _RowProblems
) -> np.ndarray:
    """Rows sharing machine and cycle with another row of other values (both are rejected).

    An exact repeat of a row is not a conflict (it is kept once and counted by the caller);
    ``excluded`` rows (already bad, or exact repeats) take no part.
    """
    keys = [schema.MACHINE, schema.CYCLE]
    key_dup = frame.duplicated(subset=keys, keep=False).to_numpy() & ~excluded
    conflicting = np.zeros(len(frame), dtype=bool)
    if key_dup.any():
        distinct = frame[key_dup].drop_duplicates()
        counts = distinct.groupby(keys).size()
        clashing = counts[counts > 1].index
        conflicting = key_dup & pd.MultiIndex.from_frame(frame[keys]).isin(clashing)
        reason = "same machine and cycle as another row with other values"
        for i in np.flatnonzero(conflicting):
            problems.found.append((int(i), schema.CYCLE, frame[schema.CYCLE].iloc[i], reason))
    return conflicting


def _blank(raw: pd.Series) -> np.ndarray:
    """Missing or whitespace-only cells."""
    return raw.isna().to_numpy() | (raw.astype(str).str.strip() == "").to_numpy()


def _text(table: pd.DataFrame, column: str, default: str) -> pd.Series:
    if column not in table.columns:
        return pd.Series(default, index=table.index, dtype=object)
    text = table[column].astype(str).str.strip()
    return text.where((text != "") & table[column].notna(), default)


def split_against_existing(
    batch: pd.DataFrame, existing: pd.DataFrame, numeric: tuple[str, ...]
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Separates a batch's readings that were already ingested from earlier batches.

    Args:
        batch: Good rows of the new batch.
        existing: Already-ingested rows with the same keys (machine, cycle) and the numeric
            columns plus ``batch_id``; may be empty.
        numeric: Measurement columns compared to tell a redelivery from a conflict.

    Returns:
        ``(new_rows, conflicts, redelivered)``: rows not seen before; rows whose key was seen
        with different values (to quarantine, with the earlier batch named); and the number of
        exact redeliveries (counted, not stored again).
    """
    keys = [schema.MACHINE, schema.CYCLE]
    if existing.empty:
        return batch, batch.iloc[0:0].assign(previous_batch=pd.Series(dtype=object)), 0
    merged = batch.reset_index(drop=True).merge(
        existing[[*keys, *numeric, BATCH_ID]]
        .rename(columns={BATCH_ID: "previous_batch"})
        .drop_duplicates(subset=keys),
        on=keys, how="left", suffixes=("", "__seen"), indicator=True,
    )  # fmt: skip
    seen = (merged["_merge"] == "both").to_numpy()
    same = np.ones(len(merged), dtype=bool)
    for column in numeric:
        a = merged[column].to_numpy(dtype=np.float64)
        b = merged[f"{column}__seen"].to_numpy(dtype=np.float64)
        same &= np.isclose(a, b, rtol=1e-9, atol=1e-12)
    new_rows = batch.reset_index(drop=True)[~seen]
    conflicts = merged[seen & ~same][[*batch.columns, "previous_batch"]]
    redelivered = int((seen & same).sum())
    return new_rows.reset_index(drop=True), conflicts.reset_index(drop=True), redelivered
