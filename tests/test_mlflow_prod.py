"""MLflow in its production shape: a tracking server on PostgreSQL with artifacts in S3.

A real ``mlflow server`` subprocess (``--serve-artifacts``) stores runs and the registry in a
throw-away PostgreSQL and artifacts under ``s3://<bucket>/mlflow`` of a moto S3 server. The
client side is the project's own :class:`MlflowTracking` with an ``http://`` tracking URI and no
S3 endpoint of its own: every artifact goes through the server's proxy, as from a pod that has
no S3 credentials for the MLflow bucket.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from pdm_platform.drift_demo import stop_process_group
from pdm_resources.mlflow_tracking import CHAMPION, MlflowTracking
from tests.services import free_port, moto_s3_server, postgres_server

pytestmark = pytest.mark.slow

BUCKET = "pdm-mlflow"
MODEL = "pdm-prod-shape-model"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """PostgreSQL, moto S3 and ``mlflow server`` on 127.0.0.1; yields their addresses."""
    with postgres_server(database="mlflow") as url, moto_s3_server(BUCKET) as endpoint:
        backend = url.replace("postgresql://", "postgresql+psycopg://", 1)
        port = free_port()
        env = {
            **os.environ,
            "MLFLOW_S3_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            # The server's background job runner (huey consumers for GenAI scorers and trace
            # rollups) is of no use to this project and doubles the start-up time on 2 cores.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        log = tmp_path_factory.mktemp("mlflow-server") / "server.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "mlflow", "server",
                    "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                    "--backend-store-uri", backend,
                    "--artifacts-destination", f"s3://{BUCKET}/mlflow",
                    "--serve-artifacts",
                ],
                env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            # Client-side imports while the server starts (it takes tens of seconds).
            import mlflow.sklearn  # noqa: F401
            import sklearn.linear_model  # noqa: F401

            deadline = time.monotonic() + 100
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"mlflow server exited:\n{log.read_text()}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server not healthy:\n{log.read_text()}")
                time.sleep(0.3)
            yield {"uri": f"http://127.0.0.1:{port}", "pg": url, "s3": endpoint, "log": log}
        finally:
            stop_process_group(process, grace=15)


def test_run_model_registry_and_alias_through_the_server(
    server: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import numpy as np
    import psycopg
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    # The client has no S3 endpoint: artifacts can only reach moto through the server.
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("PDM_MLFLOW_ARTIFACTS", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server["uri"])

    from_env = MlflowTracking.from_env()
    assert from_env.tracking_uri == server["uri"] and from_env.artifact_root() is None
    tracking = MlflowTracking(tracking_uri=server["uri"], registered_model=MODEL)
    experiment_id = tracking.activate()
    experiment = mlflow.get_experiment(experiment_id)
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), experiment

    rng = np.random.default_rng(7)
    features = rng.normal(size=(200, 4))
    labels = (features[:, 0] + 0.5 * features[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(features, labels)
    accuracy = float(model.score(features, labels))
    signature = infer_signature(features, model.predict(features))
    with mlflow.start_run(run_name="prod-shape") as run:
        mlflow.log_metric("train_accuracy", accuracy)
        info = mlflow.sklearn.log_model(
            model, name="model", signature=signature, registered_model_name=MODEL,
            pip_requirements=["scikit-learn"],
        )  # fmt: skip
    run_id = run.info.run_id
    version = str(info.registered_model_version)
    assert accuracy > 0.9

    client = tracking.client()
    client.set_registered_model_alias(MODEL, CHAMPION, version)
    assert str(client.get_model_version_by_alias(MODEL, CHAMPION).version) == version
    assert client.get_run(run_id).data.metrics["train_accuracy"] == accuracy
    assert client.get_run(run_id).info.artifact_uri.startswith("mlflow-artifacts:")

    loaded = mlflow.pyfunc.load_model(f"models:/{MODEL}@{CHAMPION}")
    probe = rng.normal(size=(16, 4))
    assert list(loaded.predict(probe)) == list(model.predict(probe))
    assert loaded.metadata.get_input_schema() is not None

    # The artifacts are objects in the bucket under mlflow/, not files on this machine.
    s3 = boto3.client("s3", endpoint_url=server["s3"])
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="mlflow/")
    keys = [item["Key"] for item in listed.get("Contents", [])]
    model_files = {key.rsplit("/", 1)[-1] for key in keys}
    assert {"MLmodel", "requirements.txt"} <= model_files, keys
    assert model_files & {"model.skops", "model.pkl"}, keys  # MLflow 3.17 writes skops
    assert all(key.startswith(f"mlflow/{experiment_id}/") for key in keys), keys

    # Runs, metrics and the registry are rows in PostgreSQL.
    with psycopg.connect(server["pg"]) as con, con.cursor() as cur:
        cur.execute("select status, artifact_uri from runs where run_uuid = %s", (run_id,))
        status, artifact_uri = cur.fetchone()
        assert status == "FINISHED" and artifact_uri.startswith("mlflow-artifacts:")
        cur.execute(
            "select value from latest_metrics where run_uuid = %s and key = 'train_accuracy'",
            (run_id,),
        )
        assert cur.fetchone()[0] == pytest.approx(accuracy)
        cur.execute("select version, run_id from model_versions where name = %s", (MODEL,))
        assert cur.fetchall() == [(int(version), run_id)]
        cur.execute("select alias, version from registered_model_aliases where name = %s", (MODEL,))
        assert cur.fetchall() == [(CHAMPION, int(version))]
