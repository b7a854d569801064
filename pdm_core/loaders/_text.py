"""Helpers shared by the loaders: decoding, value parsing and the rejected-rows policy.

Row-level problems (a bad value, a short line, a duplicate key) are collected as
:class:`Reject` records. A :class:`RejectLog` applies the caller's policy to them: raise at the
first one (``"fail"``), or keep them aside as a rejects frame (``"quarantine"``) as long as they
stay below ``max_rejected_fraction`` of the rows read from that file.
"""

from __future__ import annotations

import codecs
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, get_args

import numpy as np
import pandas as pd

from pdm_core.errors import DataValidationError
from pdm_core.schema import REJECT_COLUMNS, empty_rejects

BadRowPolicy = Literal["quarantine", "fail"]

MAX_RAW_CHARS = 200
"""Raw values stored in a rejects frame are cut to this many characters."""

# Longest first: the UTF-32 LE mark starts with the UTF-16 LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


class Reject(NamedTuple):
    """One row-level problem.

    Attributes:
        line: 1-based physical line (1-based row number for Parquet).
        column: Offending column, ``""`` when the whole line is wrong.
        value: Raw value (or raw line), cut to :data:`MAX_RAW_CHARS`.
        reason: What is wrong, in words.
    """

    line: int
    column: str
    value: str
    reason: str


def clip(value: object) -> str:
    """Returns ``str(value)`` cut to :data:`MAX_RAW_CHARS` characters."""
    text = str(value)
    if len(text) <= MAX_RAW_CHARS:
        return text
    return text[: MAX_RAW_CHARS - 3] + "..."


# ----------------------------------------------------------------------------------------------
# Reading and decoding


def read_text(path: Path, source: str) -> str:
    """Reads a text file, detecting a byte-order mark.

    Args:
        path: File to read.
        source: Name used in error messages.

    Returns:
        The decoded text.

    Raises:
        DataValidationError: The file is missing, is not a file, or has undecodable bytes.
    """
    return decode_bytes(read_bytes(path), source)


def read_bytes(path: Path) -> bytes:
    """Reads a file's bytes, raising :class:`DataValidationError` when it is missing.

    Args:
        path: File to read.

    Returns:
        The file content.
    """
    require_file(path)
    return path.read_bytes()


def require_file(path: Path) -> None:
    """Raises :class:`DataValidationError` unless ``path`` is an existing regular file.

    Args:
        path: File that must exist.
    """
    if not path.exists():
        raise DataValidationError(str(path), "file not found")
    if not path.is_file():
        raise DataValidationError(str(path), "not a regular file")


def decode_bytes(data: bytes, source: str) -> str:
    """Decodes file content: UTF-8/16/32 when a byte-order mark says so, strict UTF-8 otherwise.

    The byte-order mark itself is dropped, so the first header name never starts with a
    U+FEFF character.

    Args:
        data: Raw file content.
        source: Name used in error messages.

    Returns:
        The decoded text.

    Raises:
        DataValidationError: Undecodable bytes; the message names the 1-based line holding the
            first bad byte.
    """
    encoding, body = "utf-8", data
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding, body = name, data[len(bom) :]
            break
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as error:
        line = _line_of_offset(body, error.start, encoding)
        raise DataValidationError(
            source,
            f"cannot decode bytes {error.object[error.start : error.end]!r} as {encoding}: "
            f"{error.reason}",
            line=line,
        ) from None


def _line_of_offset(body: bytes, offset: int, encoding: str) -> int:
    """Returns the 1-based line holding byte ``offset`` of ``body`` in ``encoding``."""
    unit = 4 if encoding.startswith("utf-32") else 2 if encoding.startswith("utf-16") else 1
    prefix = body[: offset - offset % unit].decode(encoding, errors="replace")
    return prefix.count("\n") + 1


# ----------------------------------------------------------------------------------------------
# Value parsing


def parse_floats(raw: pd.Series) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Parses a column of text (or already numeric) values as finite float64.

    Args:
        raw: Values; ``object`` strings from a text file or a typed column from Parquet.

    Returns:
        ``(values, problems)``: float64 values (NaN where bad) and ``(position, reason)`` for
        each empty, non-numeric or non-finite value.
    """
    if _is_numeric(raw):
        values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        text = as_text(raw)
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    return values, [(int(i), _float_problem(raw.iat[i])) for i in bad]


def _is_numeric(raw: pd.Series) -> bool:
    """True for numeric or boolean Series (not strings or objects)."""
    return pd.api.types.is_numeric_dtype(raw.dtype) or pd.api.types.is_bool_dtype(raw.dtype)


def _float_problem(value: object) -> str:
    """Says why ``value`` is not a finite number."""
    if is_missing(value) or not str(value).strip():
        return "empty value"
    try:
        number = float(str(value).strip())
    except ValueError:
        return "not a number"
    return "not a number" if math.isnan(number) else "not a finite number"


def parse_texts(raw: pd.Series) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Turns a column into stripped strings, flagging empty values.

    Args:
        raw: Values of any dtype.

    Returns:
        ``(values, problems)``: an object array of stripped strings and ``(position,
        "empty value")`` for each missing or blank one.
    """
    values = as_text(raw).to_numpy(dtype=object)
    bad = np.flatnonzero(values == "")
    return values, [(int(i), "empty value") for i in bad]


def as_text(raw: pd.Series) -> pd.Series:
    """Returns the values as stripped strings, ``""`` for missing ones (index reset)."""
    missing = raw.isna().to_numpy()
    text = pd.Series([str(v).strip() for v in raw.to_numpy(dtype=object)], dtype=object)
    text[missing] = ""
    return text


def is_missing(value: object) -> bool:
    """True for None, NaN and NaT."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


# ----------------------------------------------------------------------------------------------
# Duplicate keys


def duplicate_problems(
    keys: pd.DataFrame, lines: np.ndarray, describe: str
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Finds rows whose key already appeared on an earlier row.

    Args:
        keys: Key columns, one row per data row, in file order.
        lines: Line number of each row.
        describe: How to name the key in reasons, formatted with the key columns as fields,
            e.g. ``"unit {unit}, cycle {cycle}"``.

    Returns:
        ``(mask, problems)``: True for each later occurrence, and ``(position, reason)`` for it;
        the reason names the line of the first occurrence.
    """
    mask = keys.duplicated(keep="first").to_numpy()
    if not mask.any():
        return mask, []
    first_line = (
        pd.Series(lines, index=keys.index)
        .groupby([keys[c] for c in keys.columns])
        .transform("first")
    ).to_numpy()
    problems = []
    for position in np.flatnonzero(mask):
        key = describe.format(**keys.iloc[position].to_dict())
        problems.append(
            (int(position), f"duplicate key ({key}), first seen on line {first_line[position]}")
        )
    return mask, problems


# ----------------------------------------------------------------------------------------------
# Reject policy


@dataclass(frozen=True)
class RejectPolicy:
    """What to do with row-level problems.

    Attributes:
        on_bad_rows: ``"quarantine"`` keeps bad rows aside; ``"fail"`` raises at the first one.
        max_rejected_fraction: In quarantine mode, the largest tolerated share of a file's rows
            that may be rejected.
    """

    on_bad_rows: BadRowPolicy = "quarantine"
    max_rejected_fraction: float = 0.01

    def __post_init__(self) -> None:
        if self.on_bad_rows not in get_args(BadRowPolicy):
            raise ValueError(
                f"on_bad_rows must be one of {get_args(BadRowPolicy)}, got {self.on_bad_rows!r}"
            )
        fraction = self.max_rejected_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise ValueError(f"max_rejected_fraction must be a number, got {fraction!r}")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"max_rejected_fraction must be within [0, 1], got {fraction}")


@dataclass
class RejectLog:
    """Collects rejected rows across the files of one load, applying a :class:`RejectPolicy`."""

    policy: RejectPolicy
    records: list[tuple[str, Reject]] = field(default_factory=list)

    def record(self, source: str, rejects: list[Reject], rows_read: int) -> None:
        """Applies the policy to one file's problems.

        Args:
            source: File name, stored in the ``source`` column.
            rejects: Problems found in that file, in any order.
            rows_read: Data rows read from that file.

        Raises:
            DataValidationError: With ``"fail"``, for the first problem (by line); with
                ``"quarantine"``, when the share of rejected rows exceeds the limit.
        """
        if not rejects:
            return
        ordered = sorted(rejects, key=lambda r: r.line)
        first = ordered[0]
        column = first.column or None
        if self.policy.on_bad_rows == "fail":
            raise DataValidationError(
                source, f"{first.reason} (value {first.value!r})", line=first.line, column=column
            )
        rejected = len({r.line for r in ordered})
        limit = self.policy.max_rejected_fraction
        if rejected > limit * rows_read:
            raise DataValidationError(
                source,
                f"{rejected} of {rows_read} rows rejected ({rejected / rows_read:.2%}), more "
                f"than max_rejected_fraction={limit}; first rejected row: {first.reason} "
                f"(value {first.value!r})",
                line=first.line,
                column=column,
            )
        self.records.extend((source, r) for r in ordered)

    def frame(self) -> pd.DataFrame:
        """Returns the quarantined rows as a frame with columns :data:`REJECT_COLUMNS`."""
        if not self.records:
            return empty_rejects()
        rows = [(source, *reject) for source, reject in self.records]
        frame = pd.DataFrame(rows, columns=list(REJECT_COLUMNS))
        return frame.astype({"source": object, "line": "int64", "column": object})


def problems_to_rejects(
    problems: list[tuple[int, str]], column: str, raw: pd.Series, lines: np.ndarray
) -> list[Reject]:
    """Turns ``(position, reason)`` pairs for one column into :class:`Reject` records.

    Args:
        problems: Positions (0-based, into ``raw``) and reasons.
        column: Column name.
        raw: The column's raw values, for the ``value`` field.
        lines: Line number of each position.

    Returns:
        One :class:`Reject` per problem.
    """
    return [
        Reject(int(lines[i]), column, "" if is_missing(raw.iat[i]) else clip(raw.iat[i]), why)
        for i, why in problems
    ]
