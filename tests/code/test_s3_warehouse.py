"""The S3 warehouse, Parquet IO manager and the PDM_ENV switch, against a moto S3 server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import dagster as dg
import numpy as np
import pandas as pd
import pytest

from pdm_resources.environment import (
    build_resources,
    current_environment,
    metrics_warehouse,
    prod_resources,
)
from pdm_resources.s3_location import S3Location, s3_location_from_env
from pdm_resources.s3_warehouse import S3ParquetIOManager, S3Warehouse
from pdm_resources.warehouse import LocalWarehouse

BUCKET = "pdm-warehouse-test"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield url
    server.stop()


@pytest.fixture
def location(endpoint: str, request: pytest.FixtureRequest) -> S3Location:
    return S3Location(
        bucket=BUCKET, prefix=f"t/{request.node.name}", endpoint_url=endpoint,
        region_name="us-east-1",
    )  # fmt: skip


def batch(name: str, n: int = 3, label: float | None = 1.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "machine_id": [f"m{i}" for i in range(n)],
            "cycle": np.arange(n, dtype="int64"),
            "temp": np.linspace(0, 1, n),
            "label": [label] * n,
            "batch_id": name,
        }
    )


def count(warehouse: S3Warehouse, sql: str) -> int:
    with warehouse.get_connection() as connection:
        return int(connection.execute(sql).fetchall()[0][0])


def test_replace_partition_is_idempotent_and_tables_are_sql_views(location: S3Location) -> None:
    warehouse = S3Warehouse(location=location)
    with warehouse.get_connection() as connection:  # no table yet: an empty schema
        tables = connection.execute(
            "select count(*) from information_schema.tables where table_schema = 'pdm'"
        ).fetchall()
        assert tables[0][0] == 0
    url = warehouse.replace_partition("landed", "batch_id", "b-1", batch("b-1"))
    assert url == f"s3://{BUCKET}/{location.key('warehouse', 'landed', 'batch_id=b-1.parquet')}"
    warehouse.replace_partition("landed", "batch_id", "b-1", batch("b-1", n=5))  # a retry
    warehouse.replace_partition("landed", "batch_id", "b/2", batch("b/2", n=2))
    assert count(warehouse, "select count(*) from pdm.landed") == 7
    assert count(warehouse, "select count(distinct batch_id) from pdm.landed") == 2
    assert len(location.list_keys("warehouse", "landed")) == 2


def test_later_partitions_take_the_table_schema(location: S3Location) -> None:
    warehouse = S3Warehouse(location=location)
    warehouse.replace_partition("landed", "batch_id", "b-1", batch("b-1"))
    unlabelled = batch("b-2", label=None).drop(columns=["temp"])  # all-null and missing column
    warehouse.replace_partition("landed", "batch_id", "b-2", unlabelled)
    with warehouse.get_connection() as connection:
        rows = connection.execute(
            "select batch_id, count(label), count(temp) from pdm.landed group by 1 order by 1"
        ).fetchall()
    assert rows == [("b-1", 3, 3), ("b-2", 0, 0)]


@pytest.mark.parametrize("kind", ["s3", "local"])
def test_a_new_column_joins_the_table_and_earlier_partitions_read_null(
    kind: str, location: S3Location, tmp_path: Path
) -> None:
    """A release that adds an output column keeps landing into the previous release's table."""
    warehouse = (
        S3Warehouse(location=location)
        if kind == "s3"
        else LocalWarehouse(database=str(tmp_path / "w.duckdb"))
    )
    warehouse.replace_partition("landed", "batch_id", "b-1", batch("b-1"))
    warehouse.replace_partition("landed", "batch_id", "b-2", batch("b-2").assign(extra=2.5))
    warehouse.replace_partition("landed", "batch_id", "b-3", batch("b-3"))
    with warehouse.get_connection() as connection:
        rows = connection.execute(
            "select batch_id, count(extra), sum(extra), count(temp) from pdm.landed "
            "group by 1 order by 1"
        ).fetchall()
    assert rows == [("b-1", 0, None, 3), ("b-2", 3, 7.5, 3), ("b-3", 0, None, 3)]


def test_parquet_io_manager_round_trip_and_replacement(location: S3Location) -> None:
    calls = {"n": 0}

    @dg.asset(io_manager_key="warehouse_io_manager")
    def table() -> pd.DataFrame:
        calls["n"] += 1
        return pd.DataFrame({"a": range(calls["n"] * 2), "b": "x"})

    @dg.asset(io_manager_key="warehouse_io_manager")
    def doubled(table: pd.DataFrame) -> pd.DataFrame:
        return table.assign(a=table["a"] * 2)

    resources = {"warehouse_io_manager": S3ParquetIOManager(location=location)}
    stale = location.key("warehouse", "table", "partition=old.parquet")
    location.client().put_object(Bucket=BUCKET, Key=stale, Body=b"left over")
    for expected in (2, 4):
        result = dg.materialize([table, doubled], resources=resources)
        assert result.success
        assert result.output_for_node("doubled")["a"].tolist() == [2 * i for i in range(expected)]
    assert location.list_keys("warehouse", "table") == [
        location.key("warehouse", "table", "data.parquet")
    ]
    warehouse = S3Warehouse(location=location)
    assert count(warehouse, "select sum(a) from pdm.doubled") == 2 * sum(range(4))


def test_missing_table_names_where_it_looked(location: S3Location) -> None:
    @dg.asset(io_manager_key="warehouse_io_manager")
    def absent() -> pd.DataFrame:  # never materialised
        return pd.DataFrame()

    @dg.asset(io_manager_key="warehouse_io_manager")
    def reader(absent: pd.DataFrame) -> pd.DataFrame:
        return absent

    resources = {"warehouse_io_manager": S3ParquetIOManager(location=location)}
    with pytest.raises(
        FileNotFoundError, match=r"absent under s3://pdm-warehouse-test/.*/warehouse/absent"
    ):
        dg.materialize([absent.to_source_asset(), reader], resources=resources)


def test_environment_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PDM_ENV", raising=False)
    assert current_environment() == "local"
    assert isinstance(build_resources()["warehouse"], LocalWarehouse)
    monkeypatch.setenv("PDM_ENV", "staging")
    with pytest.raises(ValueError, match="PDM_ENV='staging' is not one of local, prod"):
        current_environment()
    monkeypatch.setenv("PDM_ENV", "prod")
    monkeypatch.delenv("PDM_S3_BUCKET", raising=False)
    with pytest.raises(ValueError, match=r"\$PDM_S3_BUCKET"):
        build_resources()
    monkeypatch.setenv("PDM_S3_BUCKET", "io")
    monkeypatch.delenv("PDM_LANDING_S3_BUCKET", raising=False)
    with pytest.raises(ValueError, match=r"\$PDM_LANDING_S3_BUCKET"):
        prod_resources()
    reader = metrics_warehouse()  # the exporter reads; it needs no landing bucket
    assert isinstance(reader, S3Warehouse) and reader.location == s3_location_from_env()
    assert isinstance(metrics_warehouse("local"), LocalWarehouse)
    assert metrics_warehouse("local").read_only
    monkeypatch.setenv("PDM_LANDING_S3_BUCKET", "landing")
    monkeypatch.setenv("PDM_S3_PREFIX", "team-a")
    resources = build_resources()
    assert isinstance(resources["warehouse"], S3Warehouse)
    assert resources["warehouse"].location == s3_location_from_env()
    assert resources["warehouse"].describe() == "S3 warehouse s3://io/team-a/warehouse"


def test_fleet_figures_count_the_alert_objects_by_kind(location: S3Location) -> None:
    """The exporter's figures in production: tables from the warehouse, alerts from S3."""
    from pdm_core.alerts import Alert
    from pdm_resources.alerts import S3AlertSink

    warehouse = S3Warehouse(location=location)
    assert warehouse.fleet_figures().alerts == {}  # nothing recorded yet
    health = pd.DataFrame(
        {"machine_id": ["a", "b", "c"], "risk_level": ["LOW", "HIGH", "HIGH"],
         "silent": [False, False, True], "batch_id": "b1"}
    )  # fmt: skip
    warehouse.replace_partition("fleet_health", "batch_id", "b1", health)
    sink = S3AlertSink(location=location)

    def alert(kind: str, key: str) -> Alert:
        return Alert(kind=kind, severity="warning", title=key, details={}, dedup_key=key)  # type: ignore[arg-type]

    raised = [alert("high_risk", "a"), alert("high_risk", "b"), alert("silent_machine", "c")]
    assert [o.status for o in sink.raise_alerts([*raised, raised[0]])] == [
        "recorded", "recorded", "recorded", "duplicate"
    ]  # fmt: skip
    figures = warehouse.fleet_figures()
    assert figures.alerts == {"high_risk": 2, "silent_machine": 1}
    assert figures.levels == {"LOW": 1, "MEDIUM": 0, "HIGH": 2, "CRITICAL": 0}
    assert figures.silent == 1
    assert len(sink.recent_alerts()) == 3  # the same objects, read whole
