"""Where the embedded default keeps its state: everything under one ``PDM_HOME``."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def pdm_home() -> Path:
    """Returns ``$PDM_HOME`` (default ``.pdm/`` in the repository), created if needed."""
    home = Path(os.environ.get("PDM_HOME", REPO_ROOT / ".pdm")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def warehouse_path() -> Path:
    """DuckDB warehouse file."""
    return pdm_home() / "warehouse.duckdb"


def dagster_home() -> Path:
    """Dagster instance directory (runs, event logs, schedules)."""
    path = pdm_home() / "dagster"
    path.mkdir(parents=True, exist_ok=True)
    return path


def storage_dir() -> Path:
    """Directory of the filesystem IO manager (non-table asset values)."""
    return pdm_home() / "storage"


def artifacts_dir() -> Path:
    """Directory of files the pipeline writes for people (quarantine, reports)."""
    return pdm_home() / "artifacts"


def landing_dir() -> Path:
    """Root of the local landing zone: ``$PDM_LANDING_DIR``, else ``$PDM_HOME/landing``."""
    configured = os.environ.get("PDM_LANDING_DIR")
    return Path(configured) if configured else pdm_home() / "landing"


def mlflow_tracking_uri() -> str:
    """The local MLflow store (SQLite under ``$PDM_HOME/mlflow``), created if needed."""
    directory = pdm_home() / "mlflow"
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'mlflow.db'}"


def bentoml_home() -> Path:
    """BentoML's store of models and Bentos (``BENTOML_HOME``), default under ``$PDM_HOME``."""
    return Path(os.environ.get("BENTOML_HOME", pdm_home() / "bentoml")).expanduser().resolve()
