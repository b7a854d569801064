"""The Dagster definitions of the platform: ``[tool.dagster] module_name`` points here.

Heavy libraries (TensorFlow, Evidently, MLflow) are imported inside asset bodies only, so
loading this module stays fast for the webserver and every run.
"""

from __future__ import annotations

import dagster as dg

from pdm_assets import (
    evaluation,
    features,
    fleet_health,
    models,
    packaging,
    promotion,
    telemetry,
)
from pdm_assets.jobs import full_pipeline_job
from pdm_resources import paths
from pdm_resources.artifacts import LocalArtifactStore
from pdm_resources.mlflow_tracking import MlflowTracking
from pdm_resources.telemetry_source import TelemetrySource
from pdm_resources.warehouse import WarehouseIOManager
from sensors_schedules import nightly_full_pipeline


def build_resources() -> dict[str, object]:
    """Resources of the embedded default: everything under ``$PDM_HOME``."""
    return {
        "telemetry_source": TelemetrySource.from_env(),
        "warehouse_io_manager": WarehouseIOManager(
            database=str(paths.warehouse_path()), schema="pdm"
        ),
        "io_manager": dg.FilesystemIOManager(base_dir=str(paths.storage_dir())),
        "artifacts": LocalArtifactStore(base_dir=str(paths.artifacts_dir())),
        "mlflow_tracking": MlflowTracking.from_env(),
    }


defs = dg.Definitions(
    assets=dg.load_assets_from_modules(
        [telemetry, features, models, evaluation, promotion, fleet_health, packaging]
    ),
    jobs=[full_pipeline_job],
    schedules=[nightly_full_pipeline],
    resources=build_resources(),
    executor=dg.in_process_executor,
)
