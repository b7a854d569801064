"""Loader for the NASA C-MAPSS turbofan degradation data (FD001 to FD004).

Each subset ships three whitespace-separated files without a header: ``train_{subset}.txt``
and ``test_{subset}.txt`` (26 fields per line: unit, cycle, 3 settings, 21 sensors) and
``RUL_{subset}.txt`` (the true remaining useful life of each test unit at its last test cycle,
one value per line, line ``k`` for unit ``k``). Blank lines are ignored; line numbers in errors
and rejects are physical lines, the first line being line 1.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pdm_core.errors import DataValidationError
from pdm_core.loaders._text import (
    BadRowPolicy,
    Reject,
    RejectLog,
    RejectPolicy,
    clip,
    duplicate_problems,
    parse_floats,
    read_text,
)
from pdm_core.schema import (
    CYCLE,
    FAILURE_MODE,
    LABEL,
    MACHINE,
    REGIME,
    RUL,
    SOURCE_SPLIT,
    TIME_SINCE_MAINTENANCE,
    TIMESTAMP,
    UNKNOWN_MODE,
    DatasetInfo,
    LoadResult,
    regime_from_settings,
)

CMAPSS_SUBSETS: tuple[str, ...] = ("FD001", "FD002", "FD003", "FD004")
SETTINGS: tuple[str, ...] = tuple(f"setting_{i}" for i in range(1, 4))
SENSORS: tuple[str, ...] = tuple(f"sensor_{i}" for i in range(1, 22))
FIELDS: tuple[str, ...] = ("unit", CYCLE, *SETTINGS, *SENSORS)
REGIME_ROUNDING: tuple[int, ...] = (0, 2, 0)


@dataclass
class _Split:
    """Accepted rows of one C-MAPSS file.

    Attributes:
        units: Unit number of each row.
        values: float64 array, one column per name in :data:`FIELDS`.
        units_seen: Every valid unit number found in the file, rejected rows included.
        rows_read: Non-blank lines read.
    """

    units: np.ndarray
    values: np.ndarray
    units_seen: set[int]
    rows_read: int


def load_cmapss(
    directory: str | Path,
    subset: str = "FD001",
    horizon: int = 30,
    *,
    on_bad_rows: BadRowPolicy = "quarantine",
    max_rejected_fraction: float = 0.01,
    cycles_as_age: bool = False,
) -> LoadResult:
    """Loads one C-MAPSS subset (train and test engines) into the canonical frame.

    Train engines run to failure: their RUL is ``last cycle - cycle``. Test engines stop early:
    their RUL is ``last test cycle + RUL file value - cycle``. RUL is not capped.

    Args:
        directory: Folder holding ``train_{subset}.txt``, ``test_{subset}.txt`` and
            ``RUL_{subset}.txt``.
        subset: One of :data:`CMAPSS_SUBSETS`.
        horizon: ``failure_within_h`` is 1 where ``rul <= horizon``.
        on_bad_rows: ``"quarantine"`` sets bad lines aside in ``rejects``; ``"fail"`` raises at
            the first one.
        max_rejected_fraction: In quarantine mode, the largest share of a file's lines that may
            be rejected before the load fails.
        cycles_as_age: Fill ``time_since_maintenance`` with the cycle number, so the features
            include each engine's age. Every C-MAPSS trajectory starts with the engine in
            normal operation and no maintenance happens within it, so the cycle number is the
            cycles since the engine (re)entered service that the column means. Off: the
            column is NaN (unknown), and the features leave it out.

    Returns:
        The canonical frame (machine ids ``"{subset}_train_001"``, ``"{subset}_test_001"``,
        ...), its :class:`DatasetInfo`, the rejects and the number of data lines read.

    Raises:
        ValueError: Invalid policy arguments.
        DataValidationError: An unknown subset (also a ValueError), a missing, empty or
            undecodable file, a RUL file that does not match the test units, or (depending on
            the policy) bad lines.
    """
    folder = Path(directory)
    if subset not in CMAPSS_SUBSETS:
        raise DataValidationError(
            str(folder), f"unknown C-MAPSS subset {subset!r}; valid: {', '.join(CMAPSS_SUBSETS)}"
        )
    log = RejectLog(RejectPolicy(on_bad_rows, max_rejected_fraction))
    train = _read_split(folder / f"train_{subset}.txt", log)
    test = _read_split(folder / f"test_{subset}.txt", log)
    final_rul = _read_rul(folder / f"RUL_{subset}.txt", test.units_seen, f"test_{subset}.txt")
    frame = pd.concat(
        [
            _split_frame(train, subset, "train", {}, horizon, cycles_as_age),
            _split_frame(test, subset, "test", final_rul, horizon, cycles_as_age),
        ],
        ignore_index=True,
    )
    frame = frame.sort_values([MACHINE, CYCLE], kind="stable").reset_index(drop=True)
    info = DatasetInfo(
        name=f"cmapss/{subset}",
        sensors=SENSORS,
        settings=SETTINGS,
        ordered=True,
        has_rul=True,
        horizon=horizon,
        regime_rounding=REGIME_ROUNDING,
        extra={"directory": str(folder), "subset": subset},
    )
    return LoadResult(frame, info, log.frame(), train.rows_read + test.rows_read)


# ----------------------------------------------------------------------------------------------
# Reading one train/test file


def _read_split(path: Path, log: RejectLog) -> _Split:
    """Reads one train/test file, recording bad lines in ``log``."""
    source = path.name
    lines = read_text(path, source).split("\n")
    line_numbers = np.array([i + 1 for i, text in enumerate(lines) if text.strip()], dtype=int)
    if line_numbers.size == 0:
        raise DataValidationError(source, "file is empty (no data lines)")
    rows_read = int(line_numbers.size)
    values = _parse_fast(lines, rows_read)
    rejects: list[Reject] = []
    if values is None:
        values, line_numbers, rejects = _parse_careful(lines, line_numbers)
    units_seen = set(values[_valid_ids(values[:, 0]), 0].astype(np.int64).tolist())
    key_rejects, keep = _check_keys(values, line_numbers, lines)
    log.record(source, rejects + key_rejects, rows_read)
    values = values[keep]
    return _Split(values[:, 0].astype(np.int64), values, units_seen, rows_read)


def _read_table(text: str, **options: object) -> pd.DataFrame:
    """Parses whitespace-separated text with pandas' C parser (quotes are plain characters)."""
    return pd.read_csv(
        io.StringIO(text),
        sep=r"\s+",
        header=None,
        quoting=csv.QUOTE_NONE,
        na_filter=False,
        engine="c",
        **options,
    )


def _parse_fast(lines: list[str], n_rows: int) -> np.ndarray | None:
    """Parses a clean file in one vectorised pass; None if anything looks wrong."""
    try:
        table = _read_table("\n".join(lines), dtype=np.float64)
    except (ValueError, pd.errors.ParserError):
        return None
    values = table.to_numpy(dtype=np.float64)
    if values.shape != (n_rows, len(FIELDS)) or not np.isfinite(values).all():
        return None
    return values


def _parse_careful(
    lines: list[str], line_numbers: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[Reject]]:
    """Parses a file with problems, returning good values, their lines and the rejects."""
    tokens = [lines[n - 1].split() for n in line_numbers]
    counts = np.fromiter(map(len, tokens), dtype=int, count=len(tokens))
    good = counts == len(FIELDS)
    rejects = [
        Reject(int(n), "", clip(lines[n - 1].strip()), f"expected {len(FIELDS)} fields, found {c}")
        for n, c in zip(line_numbers[~good], counts[~good], strict=True)
    ]
    good_lines = line_numbers[good]
    if good_lines.size == 0:
        return np.empty((0, len(FIELDS))), good_lines, rejects
    table = _token_table(lines, good_lines, [t for t, ok in zip(tokens, good, strict=True) if ok])
    values = np.empty((len(table), len(FIELDS)), dtype=np.float64)
    for j, name in enumerate(FIELDS):
        values[:, j], problems = parse_floats(table[name])
        rejects.extend(
            Reject(int(good_lines[i]), name, clip(table[name].iat[i]), why) for i, why in problems
        )
    return values, good_lines, rejects


def _token_table(lines: list[str], good_lines: np.ndarray, tokens: list[list[str]]) -> pd.DataFrame:
    """Parses lines known to hold 26 fields; columns with bad values come back as text."""
    try:
        table = _read_table("\n".join(lines[n - 1] for n in good_lines), low_memory=False)
    except (ValueError, pd.errors.ParserError):
        table = None
    if table is None or table.shape != (good_lines.size, len(FIELDS)):
        table = pd.DataFrame(tokens, dtype=object)  # slow but exact: one token per cell
    table.columns = list(FIELDS)
    return table


def _valid_ids(column: np.ndarray) -> np.ndarray:
    """Returns a boolean mask of positive integer values (unit or cycle)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(column) & (column > 0) & (column == np.floor(column))


def _check_keys(
    values: np.ndarray, line_numbers: np.ndarray, lines: list[str]
) -> tuple[list[Reject], np.ndarray]:
    """Rejects rows with a bad unit/cycle or a duplicate (unit, cycle) key.

    Returns:
        The rejects and a mask of rows to keep (False for rows rejected here or before, i.e.
        with any non-finite value).
    """
    rejects = []
    ok = np.isfinite(values).all(axis=1)
    for j, name in ((0, "unit"), (1, CYCLE)):
        bad = np.isfinite(values[:, j]) & ~_valid_ids(values[:, j])
        rejects.extend(
            Reject(int(n), name, clip(lines[n - 1].split()[j]), "must be a positive integer")
            for n in line_numbers[bad]
        )
        ok &= ~bad
    positions = np.flatnonzero(ok)
    keys = pd.DataFrame({"unit": values[ok, 0].astype(np.int64), "cycle": values[ok, 1]})
    keys["cycle"] = keys["cycle"].astype(np.int64)
    mask, problems = duplicate_problems(keys, line_numbers[ok], "unit {unit}, cycle {cycle}")
    for i, why in problems:
        n = int(line_numbers[positions[i]])
        rejects.append(Reject(n, "", clip(lines[n - 1].strip()), why))
    ok[positions[mask]] = False
    return rejects, ok


# ----------------------------------------------------------------------------------------------
# RUL file


def _read_rul(path: Path, test_units: set[int], test_name: str) -> dict[int, int]:
    """Reads the RUL file: line ``k`` holds the final RUL of test unit ``k``.

    Raises:
        DataValidationError: A value that is not a non-negative integer (naming its line), or a
            value count that does not match the test units.
    """
    source = path.name
    values: list[int] = []
    for number, text in enumerate(read_text(path, source).split("\n"), start=1):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != 1 or not fields[0].isdigit():
            raise DataValidationError(
                source, f"expected one non-negative integer, found {clip(text.strip())!r}", number
            )
        values.append(int(fields[0]))
    if not values:
        raise DataValidationError(source, "file is empty (no data lines)")
    expected = set(range(1, len(values) + 1))
    if test_units != expected:
        raise DataValidationError(
            source,
            f"has {len(values)} values (units 1..{len(values)}) but {test_name} has "
            f"{len(test_units)} units ({_describe_units(test_units, expected)})",
        )
    return dict(enumerate(values, start=1))


def _describe_units(units: set[int], expected: set[int]) -> str:
    """Describes how a set of unit numbers differs from the expected one."""
    parts = []
    if missing := sorted(expected - units):
        parts.append(f"missing {missing[:10]}")
    if extra := sorted(units - expected):
        parts.append(f"unexpected {extra[:10]}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------------------------
# Canonical frame


def _split_frame(
    split: _Split,
    subset: str,
    name: str,
    final_rul: dict[int, int],
    horizon: int,
    cycles_as_age: bool = False,
) -> pd.DataFrame:
    """Builds the canonical rows of one split."""
    values, units = split.values, split.units
    cycles = values[:, 1].astype(np.int64)
    rul = _rul(units, cycles, final_rul)
    n = len(units)
    ids = np.array([f"{subset}_{name}_{u:03d}" for u in range(int(units.max(initial=0)) + 1)])
    data: dict[str, object] = {
        MACHINE: pd.Series(ids.astype(object)[units], dtype=object),
        CYCLE: cycles,
        TIMESTAMP: pd.Series(np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")),
    }
    data[REGIME] = _regimes(values[:, 2:5])
    for j, column in enumerate(FIELDS[2:], start=2):
        data[column] = values[:, j]
    age = cycles.astype(np.float64) if cycles_as_age else np.full(n, np.nan)
    data[TIME_SINCE_MAINTENANCE] = age
    data[RUL] = rul
    data[LABEL] = (rul <= horizon).astype(np.int8)
    data[FAILURE_MODE] = pd.Series([UNKNOWN_MODE] * n, dtype=object)
    data[SOURCE_SPLIT] = pd.Series([name] * n, dtype=object)
    return pd.DataFrame(data)


def _regimes(settings: np.ndarray) -> pd.Series:
    """Labels each row's regime with :func:`regime_from_settings`, once per distinct condition."""
    rounded = pd.DataFrame(
        {j: settings[:, j].round(d) + 0.0 for j, d in enumerate(REGIME_ROUNDING)}
    )
    codes = rounded.groupby(list(rounded.columns), sort=False).ngroup().to_numpy()
    first = np.flatnonzero(~rounded.duplicated().to_numpy())
    representatives = pd.DataFrame(settings[first], columns=list(SETTINGS))
    labels = regime_from_settings(representatives, REGIME_ROUNDING).to_numpy(dtype=object)
    return pd.Series(labels[codes], dtype=object)


def _rul(units: np.ndarray, cycles: np.ndarray, final_rul: dict[int, int]) -> np.ndarray:
    """Returns ``last cycle of the unit + final RUL of the unit - cycle`` as float64."""
    last = pd.Series(cycles).groupby(units).transform("max").to_numpy()
    offset = pd.Series(units).map(final_rul).fillna(0).to_numpy(dtype=np.float64)
    return (last + offset - cycles).astype(np.float64)
