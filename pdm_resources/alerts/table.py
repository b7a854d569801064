"""``pdm.alerts`` in the local DuckDB warehouse: the dedup key is the primary key.

DuckDB allows one writing process per file, and a Dagster run may hold it: opening is
retried with tenacity (exponential waits) until a deadline, after which the caller spools.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import tenacity

from pdm_resources.alerts.rows import ALERT_COLUMNS, row_values

logger = logging.getLogger(__name__)

CREATE_TABLE = """
create schema if not exists pdm;
create table if not exists pdm.alerts (
    created_at timestamp not null,
    kind text not null,
    severity text not null,
    title text not null,
    details text not null,
    dedup_key text primary key,
    delivered boolean,
    delivery_error text
);
"""
INSERT = (
    f"insert into pdm.alerts ({', '.join(ALERT_COLUMNS)}) "
    "values (?, ?, ?, ?, ?, ?, ?, ?) on conflict (dedup_key) do nothing returning dedup_key"
)


def _locked(error: BaseException) -> bool:
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


@contextmanager
def open_table(database: Path, deadline: float) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """A connection with ``pdm.alerts`` created, or None when the file stayed locked.

    Args:
        database: The DuckDB file.
        deadline: ``time.monotonic()`` value after which a locked file is given up on (one
            attempt is always made).
    """
    database.parent.mkdir(parents=True, exist_ok=True)
    opening = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_locked),
        wait=tenacity.wait_exponential(multiplier=0.05, max=2.0),
        stop=lambda state: time.monotonic() >= deadline,
        sleep=lambda seconds: time.sleep(max(min(seconds, deadline - time.monotonic()), 0)),
        reraise=True,
    )
    try:
        connection = opening(duckdb.connect, str(database))
    except duckdb.IOException as error:
        if not _locked(error):
            raise
        logger.warning("warehouse %s stayed locked: %s", database, error)
        yield None
        return
    try:
        connection.execute(CREATE_TABLE)
        yield connection
    finally:
        connection.close()


def recorded_keys(connection: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> set[str]:
    """The keys among ``keys`` that already have a row."""
    rows = connection.execute(
        "select dedup_key from pdm.alerts where list_contains(?, dedup_key)", [list(keys)]
    ).fetchall()
    return {row[0] for row in rows}


def insert_rows(connection: duckdb.DuckDBPyConnection, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Inserts the rows whose key is new, in one transaction; returns the keys inserted."""
    inserted: set[str] = set()
    connection.execute("begin transaction")
    try:
        for row in rows:
            if connection.execute(INSERT, row_values(row)).fetchall():
                inserted.add(row["dedup_key"])
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise
    return inserted


def newest_rows(connection: duckdb.DuckDBPyConnection, limit: int) -> pd.DataFrame:
    """The newest ``limit`` rows."""
    return connection.execute(
        f"select {', '.join(ALERT_COLUMNS)} from pdm.alerts order by created_at desc limit ?",
        [int(limit)],
    ).fetchdf()
