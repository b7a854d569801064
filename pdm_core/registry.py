"""The fleet model in the MLflow Model Registry, without Dagster.

Names shared by the pipeline (which registers versions and moves the alias) and the service
(which serves the version holding the alias).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FLEET_MODEL = "pdm-fleet-model"
"""Registered model name of the fleet model."""
CHAMPION = "champion"
"""Alias of the version being served."""
BUNDLE_PATH = ("artifacts", "bundle")
"""Where the bundle directory lies inside a logged fleet model."""


def download_bundle(
    tracking_uri: str, name: str = FLEET_MODEL, alias: str = CHAMPION
) -> tuple[Path, Any]:
    """Downloads the fleet model bundle that holds ``alias``.

    Args:
        tracking_uri: MLflow tracking/registry URI.
        name: Registered model name.
        alias: Alias to resolve.

    Returns:
        ``(bundle_directory, model_version)``; the directory is readable by
        :meth:`pdm_core.models.bundle.FleetModel.load`.

    Raises:
        mlflow.exceptions.MlflowException: No version holds the alias.
    """
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    version = client.get_model_version_by_alias(name, alias)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version.version}")
    return Path(local).joinpath(*BUNDLE_PATH), version
