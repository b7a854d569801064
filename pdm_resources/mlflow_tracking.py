"""MLflow tracking and registry: local SQLite + files by default, any tracking URI in prod.

Local default: ``sqlite:///$PDM_HOME/mlflow/mlflow.db`` with artifacts under
``$PDM_HOME/mlflow/artifacts`` (no server). Production: set ``MLFLOW_TRACKING_URI`` (e.g. a
tracking server backed by PostgreSQL and S3) and, if needed, ``PDM_MLFLOW_ARTIFACTS``.

With a tracking *server* (``http://`` or ``https://``) and no ``PDM_MLFLOW_ARTIFACTS``, the
experiment is created without an artifact location, so the server picks its own root (the
proxied ``mlflow-artifacts:`` root of ``mlflow server --serve-artifacts``, e.g. backed by S3);
a local ``file://`` root would be a path on the pod that logged the run, unreadable elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg

from pdm_core import paths
from pdm_core.registry import CHAMPION, FLEET_MODEL

__all__ = [
    "CHAMPION",
    "FLEET_MODEL",
    "MlflowTracking",
    "default_tracking_uri",
    "is_tracking_server",
]


default_tracking_uri = paths.mlflow_tracking_uri


def default_artifact_location() -> str:
    """Artifact root under ``$PDM_HOME/mlflow/artifacts``."""
    return (paths.pdm_home() / "mlflow" / "artifacts").as_uri()


def is_tracking_server(tracking_uri: str) -> bool:
    """Whether ``tracking_uri`` names an MLflow tracking server (``http://``/``https://``).

    Args:
        tracking_uri: An MLflow tracking URI.

    Returns:
        True for a server, which chooses the artifact root itself; False for a store the
        client writes directly (SQLite, PostgreSQL, a directory).
    """
    return tracking_uri.strip().lower().startswith(("http://", "https://"))


class MlflowTracking(dg.ConfigurableResource):
    """Where runs and registered models go.

    Attributes:
        tracking_uri: MLflow tracking URI.
        artifact_location: Artifact root of the experiment (used when it is created).
        experiment: Experiment name.
        registered_model: Registry name of the fleet model (the champion bundle).
    """

    tracking_uri: str
    artifact_location: str = ""
    experiment: str = "pdm-platform"
    registered_model: str = FLEET_MODEL

    @classmethod
    def from_env(cls) -> MlflowTracking:
        """Builds the resource from ``MLFLOW_TRACKING_URI`` / ``PDM_MLFLOW_ARTIFACTS``.

        Without ``PDM_MLFLOW_ARTIFACTS``, a tracking server gets no artifact location (the
        server chooses); any other store gets ``$PDM_HOME/mlflow/artifacts``. ``$PDM_HOME`` is
        only touched (created) when the local default is used.
        """
        tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
        if tracking_uri is None:
            tracking_uri = default_tracking_uri()
        fallback = "" if is_tracking_server(tracking_uri) else default_artifact_location()
        return cls(
            tracking_uri=tracking_uri,
            artifact_location=os.environ.get("PDM_MLFLOW_ARTIFACTS", fallback),
        )

    def artifact_root(self) -> str | None:
        """Artifact root for a new experiment; never MLflow's default ``./mlruns``.

        Without an explicit location, a tracking server chooses the root itself (``None``), a
        SQLite store keeps artifacts in an ``artifacts`` directory beside its database file,
        and any other store under ``$PDM_HOME``.
        """
        if self.artifact_location:
            return self.artifact_location
        if is_tracking_server(self.tracking_uri):
            return None
        if self.tracking_uri.startswith("sqlite:///"):
            database = Path(self.tracking_uri.removeprefix("sqlite:///"))
            return (database.parent / "artifacts").resolve().as_uri()
        return default_artifact_location()

    def activate(self) -> str:
        """Points the mlflow module at this store and returns the experiment id."""
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        client = mlflow.MlflowClient()
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            experiment_id = client.create_experiment(
                self.experiment, artifact_location=self.artifact_root()
            )
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id

    def client(self) -> Any:
        """An ``MlflowClient`` on this store."""
        import mlflow

        self.activate()
        return mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
