"""The S3 landing zone against a local S3 endpoint (moto server on 127.0.0.1, port 0)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import dagster as dg
import duckdb
import pytest

from pdm_assets.ingestion import landed_telemetry
from pdm_core.feed import FeedConfig, batch_frame
from pdm_core.landing import batch_id
from pdm_resources.landing_zone import S3LandingZone
from pdm_resources.telemetry_source import TelemetrySource
from pdm_resources.warehouse import LocalWarehouse
from sensors_schedules.landing_sensor import landing_zone_sensor

BUCKET = "pdm-landing"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=url).create_bucket(Bucket=BUCKET)
        yield url
        server.stop()


def put(endpoint: str, key: str, body: bytes) -> None:
    boto3.client("s3", endpoint_url=endpoint).put_object(Bucket=BUCKET, Key=key, Body=body)


def keys(endpoint: str, prefix: str) -> set[str]:
    found = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"] for item in found.get("Contents", [])}


def parquet(batch: int) -> bytes:
    buffer = io.BytesIO()
    batch_frame(FeedConfig(n_machines=4, steps_per_batch=10), batch).to_parquet(buffer)
    return buffer.getvalue()


def test_s3_zone_lists_ingests_archives_and_quarantines(endpoint: str, tmp_path: Path) -> None:
    zone = S3LandingZone(bucket=BUCKET, prefix="fleet-a/landing", endpoint_url=endpoint)
    good, broken = parquet(0), b"PAR1 this is not parquet"
    put(endpoint, "fleet-a/landing/incoming/good.parquet", good)
    put(endpoint, "fleet-a/landing/incoming/broken.parquet", broken)
    put(endpoint, "fleet-a/landing/incoming/.hidden.parquet.part", good)  # being written
    put(endpoint, "fleet-a/landing/incoming/sub/nested.parquet", good)  # not in incoming/ itself
    assert sorted(f.name for f in zone.list_incoming()) == ["broken.parquet", "good.parquet"]

    context = dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(), resources={"landing_zone": zone}
    )
    result = landing_zone_sensor(context)
    requested = {r.run_key for r in result.run_requests}
    good_id, broken_id = batch_id("good.parquet", good), batch_id("broken.parquet", broken)
    assert requested == {good_id, broken_id}

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("telemetry_batches", [good_id, broken_id])
    warehouse = tmp_path / "warehouse.duckdb"
    resources = {
        "landing_zone": zone,
        "warehouse": LocalWarehouse(database=str(warehouse)),
        "telemetry_source": TelemetrySource(),
    }
    ok = dg.materialize([landed_telemetry], partition_key=good_id, resources=resources,
                        instance=instance)  # fmt: skip
    assert ok.success
    assert f"fleet-a/landing/archive/{good_id}.parquet" in keys(endpoint, "fleet-a/landing/archive")
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        rows = connection.execute("select count(*) from pdm.landed_telemetry").fetchall()[0][0]
    assert rows == 4 * 10

    again = dg.materialize([landed_telemetry], partition_key=good_id, resources=resources,
                           instance=instance)  # fmt: skip
    assert again.success  # a backfill finds the archived object; the table is unchanged
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        assert (
            connection.execute("select count(*) from pdm.landed_telemetry").fetchall()[0][0] == 40
        )

    bad = dg.materialize([landed_telemetry], partition_key=broken_id, resources=resources,
                         instance=instance, raise_on_error=False)  # fmt: skip
    assert not bad.success
    quarantined = keys(endpoint, "fleet-a/landing/quarantine")
    assert f"fleet-a/landing/quarantine/{broken_id}.parquet" in quarantined
    body = (
        boto3.client("s3", endpoint_url=endpoint)
        .get_object(Bucket=BUCKET, Key=f"fleet-a/landing/quarantine/{broken_id}.reason.json")[
            "Body"
        ]
        .read()
    )
    reason = json.loads(body)["reason"]
    assert "broken.parquet" in reason and "unreadable Parquet" in reason
    assert {f.name for f in zone.list_incoming()} == set()
    with pytest.raises(FileNotFoundError, match="quarantined"):
        zone.fetch(broken_id)
