"""Where ``MlflowTracking.from_env`` puts the artifacts of a new experiment."""

from __future__ import annotations

from pathlib import Path

import pytest

from pdm_resources.mlflow_tracking import MlflowTracking, is_tracking_server


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``PDM_HOME`` and no MLflow settings from the caller's environment."""
    monkeypatch.setenv("PDM_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PDM_MLFLOW_ARTIFACTS", raising=False)
    return tmp_path


def test_local_default_is_sqlite_with_artifacts_beside_it(home: Path) -> None:
    tracking = MlflowTracking.from_env()
    database = home.resolve() / "mlflow" / "mlflow.db"
    assert tracking.tracking_uri == f"sqlite:///{database}"
    expected = (home.resolve() / "mlflow" / "artifacts").as_uri()
    assert tracking.artifact_location == expected
    assert tracking.artifact_root() == expected


@pytest.mark.parametrize(
    "uri", ["http://mlflow.mlflow.svc:5000", "https://mlflow.example.com", "HTTP://host:80/"]
)
def test_tracking_server_chooses_its_own_artifact_root(
    home: Path, monkeypatch: pytest.MonkeyPatch, uri: str
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracking = MlflowTracking.from_env()
    assert tracking.tracking_uri == uri
    assert tracking.artifact_location == ""
    assert tracking.artifact_root() is None  # create_experiment(artifact_location=None)
    # Built directly, without from_env, the same rule holds.
    assert MlflowTracking(tracking_uri=uri).artifact_root() is None


def test_a_server_leaves_pdm_home_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "not-created"  # e.g. a read-only root filesystem in a pod
    monkeypatch.setenv("PDM_HOME", str(home))
    monkeypatch.delenv("PDM_MLFLOW_ARTIFACTS", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.mlflow.svc:5000")
    assert MlflowTracking.from_env().artifact_root() is None
    assert not home.exists()


def test_explicit_artifacts_win_for_a_server(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com")
    monkeypatch.setenv("PDM_MLFLOW_ARTIFACTS", "s3://bucket/mlflow")
    assert MlflowTracking.from_env().artifact_root() == "s3://bucket/mlflow"


def test_database_store_without_server_keeps_a_local_root(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://user@db:5432/mlflow")
    tracking = MlflowTracking.from_env()
    assert tracking.artifact_root() == (home.resolve() / "mlflow" / "artifacts").as_uri()


@pytest.mark.parametrize(
    ("uri", "server"),
    [
        ("http://127.0.0.1:5000", True),
        (" https://x ", True),
        ("sqlite:////tmp/mlflow.db", False),
        ("postgresql+psycopg://u@h/db", False),
        ("file:///tmp/mlruns", False),
        ("databricks", False),
    ],
)
def test_is_tracking_server(uri: str, server: bool) -> None:
    assert is_tracking_server(uri) is server
