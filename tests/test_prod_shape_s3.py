"""The production shape end to end: ``PDM_ENV=prod`` against an S3 endpoint over HTTP.

A moto server on 127.0.0.1 (port 0) plays S3. The resources come from the environment exactly
as a run pod builds them (:func:`pdm_resources.environment.build_resources`); the whole graph
materialises with its frames, pickles, artifacts, MLflow artifacts and alerts in S3, and the
landing sensor reads new files from the S3 landing prefix. Nothing may land in ``PDM_HOME``
except what the prod shape keeps local on purpose (the BentoML store of the packaging step).
"""

from __future__ import annotations

import collections
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import dagster as dg
import pandas as pd
import pytest
import requests

from pdm_assets.jobs import PIPELINE_SELECTION
from pdm_assets.models import CANDIDATES
from pdm_core.alerts import Alert
from pdm_core.feed import FeedConfig, batch_frame
from pdm_core.landing import batch_id
from pdm_platform import definitions
from pdm_resources.alerts import S3AlertSink
from pdm_resources.drift_policy import DriftPolicy
from pdm_resources.environment import build_resources
from pdm_resources.s3_warehouse import S3ParquetIOManager, S3Warehouse
from pdm_resources.telemetry_source import TelemetrySource
from sensors_schedules.landing_sensor import landing_zone_sensor
from tests.services import free_port

pytestmark = pytest.mark.slow

MACHINES, STEPS = 16, 1200
FAST = {"ops": {n: {"config": {"epochs": 3, "boosting_iterations": 30}} for n in CANDIDATES}}
IO_BUCKET, LANDING_BUCKET, MLFLOW_BUCKET = "pdm-io", "pdm-landing", "pdm-mlflow"


def keys(client, bucket: str, prefix: str = "") -> list[str]:  # type: ignore[no-untyped-def]
    """Every object key in ``bucket`` below ``prefix``."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from moto.server import ThreadedMotoServer

    root = tmp_path_factory.mktemp("prod")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in {
                "PDM_ENV": "prod",
                "PDM_S3_BUCKET": IO_BUCKET,
                "PDM_S3_PREFIX": "pdm",
                "PDM_LANDING_S3_BUCKET": LANDING_BUCKET,
                "AWS_ENDPOINT_URL_S3": endpoint,
                "MLFLOW_S3_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": "us-east-1",
                "AWS_DEFAULT_REGION": "us-east-1",
                "PDM_HOME": str(root / "home"),
                "BENTOML_HOME": str(root / "home" / "bentoml"),
                "BENTOML_DO_NOT_TRACK": "True",
                # The registry's database stays a local file here (a PostgreSQL-backed
                # tracking server is tested in test_mlflow_prod.py); its artifacts go to S3.
                "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
                "PDM_MLFLOW_ARTIFACTS": f"s3://{MLFLOW_BUCKET}/artifacts",
            }.items():
                patch.setenv(name, value)
            patch.delenv("PDM_LANDING_DIR", raising=False)
            client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            for bucket in (IO_BUCKET, LANDING_BUCKET, MLFLOW_BUCKET):
                client.create_bucket(Bucket=bucket)
            resources = build_resources()
            resources["telemetry_source"] = TelemetrySource(sim_machines=MACHINES, sim_steps=STEPS)
            resources["drift_policy"] = DriftPolicy(min_effect_size=0.35)
            instance = dg.DagsterInstance.ephemeral()
            result = dg.materialize(
                list(definitions.defs.assets), selection=PIPELINE_SELECTION,
                resources=resources, instance=instance, run_config=FAST,
            )  # fmt: skip
            yield {
                "root": root, "client": client, "resources": resources,
                "instance": instance, "result": result,
            }  # fmt: skip
    finally:
        server.stop()


def test_prod_resources_are_the_s3_ones(prod: dict) -> None:
    resources = prod["resources"]
    assert isinstance(resources["warehouse"], S3Warehouse)
    assert isinstance(resources["warehouse_io_manager"], S3ParquetIOManager)
    assert isinstance(resources["alerts"], S3AlertSink)
    assert type(resources["io_manager"]).__name__ == "S3PickleIOManager"
    assert resources["landing_zone"].describe() == f"S3 landing zone s3://{LANDING_BUCKET}/landing"


def test_whole_graph_materialises_with_s3_storage(prod: dict) -> None:
    result, client = prod["result"], prod["client"]
    assert result.success
    materialised = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    expected = {
        key.to_user_string()
        for key in PIPELINE_SELECTION.resolve(list(definitions.defs.assets))  # type: ignore[arg-type]
    }
    assert expected <= materialised
    stored = keys(client, IO_BUCKET)
    for table in ("raw_telemetry", "training_set", "fleet_health"):
        assert f"pdm/warehouse/{table}/data.parquet" in stored, stored
    assert any(k.startswith("pdm/io/") for k in stored)  # pickled values (dagster-aws)
    assert any(k.startswith("artifacts/") for k in keys(client, MLFLOW_BUCKET))
    home = prod["root"] / "home"
    assert not (home / "warehouse.duckdb").exists()
    assert not (home / "storage").exists() and not (home / "artifacts").exists()

    # The stored table is what the asset produced, readable by plain pyarrow/pandas.
    body = client.get_object(Bucket=IO_BUCKET, Key="pdm/warehouse/fleet_health/data.parquet")
    ranked = pd.read_parquet(io.BytesIO(body["Body"].read()))
    assert ranked["machine_id"].nunique() == MACHINES


def test_landing_sensor_reads_the_s3_prefix_and_ingestion_is_idempotent(prod: dict) -> None:
    client, resources, instance = prod["client"], prod["resources"], prod["instance"]
    frame = batch_frame(FeedConfig(n_machines=MACHINES, start_step=STEPS), 0)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    data = buffer.getvalue()
    client.put_object(Bucket=LANDING_BUCKET, Key="landing/incoming/batch-0.parquet", Body=data)
    batch = batch_id("batch-0.parquet", data)

    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        tick = landing_zone_sensor(context)
    assert [r.partition_key for r in tick.run_requests] == [batch]
    assert [r.run_key for r in tick.run_requests] == [batch]
    instance.add_dynamic_partitions("telemetry_batches", [batch])

    job = definitions.defs.resolve_job_def("ingest_telemetry")
    for _ in range(2):  # the second run is a retry / backfill of the same partition
        run = job.execute_in_process(partition_key=batch, resources=resources, instance=instance)
        assert run.success
    landed = keys(client, IO_BUCKET, "pdm/warehouse/landed_telemetry/")
    assert landed == [f"pdm/warehouse/landed_telemetry/batch_id={batch}.parquet"]
    assert keys(client, LANDING_BUCKET, "landing/archive/") == [f"landing/archive/{batch}.parquet"]
    assert keys(client, LANDING_BUCKET, "landing/incoming/") == []
    with resources["warehouse"].get_connection() as connection:
        count = connection.execute("select count(*) from pdm.landed_telemetry").fetchall()[0][0]
    assert count == len(frame) == MACHINES * 50

    report = [
        e for e in run.get_asset_materialization_events() if e.asset_key.path[-1] == "drift_report"
    ]
    assert report, "drift_report was not materialised"
    reports = keys(client, IO_BUCKET, "pdm/artifacts/drift/")
    assert any(k.endswith(".html") for k in reports), reports


def test_alerts_are_objects_recorded_once(prod: dict) -> None:
    sink, client = prod["resources"]["alerts"], prod["client"]
    before = keys(client, IO_BUCKET, "pdm/alerts/")
    alert = Alert(kind="drift", severity="warning", title="test", details={"a": 1}, dedup_key="k-1")
    assert [o.status for o in sink.raise_alerts([alert, alert])] == ["recorded", "duplicate"]
    assert [o.status for o in sink.raise_alerts([alert])] == ["duplicate"]
    assert len(keys(client, IO_BUCKET, "pdm/alerts/")) == len(before) + 1
    recent = sink.recent_alerts()
    assert recent.loc[recent["dedup_key"] == "k-1", "title"].tolist() == ["test"]


def test_metrics_exporter_serves_the_s3_warehouse(prod: dict) -> None:
    """``python -m pdm_platform.fleet_metrics`` with the run pods' environment, over HTTP."""
    client, warehouse = prod["client"], prod["resources"]["warehouse"]
    with warehouse.get_connection() as connection:
        levels = dict(
            connection.execute(
                "select risk_level, count(*) from pdm.fleet_health group by risk_level"
            ).fetchall()
        )
    kinds = collections.Counter(k.split("/")[2] for k in keys(client, IO_BUCKET, "pdm/alerts/"))
    assert kinds, "no alert objects to count"
    port = free_port()
    exporter = subprocess.Popen(
        [sys.executable, "-m", "pdm_platform.fleet_metrics", "--port", str(port)],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline, text = time.monotonic() + 120, ""
        while time.monotonic() < deadline and exporter.poll() is None:
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
                break
            except requests.ConnectionError:
                time.sleep(0.5)
    finally:
        exporter.kill()
        output = exporter.communicate()[0]
    assert "pdm_warehouse_up 1.0" in text, output
    assert f"S3 warehouse s3://{IO_BUCKET}/pdm/warehouse" in output
    for level, count in levels.items():
        assert f'pdm_fleet_machines{{risk_level="{level}"}} {float(count)}' in text
    for kind, count in kinds.items():
        assert f'pdm_alerts_raised_total{{kind="{kind}"}} {float(count)}' in text


def test_stray_local_state_stays_out(prod: dict) -> None:
    """Only the BentoML store (and what libraries create empty) may be under PDM_HOME."""
    home: Path = prod["root"] / "home"
    if home.exists():
        written = {p.relative_to(home).parts[0] for p in home.rglob("*") if p.is_file()}
        assert written <= {"bentoml"}, written
