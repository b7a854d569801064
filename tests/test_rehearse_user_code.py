"""The Dagster user code as production runs it, rehearsed without a container engine or cluster.

1. An environment built by the steps ``deploy/dagster/Dockerfile`` runs: its ``uv sync`` lines,
   from the lock file, into a fresh environment (with the uv cache, and without compiling
   bytecode: both only change the build's speed).
2. ``dagster api grpc`` with the Helm values' ``dagsterApiGrpcArgs`` on their ``port``, from
   that environment, with the run pods' variables (``PDM_ENV=prod``; S3 on a moto server).
3. ``dagster-webserver`` and ``dagster-daemon`` on the production ``dagster.yaml``: a real
   PostgreSQL for runs, events and schedules, the queued run coordinator with its limits, the
   S3 compute logs. Its ``K8sRunLauncher`` is the one part replaced (by the default launcher,
   which starts the run worker from the code server): there is no cluster to start a Job in.
4. One ``full_pipeline`` run launched through the webserver's GraphQL API, as the UI's
   "Materialize all" launches it, is dequeued by the daemon, succeeds, and leaves its tables in
   S3, its run in PostgreSQL and its step logs in S3.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
import yaml

from pdm_assets.models import CANDIDATES
from pdm_core.names import FULL_PIPELINE_JOB
from pdm_platform.drift_demo import stop_process_group
from pdm_platform.rehearse_serve import find_uv
from tests.services import free_port, moto_s3_server, postgres_server
from tests.tooling import unavailable

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "deploy" / "dagster" / "Dockerfile"
VALUES = REPO / "deploy" / "dagster" / "user-code-values.yaml"
INSTANCE = REPO / "deploy" / "dagster" / "dagster.yaml"
IO_BUCKET, LANDING_BUCKET, MLFLOW_BUCKET = "pdm-io", "pdm-landing", "pdm-mlflow"
FAST = {"ops": {n: {"config": {"epochs": 3, "boosting_iterations": 30}} for n in CANDIDATES}}


def uv() -> str:
    try:
        return find_uv()
    except RuntimeError as error:
        unavailable(str(error))


def dockerfile_syncs() -> list[list[str]]:
    """The ``RUN uv sync ...`` commands of the Dockerfile, in order."""
    commands = [
        shlex.split(m.group(1))
        for m in re.finditer(r"^RUN (uv sync [^\n]*)$", DOCKERFILE.read_text(), re.M)
    ]
    assert len(commands) == 2 and "--no-install-project" in commands[0], commands
    return commands


@pytest.fixture(scope="module")
def image_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user-code image's environment, built by the Dockerfile's own sync commands."""
    venv = tmp_path_factory.mktemp("image") / "venv"
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON": getattr(sys, "_base_executable", sys.executable),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_COMPILE_BYTECODE": "0",
        "UV_FROZEN": "1",
    }
    for command in dockerfile_syncs():
        done = subprocess.run([uv(), *command[1:]], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=900)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    # Only the locked, non-dev packages: the test tools of this checkout are not in it.
    listed = subprocess.run([uv(), "pip", "list", "--python", str(venv / "bin" / "python")],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "dagster-k8s" in listed and "pytest" not in listed.split()
    return venv


@pytest.fixture(scope="module")
def platform(image_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Code server, webserver and daemon of the production shape, up and loaded."""
    root = tmp_path_factory.mktemp("user-code")
    values = yaml.safe_load(VALUES.read_text())["deployments"][0]
    with (
        postgres_server(database="dagster") as url,
        moto_s3_server(IO_BUCKET, LANDING_BUCKET, MLFLOW_BUCKET) as endpoint,
    ):
        parts = urlsplit(url)
        env = {
            **os.environ,
            **{k: str(v) for k, v in values["env"].items()},  # PDM_ENV=prod, PDM_S3_PREFIX, ...
            "PDM_S3_BUCKET": IO_BUCKET,
            "PDM_LANDING_S3_BUCKET": LANDING_BUCKET,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": endpoint,
            "MLFLOW_S3_ENDPOINT_URL": endpoint,
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "PDM_MLFLOW_ARTIFACTS": f"s3://{MLFLOW_BUCKET}/artifacts",
            "DAGSTER_PG_USERNAME": parts.username or "postgres",
            "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
            "DAGSTER_PG_HOST": parts.hostname or "127.0.0.1",
            "DAGSTER_PG_DB": parts.path.lstrip("/"),
            "DAGSTER_PG_PORT": str(parts.port),
            "DAGSTER_HOME": str(root / "dagster"),
            "PDM_HOME": str(root / "home"),
            "BENTOML_HOME": str(root / "home" / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "True",
            "PDM_SIM_MACHINES": "16",
            "PDM_SIM_STEPS": "1200",
            "PDM_DRIFT_MIN_EFFECT": "0.35",
            "PATH": f"{image_env / 'bin'}:{os.environ['PATH']}",
        }
        env.pop("VIRTUAL_ENV", None)
        instance = yaml.safe_load(INSTANCE.read_text())
        assert instance["run_launcher"]["class"] == "K8sRunLauncher"
        instance.pop("run_launcher")  # no cluster: the default launcher (a subprocess)
        instance["compute_logs"]["config"]["local_dir"] = str(root / "compute-logs")
        (root / "dagster").mkdir()
        (root / "dagster" / "dagster.yaml").write_text(yaml.safe_dump(instance))
        port = int(values["port"])
        workspace = root / "workspace.yaml"
        workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": {
            "host": "127.0.0.1", "port": port, "location_name": values["name"]}}]}))  # fmt: skip
        processes = []
        try:
            grpc = [str(image_env / "bin" / "dagster"), "api", "grpc",
                    *values["dagsterApiGrpcArgs"], "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
            processes.append(start(grpc, env, root / "grpc.log"))
            wait_for(lambda: grpc_ready(image_env, port, env), 180, root / "grpc.log")
            web_port = free_port()
            web = [str(image_env / "bin" / "dagster-webserver"), "-h", "127.0.0.1",
                   "-p", str(web_port), "-w", str(workspace)]  # fmt: skip
            processes.append(start(web, env, root / "webserver.log"))
            daemon = [str(image_env / "bin" / "dagster-daemon"), "run", "-w", str(workspace)]
            processes.append(start(daemon, env, root / "daemon.log"))
            wait_for(lambda: web_ready(web_port), 180, root / "webserver.log")
            yield {"root": root, "env": env, "web_port": web_port, "endpoint": endpoint,
                   "location": values["name"], "pg": url}  # fmt: skip
        finally:
            for process in reversed(processes):
                stop_process_group(process)


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as handle:
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=REPO)  # fmt: skip


def grpc_ready(venv: Path, port: int, env: dict[str, str]) -> bool:
    check = [str(venv / "bin" / "dagster"), "api", "grpc-health-check", "-p", str(port)]
    return subprocess.run(check, env=env, capture_output=True, timeout=30).returncode == 0


def web_ready(port: int) -> bool:
    import requests

    try:
        return requests.get(f"http://127.0.0.1:{port}/server_info", timeout=5).ok
    except requests.RequestException:
        return False


def wait_for(ready, timeout: float, log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            raise TimeoutError(f"not up after {timeout:.0f} s; {log.name}:\n{tail}")
        time.sleep(1)


def test_a_pipeline_run_through_the_webserver_writes_to_s3(platform: dict) -> None:
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    client = DagsterGraphQLClient("127.0.0.1", port_number=platform["web_port"])
    run_id = client.submit_job_execution(
        FULL_PIPELINE_JOB, repository_location_name=platform["location"], run_config=FAST
    )
    deadline, status = time.monotonic() + 900, None
    while time.monotonic() < deadline:
        try:
            status = client.get_run_status(run_id).value
        except DagsterGraphQLClientError:
            status = None
        if status in {"SUCCESS", "FAILURE", "CANCELED"}:
            break
        time.sleep(5)
    logs = {name: (platform["root"] / name).read_text(errors="replace")[-2000:]
            for name in ("daemon.log", "grpc.log")}  # fmt: skip
    assert status == "SUCCESS", f"run {run_id} ended {status}: {logs}"

    s3 = boto3.client("s3", endpoint_url=platform["endpoint"], region_name="us-east-1")
    keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=IO_BUCKET)
            for item in page.get("Contents", [])]  # fmt: skip
    for table in ("raw_telemetry", "training_set", "fleet_health"):
        assert f"pdm/warehouse/{table}/data.parquet" in keys, keys[:50]
    step_logs = [k for k in keys if k.startswith("dagster/compute-logs/storage/") and run_id in k]
    assert step_logs, "no step log of the run in S3"
    assert not (platform["root"] / "home" / "warehouse.duckdb").exists()

    import dagster as dg

    with pytest.MonkeyPatch.context() as patch:  # the variables the instance file reads
        for name, value in platform["env"].items():
            if name.startswith(("DAGSTER_PG_", "PDM_S3_", "AWS_")):
                patch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(platform["root"] / "dagster")) as instance:
            run = instance.get_run_by_id(run_id)  # from PostgreSQL, as another pod reads it
            assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
            assert run.job_name == FULL_PIPELINE_JOB
