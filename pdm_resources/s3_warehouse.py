"""The production warehouse: Parquet objects in S3, queried with DuckDB.

Layout below ``s3://<bucket>/<prefix>/warehouse/``::

    <table>/data.parquet               a non-partitioned asset (replaced on materialisation)
    <table>/<column>=<key>.parquet     one partition (one landed batch, one asset partition)

One object per table or partition makes every write atomic (an S3 PUT replaces the whole
object), so a retried run or a backfill leaves the table as one run would, without a shared
database file or locks between run pods. :class:`S3Warehouse` opens the tables as DuckDB views
over ``pyarrow`` datasets (lazy, column and row-group pruning), so the assets' SQL is the same
as on the local DuckDB file. :class:`S3ParquetIOManager` stores asset frames in the same
layout, so SQL sees them too (for example ``pdm.training_set``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import dagster as dg
import duckdb
import pandas as pd

from pdm_resources.s3_location import S3Location
from pdm_resources.warehouse import SCHEMA, FleetFigures, Warehouse

FOLDER = "warehouse"
WHOLE_TABLE = "data.parquet"


def partition_object(column: str, key: str) -> str:
    """The object name of one partition: ``<column>=<key>.parquet`` (key URL-quoted)."""
    return f"{column}={quote(key, safe='')}.parquet"


def _arrow_table(rows: pd.DataFrame, schema: Any | None) -> Any:
    """``rows`` as an Arrow table, cast to the table's existing ``schema`` when there is one.

    Columns the table has and ``rows`` lack become nulls (as DuckDB's ``insert by name``);
    columns the table lacks are appended with their own types, as the local warehouse adds
    them: readers unify the partitions' schemas (:meth:`S3Warehouse.get_connection`).
    """
    import pyarrow as pa

    if schema is None:
        return pa.Table.from_pandas(rows, preserve_index=False)
    extra = [c for c in rows.columns if c not in schema.names]
    known = pa.Table.from_pandas(
        rows.reindex(columns=schema.names), schema=schema, preserve_index=False
    )
    if not extra:
        return known
    added = pa.Table.from_pandas(rows[extra], preserve_index=False)
    for name in extra:
        known = known.append_column(added.schema.field(name), added.column(name))
    return known


def _schema(paths: list[str], filesystem: Any) -> Any:
    """The union of the objects' schemas (a later partition may add columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(path, filesystem=filesystem) for path in paths]
    return pa.unify_schemas([s.remove_metadata() for s in schemas])


class S3Warehouse(Warehouse):
    """Warehouse tables as Parquet objects under ``<location>/warehouse/<table>/``.

    Attributes:
        location: The bucket and prefix (shared with the IO managers and artifacts).
    """

    location: S3Location

    def describe(self) -> str:
        """One line naming the warehouse."""
        return f"S3 warehouse {self.location.url(FOLDER)}"

    def _paths(self, table: str) -> list[str]:
        return [
            f"{self.location.bucket}/{key}"
            for key in self.location.list_keys(FOLDER, table)
            if key.endswith(".parquet")
        ]

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """An in-memory DuckDB connection with a view ``pdm.<table>`` per stored table."""
        import pyarrow.dataset as ds

        connection = duckdb.connect()
        try:
            connection.execute(f"create schema {SCHEMA}")
            filesystem = self.location.filesystem()
            for table in self.location.list_folders(FOLDER):
                paths = self._paths(table)
                if not paths:
                    continue
                dataset = ds.dataset(
                    paths,
                    filesystem=filesystem,
                    format="parquet",
                    schema=_schema(paths, filesystem),
                )
                connection.register(f"_s3_{table}", dataset)
                connection.execute(f'create view {SCHEMA}."{table}" as select * from "_s3_{table}"')
            yield connection
        finally:
            connection.close()

    def replace_partition(self, table: str, column: str, key: str, rows: pd.DataFrame) -> str:
        """Writes the partition as one Parquet object (replacing it), in the table's schema."""
        import pyarrow.parquet as pq

        filesystem = self.location.filesystem()
        name = partition_object(column, key)
        target = f"{self.location.bucket}/{self.location.key(FOLDER, table, name)}"
        others = [path for path in self._paths(table) if path != target]
        schema = pq.read_schema(others[0], filesystem=filesystem) if others else None
        data = _arrow_table(rows, schema)
        pq.write_table(data, target, filesystem=filesystem)
        return f"s3://{target}"

    def fleet_figures(self) -> FleetFigures:
        """As on the local warehouse; alerts are counted from the alert sink's objects.

        In production the alert log is not a warehouse table but one object per alert
        beside it (:class:`~pdm_resources.alerts.s3.S3AlertSink`, same location).
        """
        from pdm_resources.alerts.s3 import S3AlertSink

        figures = super().fleet_figures()
        figures.alerts = S3AlertSink(location=self.location).recorded_by_kind()
        return figures


class S3ParquetIOManager(dg.ConfigurableIOManager):
    """Stores asset DataFrames as Parquet in the warehouse layout (one table per asset).

    Attributes:
        location: The bucket and prefix; tables go under ``<location>/warehouse/``.
    """

    location: S3Location

    def _folder(self, context: dg.OutputContext | dg.InputContext) -> str:
        return context.asset_key.path[-1]

    def _object(self, table: str, name: str) -> str:
        return f"{self.location.bucket}/{self.location.key(FOLDER, table, name)}"

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        """Writes the frame (a partition, or the whole table replacing older objects)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a DataFrame")
        table = self._folder(context)
        filesystem = self.location.filesystem()
        if context.has_asset_partitions:
            name = partition_object("partition", context.asset_partition_key)
        else:
            name = WHOLE_TABLE
        target = self._object(table, name)
        data = pa.Table.from_pandas(obj, preserve_index=False)
        pq.write_table(data, target, filesystem=filesystem)
        if not context.has_asset_partitions:
            stale = [
                key
                for key in self.location.list_keys(FOLDER, table)
                if f"{self.location.bucket}/{key}" != target
            ]
            client = self.location.client()
            for key in stale:  # an earlier partitioned or renamed layout of this table
                client.delete_object(Bucket=self.location.bucket, Key=key)
        context.add_output_metadata(
            {
                "dagster/row_count": len(obj),
                "path": dg.MetadataValue.path(f"s3://{target}"),
                "dataframe_columns": dg.MetadataValue.table_schema(
                    dg.TableSchema(
                        columns=[
                            dg.TableColumn(name=str(n), type=str(t)) for n, t in obj.dtypes.items()
                        ]
                    )
                ),
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        """Reads the upstream table (the requested partitions, else every object)."""
        import pyarrow.parquet as pq

        table = self._folder(context)
        if context.has_asset_partitions:
            wanted = {partition_object("partition", k) for k in context.asset_partition_keys}
            paths = [
                f"{self.location.bucket}/{key}"
                for key in self.location.list_keys(FOLDER, table)
                if key.rsplit("/", 1)[-1] in wanted
            ]
        else:
            paths = [
                f"{self.location.bucket}/{key}"
                for key in self.location.list_keys(FOLDER, table)
                if key.endswith(".parquet")
            ]
        if not paths:
            raise FileNotFoundError(
                f"no stored table for {context.asset_key.to_user_string()} under "
                f"{self.location.url(FOLDER, table)}; materialise it first"
            )
        filesystem = self.location.filesystem()
        frames = [pq.read_table(path, filesystem=filesystem).to_pandas() for path in paths]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
