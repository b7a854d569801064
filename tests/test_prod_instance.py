"""The production Dagster instance (``deploy/dagster/dagster.yaml``) on a real PostgreSQL.

The template is rendered with this test's environment (PostgreSQL on 127.0.0.1, a moto S3
server for the compute logs); since there is no cluster, the copy loads its Kubernetes client
configuration from a dummy kubeconfig instead of the in-cluster service account. A tiny
two-asset job runs through the instance in process (the K8s launcher is not involved in
``materialize``); its run, events and materializations are then read back through Dagster, a
second instance object (another "pod") and SQL.

No ``from __future__ import annotations``: Dagster inspects the assets' type hints at runtime.
"""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import dagster as dg
import pytest
import yaml

from pdm_assets.jobs import INGESTION_RUNS, SERIAL_TAG, TRAINING_RUNS
from tests.services import moto_s3_server, postgres_server

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = REPO_ROOT / "deploy" / "dagster" / "dagster.yaml"
BUCKET = "pdm-prod-test"
LOG_PREFIX = "dagster/compute-logs"
MARKER = "pdm-compute-log-marker-7f3a"
FORWARDED = ["PDM_ENV", "PDM_S3_BUCKET", "PDM_S3_PREFIX", "PDM_LANDING_S3_BUCKET"]
FORWARDED += ["AWS_REGION", "MLFLOW_TRACKING_URI"]
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster:
      server: https://127.0.0.1:1
users:
  - name: nobody
    user:
      token: not-a-token
contexts:
  - name: nowhere
    context:
      cluster: nowhere
      user: nobody
      namespace: dagster
current-context: nowhere
"""


@pytest.fixture(scope="module")
def prod_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """PostgreSQL, moto S3 and the environment the template reads, set in ``os.environ``."""
    with (
        postgres_server(database="dagster") as url,
        moto_s3_server(BUCKET) as endpoint,
        pytest.MonkeyPatch.context() as patch,
    ):
        parts = urlsplit(url)
        env = {
            "DAGSTER_PG_USERNAME": parts.username or "postgres",
            "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
            "DAGSTER_PG_HOST": parts.hostname or "127.0.0.1",
            "DAGSTER_PG_DB": parts.path.lstrip("/"),
            "DAGSTER_PG_PORT": str(parts.port),
            "PDM_ENV": "prod",
            "PDM_S3_BUCKET": BUCKET,
            "PDM_S3_PREFIX": "pdm",
            "PDM_LANDING_S3_BUCKET": BUCKET,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": endpoint,
            "MLFLOW_TRACKING_URI": "http://mlflow.mlflow.svc:5000",
        }
        for name, value in env.items():
            patch.setenv(name, value)
        kubeconfig = tmp_path_factory.mktemp("kube") / "config"
        kubeconfig.write_text(KUBECONFIG)
        yield {"url": url, "endpoint": endpoint, "kubeconfig": kubeconfig, "env": env}


def render(directory: Path, kubeconfig: Path) -> Path:
    """Copies the template into ``directory``, pointing the K8s client at ``kubeconfig``.

    The staging directory of the compute logs moves into ``directory`` too (hermetic runs).
    """
    config = yaml.safe_load(TEMPLATE.read_text())
    launcher = config["run_launcher"]["config"]
    assert launcher["load_incluster_config"] is True  # what production uses
    launcher["load_incluster_config"] = False
    launcher["kubeconfig_file"] = str(kubeconfig)
    directory.mkdir(parents=True, exist_ok=True)
    config["compute_logs"]["config"]["local_dir"] = str(directory / "compute-logs")
    (directory / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return directory


@pytest.fixture(scope="module")
def instance(
    prod_env: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dg.DagsterInstance]:
    """The rendered production instance (one "pod")."""
    home = render(tmp_path_factory.mktemp("pod-a"), prod_env["kubeconfig"])
    loaded = dg.DagsterInstance.from_config(str(home))
    yield loaded
    loaded.dispose()


@dg.asset
def readings() -> list[float]:
    """Three sensor readings; prints a marker that the compute log must carry."""
    print(MARKER)
    return [1.0, 2.0, 6.0]


@dg.asset
def mean_reading(context: dg.AssetExecutionContext, readings: list[float]) -> float:
    """The mean of the readings, with metadata to find in the event log."""
    value = sum(readings) / len(readings)
    context.add_output_metadata({"mean": value, "n": len(readings)})
    return value


def test_template_takes_secrets_and_hosts_from_the_environment() -> None:
    config = yaml.safe_load(TEMPLATE.read_text())
    db = config["storage"]["postgres"]["postgres_db"]
    assert {key: db[key] for key in ("username", "password", "hostname", "db_name", "port")} == {
        "username": {"env": "DAGSTER_PG_USERNAME"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "db_name": {"env": "DAGSTER_PG_DB"},
        "port": {"env": "DAGSTER_PG_PORT"},
    }
    # SQLAlchemy 2.1 would pick psycopg 3 for a bare postgresql://, which dagster-postgres
    # cannot write events with (see the comment in the template).
    assert db["scheme"] == "postgresql+psycopg2"
    assert config["compute_logs"]["config"]["bucket"] == {"env": "PDM_S3_BUCKET"}
    assert "endpoint_url" not in config["compute_logs"]["config"]  # AWS unless overridden
    assert config["telemetry"] == {"enabled": False}
    assert config["run_monitoring"]["enabled"] is True
    launcher = config["run_launcher"]["config"]
    assert "kubeconfig_file" not in launcher and launcher["load_incluster_config"] is True
    # The password reaches run pods from a Secret, never from the file or the launcher env.
    assert launcher["postgres_password_secret"] == "dagster-postgresql-secret"
    assert "DAGSTER_PG_PASSWORD" not in launcher["env_vars"]
    assert set(FORWARDED) <= set(launcher["env_vars"])


def test_instance_is_postgres_k8s_queued_and_s3(instance: dg.DagsterInstance) -> None:
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_k8s import K8sRunLauncher
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    launcher = instance.run_launcher
    assert isinstance(launcher, K8sRunLauncher)
    assert launcher.job_namespace == "dagster"
    assert launcher.service_account_name == "dagster-user-code"
    assert launcher.image_pull_policy == "IfNotPresent"
    assert set(FORWARDED) <= set(launcher.env_vars)
    assert launcher.resources["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert "memory" in launcher.resources["limits"]
    coordinator = instance.run_coordinator
    assert isinstance(coordinator, QueuedRunCoordinator)
    queue = coordinator.get_run_queue_config()
    assert queue.max_concurrent_runs == 4
    serial = {
        (limit["key"], limit["value"], limit["limit"]) for limit in queue.tag_concurrency_limits
    }
    # The jobs carry these tags (checked in test_code_location_resolves_every_job).
    assert serial == {(SERIAL_TAG, "ingestion", 1), (SERIAL_TAG, "training", 1)}

    assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
    assert instance.run_monitoring_enabled
    assert not instance.telemetry_enabled


def test_run_events_and_state_live_in_postgres(
    instance: dg.DagsterInstance, prod_env: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    import psycopg
    from dagster._core.remote_origin import (
        GrpcServerCodeLocationOrigin,
        RemoteInstigatorOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        InstigatorType,
        SensorInstigatorData,
    )

    result = dg.materialize([readings, mean_reading], instance=instance)
    assert result.success
    run_id = result.run_id
    assert result.output_for_node("mean_reading") == 3.0

    run = instance.get_run_by_id(run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    events = instance.all_logs(run_id)
    types = [e.dagster_event.event_type for e in events if e.dagster_event is not None]
    assert types.count(dg.DagsterEventType.ASSET_MATERIALIZATION) == 2
    assert dg.DagsterEventType.RUN_SUCCESS in types
    latest = instance.get_latest_materialization_event(dg.AssetKey("mean_reading"))
    assert latest is not None and latest.run_id == run_id
    materialization = latest.asset_materialization
    assert materialization is not None and materialization.metadata["mean"].value == 3.0

    # A sensor's state, as the daemon stores it, for the user-code gRPC server of the chart.
    origin = RemoteInstigatorOrigin(
        repository_origin=RemoteRepositoryOrigin(
            code_location_origin=GrpcServerCodeLocationOrigin(
                host="dagster-user-code", port=3030, location_name="pdm"
            ),
            repository_name="__repository__",
        ),
        instigator_name="landing_zone_sensor",
    )
    state = InstigatorState(
        origin,
        InstigatorType.SENSOR,
        InstigatorStatus.RUNNING,
        SensorInstigatorData(min_interval=30, cursor="batch-0001", sensor_type=None),
    )
    instance.add_instigator_state(state)

    # Another pod: its own copy of the file, the same database.
    other_home = render(tmp_path_factory.mktemp("pod-b"), prod_env["kubeconfig"])
    other = dg.DagsterInstance.from_config(str(other_home))
    try:
        seen = other.get_run_by_id(run_id)
        assert seen is not None and seen.status == dg.DagsterRunStatus.SUCCESS
        assert seen.job_name == run.job_name
        assert [r.run_id for r in other.get_runs()] == [run_id]
        other_latest = other.get_latest_materialization_event(dg.AssetKey("mean_reading"))
        assert other_latest is not None and other_latest.run_id == run_id
        stored = other.get_instigator_state(state.instigator_origin_id, state.selector_id)
        assert stored is not None and stored.status == InstigatorStatus.RUNNING
        assert isinstance(stored.instigator_data, SensorInstigatorData)
        assert stored.instigator_data.cursor == "batch-0001"
    finally:
        other.dispose()

    # And in SQL, straight from PostgreSQL.
    with psycopg.connect(prod_env["url"]) as con, con.cursor() as cur:
        cur.execute("select count(*), min(status) from runs where run_id = %s", (run_id,))
        assert cur.fetchone() == (1, "SUCCESS")
        cur.execute(
            "select count(*) from event_logs where run_id = %s and dagster_event_type = %s",
            (run_id, "ASSET_MATERIALIZATION"),
        )
        assert cur.fetchone()[0] == 2
        cur.execute("select asset_key from asset_keys order by asset_key")
        assert [row[0] for row in cur.fetchall()] == ['["mean_reading"]', '["readings"]']
        cur.execute(
            "select instigator_type, status, instigator_body from instigators"
            " where selector_id = %s",
            (state.selector_id,),
        )
        rows = cur.fetchall()
        assert [(kind, status) for kind, status, _ in rows] == [("SENSOR", "RUNNING")]
        assert "landing_zone_sensor" in rows[0][2] and "batch-0001" in rows[0][2]

    # The run's stdout went to the compute log bucket (uploaded when the capture closed).
    s3 = boto3.client("s3", endpoint_url=prod_env["endpoint"])
    deadline = time.monotonic() + 10
    while True:
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{LOG_PREFIX}/")
        keys = [item["Key"] for item in listed.get("Contents", [])]
        outs = [key for key in keys if run_id in key and key.endswith(".out")]
        if outs or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert outs, f"no compute log of {run_id} in s3://{BUCKET}/{LOG_PREFIX}/: {keys}"
    bodies = [s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode() for key in outs]
    assert any(MARKER in body for body in bodies)


def test_code_location_resolves_every_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDM_HOME", str(tmp_path))
    monkeypatch.setenv("PDM_ENV", "local")  # importable without cloud settings
    for name in ("PDM_LANDING_S3_BUCKET", "MLFLOW_TRACKING_URI", "PDM_MLFLOW_ARTIFACTS"):
        monkeypatch.delenv(name, raising=False)
    from pdm_platform.definitions import defs

    names = ["full_pipeline", "ingest_telemetry", "retrain", "drift_check", "simulate_feed"]
    for name in names:
        job = defs.resolve_job_def(name)  # get_job_def's successor for asset jobs
        assert job.name == name
        assert job.graph.node_defs, f"{name} has no nodes"
    tags = {name: defs.resolve_job_def(name).tags for name in names}
    assert tags["ingest_telemetry"] == INGESTION_RUNS
    assert tags["full_pipeline"] == tags["retrain"] == TRAINING_RUNS
    repository = defs.get_repository_def()
    assert set(names) <= {job.name for job in repository.get_all_jobs()}
    assert {s.name for s in repository.sensor_defs} >= {"landing_zone_sensor"}
