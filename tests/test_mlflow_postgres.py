"""The production shape of MLflow tracking and the registry on a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pdm_platform.rollback import rollback, versions
from pdm_resources.mlflow_tracking import CHAMPION, FLEET_MODEL, MlflowTracking
from tests.services import postgres_server


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("pg")
    with postgres_server(database="mlflow") as url:
        yield MlflowTracking(tracking_uri=url, artifact_location=(root / "artifacts").as_uri())


def _log_version(tracking: MlflowTracking, value: float) -> str:
    import mlflow

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input: pd.DataFrame, params=None):  # type: ignore[no-untyped-def]
            return [value] * len(model_input)

    tracking.activate()
    with mlflow.start_run(run_name=f"constant-{value}"):
        mlflow.log_param("value", value)
        for step in range(3):
            mlflow.log_metric("epoch_loss", 1.0 / (step + 1), step=step)
        mlflow.log_metric("test_pr_auc", value)
        info = mlflow.pyfunc.log_model(
            name="model", python_model=Constant(), registered_model_name=FLEET_MODEL,
            pip_requirements=["mlflow"],
        )  # fmt: skip
    return str(info.registered_model_version)


def test_runs_registry_alias_and_rollback_on_postgresql(tracking: MlflowTracking) -> None:
    import mlflow
    import psycopg

    first = _log_version(tracking, 0.5)
    second = _log_version(tracking, 0.7)
    client = tracking.client()
    client.set_registered_model_alias(FLEET_MODEL, CHAMPION, second)
    assert str(client.get_model_version_by_alias(FLEET_MODEL, CHAMPION).version) == second
    loaded = mlflow.pyfunc.load_model(f"models:/{FLEET_MODEL}@{CHAMPION}")
    assert loaded.predict(pd.DataFrame({"x": [1, 2]})) == [0.7, 0.7]
    assert rollback(tracking, int(first)) == (second, first)
    assert str(client.get_model_version_by_alias(FLEET_MODEL, CHAMPION).version) == first
    assert [v for v, _ in versions(tracking)] == [int(second), int(first)]
    runs = mlflow.search_runs(order_by=["params.value"])
    assert list(runs["metrics.test_pr_auc"]) == [0.5, 0.7]
    history = client.get_metric_history(runs["run_id"][0], "epoch_loss")
    assert [m.step for m in history] == [0, 1, 2]
    # The runs really live in PostgreSQL, not in a local file.
    with psycopg.connect(tracking.tracking_uri) as con, con.cursor() as cur:
        cur.execute("select count(*) from runs")
        assert cur.fetchone()[0] == 2
        cur.execute("select count(*) from model_versions")
        assert cur.fetchone()[0] == 2


def test_postgres_url_is_not_a_local_path(tracking: MlflowTracking) -> None:
    assert tracking.tracking_uri.startswith("postgresql://127.0.0.1") is False
    assert tracking.tracking_uri.startswith("postgresql://postgres@127.0.0.1:")
    assert not Path(tracking.tracking_uri).exists()
