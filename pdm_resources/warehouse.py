"""The embedded DuckDB warehouse: pandas DataFrames as tables, one per asset.

dagster-duckdb-pandas appends a new materialisation into the existing table, which breaks as
soon as an asset's columns change (for example after choosing other feature windows in the
Launchpad). Here a non-partitioned asset's table is replaced on every materialisation;
partitioned assets keep the library's delete-partition-then-insert behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from dagster import MetadataValue, OutputContext, TableColumn, TableSchema
from dagster._core.definitions.metadata import TableMetadataSet
from dagster._core.storage.db_io_manager import DbTypeHandler, TableSlice
from dagster_duckdb import DuckDBIOManager
from dagster_duckdb_pandas import DuckDBPandasTypeHandler


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
