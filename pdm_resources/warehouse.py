"""The warehouse: tables of telemetry, features and reports, queried with DuckDB SQL.

Two implementations behind one small interface, :class:`Warehouse`:

* :class:`LocalWarehouse` (the embedded default) is one DuckDB file. Asset frames are stored
  by :class:`WarehouseIOManager`: dagster-duckdb-pandas appends a new materialisation into the
  existing table, which breaks as soon as an asset's columns change (for example after
  choosing other feature windows in the Launchpad), so a non-partitioned asset's table is
  replaced on every materialisation; partitioned assets keep the library's
  delete-partition-then-insert behaviour.
* :class:`~pdm_resources.s3_warehouse.S3Warehouse` (``PDM_ENV=prod``) keeps each table as
  Parquet objects under ``s3://<bucket>/<prefix>/warehouse/<table>/`` and opens them as DuckDB
  views, so the same SQL runs in every run pod without a shared database file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
from dagster import MetadataValue, OutputContext, TableColumn, TableSchema
from dagster._core.definitions.metadata import TableMetadataSet
from dagster._core.storage.db_io_manager import DbTypeHandler, TableSlice
from dagster_duckdb import DuckDBIOManager, DuckDBResource
from dagster_duckdb_pandas import DuckDBPandasTypeHandler

from pdm_core.names import (
    FLEET_HEALTH,
    LANDED_TELEMETRY,
    RAW_TELEMETRY,
    RISK_HISTORY,
    SCORED_BATCHES,
)
from pdm_core.schema import RISK_LEVELS

SCHEMA = "pdm"
LANDED = LANDED_TELEMETRY
ALERTS = "alerts"


@dataclass
class FleetFigures:
    """The live fleet now, as the warehouse holds it (what the metrics exporter serves).

    Attributes:
        levels: Machines per risk level in ``pdm.fleet_health`` (every level, 0 if none).
        silent: Machines listed as silent there.
        alerts: Alerts recorded in ``pdm.alerts``, by kind.
        latencies: Each scored batch's seconds from its file's write to its rows stored,
            oldest first (batches without a landing time, such as backfills, are left out).
    """

    levels: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RISK_LEVELS, 0))
    silent: int = 0
    alerts: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


class Warehouse(dg.ConfigurableResource):
    """Tables in schema ``pdm`` that assets read with SQL and write one partition at a time."""

    def describe(self) -> str:
        """One line naming the warehouse."""
        raise NotImplementedError

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB connection on which the warehouse's tables are ``pdm.<table>``."""
        raise NotImplementedError
        yield  # pragma: no cover

    def replace_partition(self, table: str, column: str, key: str, rows: pd.DataFrame) -> str:
        """Replaces the rows of ``table`` whose ``column`` equals ``key`` with ``rows``, at once.

        Readers see either the old rows or the new ones, never a mix: re-running a partition
        (a retried run, a backfill) leaves the table as one run would.

        Args:
            table: Table name in schema ``pdm`` (without the schema).
            column: The partition column (``rows`` hold only ``key`` in it).
            key: The partition's value.
            rows: The partition's new rows.

        Returns:
            Where the rows went (a table name or an object URL).
        """
        raise NotImplementedError

    # The queries below are the only SQL over landed telemetry; assets call them by name.

    def table_exists(self, table: str) -> bool:
        """True when ``pdm.<table>`` exists (has been written at least once)."""
        with self.get_connection() as connection:
            return _table_exists(connection, table)

    def newest_batches(self, count: int) -> list[str]:
        """Ids of the ``count`` most recently ingested batches, newest first."""
        with self.get_connection() as connection:
            if not _table_exists(connection, LANDED):
                return []
            rows = connection.execute(
                f"select batch_id from {SCHEMA}.{LANDED} group by batch_id "
                "order by max(ingested_at) desc, batch_id desc limit ?",
                [count],
            ).fetchall()
        return [str(row[0]) for row in rows]

    def landed_readings(self, batches: Sequence[str] | None = None) -> pd.DataFrame:
        """Landed readings of ``batches`` (all when None), by machine and cycle."""
        with self.get_connection() as connection:
            if not _table_exists(connection, LANDED):
                return pd.DataFrame()
            if batches is None:
                return connection.execute(
                    f"select * from {SCHEMA}.{LANDED} order by machine_id, cycle"
                ).df()
            return connection.execute(
                f"select * from {SCHEMA}.{LANDED} where batch_id in (select unnest(?)) "
                "order by machine_id, cycle",
                [list(batches)],
            ).df()

    def readings_with_keys(self, keys: pd.DataFrame, exclude_batch: str) -> pd.DataFrame:
        """Landed readings of other batches with the same (machine_id, cycle) as ``keys``."""
        with self.get_connection() as connection:
            if keys.empty or not _table_exists(connection, LANDED):
                return pd.DataFrame()
            connection.register("_pdm_keys", keys[["machine_id", "cycle"]].drop_duplicates())
            try:
                return connection.execute(
                    f"select t.* from {SCHEMA}.{LANDED} t join _pdm_keys k "
                    "using (machine_id, cycle) where t.batch_id <> ?",
                    [exclude_batch],
                ).df()
            finally:
                connection.unregister("_pdm_keys")

    def preceding_readings(
        self, first_cycles: pd.DataFrame, count: int, columns: Sequence[str], exclude_batch: str
    ) -> pd.DataFrame:
        """Each machine's last ``count`` readings before its first cycle in a batch.

        Landed batches other than ``exclude_batch`` and the training source's telemetry
        (``pdm.raw_telemetry``, which the simulator's feed continues) both count; where they
        hold the same cycle, the landed reading wins.

        Args:
            first_cycles: ``machine_id`` and ``cycle`` (the machine's first cycle in the batch).
            count: Readings per machine (the model's window length minus one).
            columns: Columns wanted (those a table lacks are left out of its rows).
            exclude_batch: The batch itself.
        """
        if first_cycles.empty or count <= 0:
            return pd.DataFrame(columns=list(columns))
        frames = []
        with self.get_connection() as connection:
            connection.register("_pdm_first", first_cycles[["machine_id", "cycle"]])
            try:
                for table, where in ((LANDED, "t.batch_id <> ?"), (RAW_TELEMETRY, "true")):
                    if not _table_exists(connection, table):
                        continue
                    present = set(connection.execute(
                        f"select * from {SCHEMA}.{table} limit 0"
                    ).df().columns)  # fmt: skip
                    names = ", ".join(f't."{c}"' for c in columns if c in present)
                    frames.append(
                        connection.execute(
                            f"select {names}, {int(table == LANDED)} as _landed from "
                            f"(select t.*, row_number() over (partition by t.machine_id "
                            f"order by t.cycle desc) as _rank from {SCHEMA}.{table} t "
                            f"join _pdm_first f on t.machine_id = f.machine_id "
                            f"and t.cycle < f.cycle where {where}) t where t._rank <= ?",
                            [exclude_batch, count] if table == LANDED else [count],
                        ).df()
                    )
            finally:
                connection.unregister("_pdm_first")
        frames = [frame for frame in frames if not frame.empty]
        if not frames:
            return pd.DataFrame(columns=list(columns))
        both = pd.concat(frames, ignore_index=True).sort_values(
            ["machine_id", "cycle", "_landed"], kind="stable"
        )
        both = both.drop_duplicates(["machine_id", "cycle"], keep="last").drop(columns="_landed")
        return (
            both.groupby("machine_id", sort=False, observed=True).tail(count).reset_index(drop=True)
        )

    def newest_cycles(self, batches: Sequence[str], machines: Sequence[str]) -> pd.Series:
        """Newest landed cycle per machine (index ``machine_id``) over ``batches``."""
        with self.get_connection() as connection:
            if not batches or not machines or not _table_exists(connection, LANDED):
                return pd.Series(dtype="int64")
            found = connection.execute(
                f"select machine_id, max(cycle) as cycle from {SCHEMA}.{LANDED} "
                "where batch_id in (select unnest(?)) and machine_id in (select unnest(?)) "
                "group by machine_id",
                [list(batches), list(machines)],
            ).df()
        return found.set_index("machine_id")["cycle"]

    def scored_versions(self, batch: str) -> set[str]:
        """Model versions that have rows of ``batch`` in ``pdm.risk_history``."""
        with self.get_connection() as connection:
            if not _table_exists(connection, RISK_HISTORY):
                return set()
            rows = connection.execute(
                f"select distinct model_version from {SCHEMA}.{RISK_HISTORY} where batch_id = ?",
                [batch],
            ).fetchall()
        return {str(row[0]) for row in rows}

    def latest_readings(self, table: str, count: int) -> pd.DataFrame:
        """Each machine's last ``count`` rows of ``pdm.<table>`` (empty when it does not exist)."""
        with self.get_connection() as connection:
            if not _table_exists(connection, table):
                return pd.DataFrame()
            return connection.execute(
                f"select * exclude (_rank) from (select *, row_number() over (partition by "
                f"machine_id order by cycle desc) as _rank from {SCHEMA}.{table}) "
                "where _rank <= ? order by machine_id, cycle",
                [int(count)],
            ).df()

    def risk_history(self) -> pd.DataFrame:
        """Every row of ``pdm.risk_history`` (empty when nothing was scored yet)."""
        with self.get_connection() as connection:
            if not _table_exists(connection, RISK_HISTORY):
                return pd.DataFrame()
            return connection.execute(
                f"select * from {SCHEMA}.{RISK_HISTORY} order by machine_id, cycle"
            ).df()

    def fleet_figures(self) -> FleetFigures:
        """Machines per risk level, silent machines, alerts by kind, landing-to-score times."""
        figures = FleetFigures()
        with self.get_connection() as connection:
            if _table_exists(connection, FLEET_HEALTH):
                health = f"{SCHEMA}.{FLEET_HEALTH}"
                for level, count in connection.execute(
                    f"select risk_level, count(*) from {health} group by risk_level"
                ).fetchall():
                    figures.levels[str(level)] = int(count)
                if "silent" in _columns(connection, FLEET_HEALTH):
                    query = f"select count(*) from {health} where silent"
                    figures.silent = int(connection.execute(query).fetchall()[0][0])
            if _table_exists(connection, ALERTS):
                rows = connection.execute(
                    f"select kind, count(*) from {SCHEMA}.{ALERTS} group by kind"
                ).fetchall()
                figures.alerts = {str(kind): int(count) for kind, count in rows}
            if _table_exists(connection, SCORED_BATCHES):
                rows = connection.execute(
                    f"select epoch(stored_at) - epoch(landed_at) from {SCHEMA}.{SCORED_BATCHES} "
                    "where landed_at is not null order by stored_at"
                ).fetchall()
                figures.latencies = [float(row[0]) for row in rows]
        return figures


def _columns(connection: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    return {str(row[0]) for row in connection.execute(f"describe {SCHEMA}.{table}").fetchall()}


def _table_exists(connection: duckdb.DuckDBPyConnection, table: str) -> bool:
    found = connection.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [SCHEMA, table],
    ).fetchall()
    return bool(found[0][0])


class LocalWarehouse(Warehouse):
    """The embedded DuckDB file (one writing process at a time).

    Attributes:
        database: Path of the DuckDB file.
        read_only: Open it read-only and without waiting (readers beside the runs).
    """

    database: str
    read_only: bool = False

    def describe(self) -> str:
        """One line naming the warehouse."""
        return f"DuckDB warehouse {self.database}"

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the file.

        Read-write connections are retried while another process holds the file; a read-only
        one (a reader beside the runs, such as the metrics exporter) fails at once instead,
        and never creates the file.

        Raises:
            FileNotFoundError: Read-only, and the file does not exist.
            duckdb.IOException: Read-only, and a run holds the file's write lock.
        """
        if not self.read_only:
            with DuckDBResource(database=self.database).get_connection() as connection:
                yield connection
            return
        if not Path(self.database).exists():
            raise FileNotFoundError(self.database)
        connection = duckdb.connect(self.database, read_only=True)
        try:
            yield connection
        finally:
            connection.close()

    def replace_partition(self, table: str, column: str, key: str, rows: pd.DataFrame) -> str:
        """Deletes the partition's earlier rows and inserts ``rows`` in one transaction."""
        target = f"{SCHEMA}.{table}"
        with self.get_connection() as connection:
            connection.execute(f"create schema if not exists {SCHEMA}")
            connection.register("_pdm_rows", rows)
            try:
                connection.execute("begin transaction")
                connection.execute(
                    f"create table if not exists {target} as select * from _pdm_rows limit 0"
                )
                _add_new_columns(connection, target, "_pdm_rows")
                connection.execute(f'delete from {target} where "{column}" = ?', [key])
                connection.execute(f"insert into {target} by name select * from _pdm_rows")
                connection.execute("commit")
            except Exception:
                connection.execute("rollback")
                raise
            finally:
                connection.unregister("_pdm_rows")
        return target


def _add_new_columns(connection: duckdb.DuckDBPyConnection, target: str, rows: str) -> None:
    """Adds the columns ``rows`` has and the table lacks (earlier partitions read null there).

    A partitioned table outlives code changes: a new output column must not stop the next
    batch from landing in a warehouse written by the previous release.
    """
    existing = {name for name, *_ in connection.execute(f"describe {target}").fetchall()}
    for name, kind, *_ in connection.execute(f"describe {rows}").fetchall():
        if name not in existing:
            connection.execute(f'alter table {target} add column "{name}" {kind}')


class ReplacingPandasTypeHandler(DuckDBPandasTypeHandler):
    """Stores a DataFrame with ``CREATE OR REPLACE TABLE`` unless the output is partitioned."""

    def handle_output(
        self, context: OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection
    ) -> None:  # type: ignore[no-untyped-def]
        """Replaces the whole table for non-partitioned outputs (schema may change)."""
        if context.has_asset_partitions:  # the asset, not the run, is partitioned
            super().handle_output(context, table_slice, obj, connection)
            return
        connection.register("_pdm_output", obj)
        try:
            connection.execute(
                f"create or replace table {table_slice.schema}.{table_slice.table} as "
                "select * from _pdm_output"
            )
        finally:
            connection.unregister("_pdm_output")
        context.add_output_metadata(
            {
                **TableMetadataSet(row_count=obj.shape[0], storage_kind="duckdb"),
                "dataframe_columns": MetadataValue.table_schema(
                    TableSchema(
                        columns=[
                            TableColumn(name=str(n), type=str(t)) for n, t in obj.dtypes.items()
                        ]
                    )
                ),
            }
        )


class WarehouseIOManager(DuckDBIOManager):
    """DuckDB IO manager for pandas frames that replaces non-partitioned tables."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        """The replacing pandas handler."""
        return [ReplacingPandasTypeHandler()]

    @staticmethod
    def default_load_type() -> type | None:
        """Inputs without annotations load as DataFrames."""
        return pd.DataFrame
