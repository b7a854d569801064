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

import dagster as dg
import duckdb
import pandas as pd
from dagster import MetadataValue, OutputContext, TableColumn, TableSchema
from dagster._core.definitions.metadata import TableMetadataSet
from dagster._core.storage.db_io_manager import DbTypeHandler, TableSlice
from dagster_duckdb import DuckDBIOManager, DuckDBResource
from dagster_duckdb_pandas import DuckDBPandasTypeHandler

SCHEMA = "pdm"


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


class LocalWarehouse(Warehouse):
    """The embedded DuckDB file (one writing process at a time).

    Attributes:
        database: Path of the DuckDB file.
    """

    database: str

    def describe(self) -> str:
        """One line naming the warehouse."""
        return f"DuckDB warehouse {self.database}"

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the file (retried while another process holds it)."""
        with DuckDBResource(database=self.database).get_connection() as connection:
            yield connection

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
                connection.execute(f'delete from {target} where "{column}" = ?', [key])
                connection.execute(f"insert into {target} by name select * from _pdm_rows")
                connection.execute("commit")
            except Exception:
                connection.execute("rollback")
                raise
            finally:
                connection.unregister("_pdm_rows")
        return target


class ReplacingPandasTypeHandler(DuckDBPandasTypeHandler):
    """Stores a DataFrame with ``CREATE OR REPLACE TABLE`` unless the output is partitioned."""

    def handle_output(
        self, context: OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection
    ) -> None:  # type: ignore[no-untyped-def]
        """Replaces the whole table for non-partitioned outputs (schema may change)."""
        if context.has_partition_key:
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
