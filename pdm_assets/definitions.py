"""The Dagster definitions of the platform: ``[tool.dagster] module_name`` points here.

Heavy libraries (TensorFlow, Evidently, MLflow) are imported inside asset bodies only, so
loading this module stays fast for the webserver and every run.
"""

from __future__ import annotations

import dagster as dg
from dagster_duckdb import DuckDBResource

from pdm_assets import (
    drift,
    evaluation,
    features,
    fleet_health,
    ingestion,
    models,
    packaging,
    promotion,
    telemetry,
)
from pdm_assets.feed_job import simulate_feed
from pdm_assets.jobs import drift_check_job, full_pipeline_job, ingest_job, retrain_job
from pdm_resources import paths
from pdm_resources.alerts import AlertSink
from pdm_resources.artifacts import LocalArtifactStore
from pdm_resources.drift_policy import DriftPolicy
from pdm_resources.landing_zone import landing_zone_from_env
from pdm_resources.mlflow_tracking import MlflowTracking
from pdm_resources.telemetry_source import TelemetrySource
from pdm_resources.warehouse import WarehouseIOManager
from sensors_schedules import daily_drift_check, nightly_full_pipeline, weekly_retrain
from sensors_schedules.alert_sensors import alert_on_failed_checks, alert_on_run_failure
from sensors_schedules.drift_sensor import drift_retrain_sensor
from sensors_schedules.landing_sensor import landing_zone_sensor


def build_resources() -> dict[str, object]:
    """Resources of the embedded default: everything under ``$PDM_HOME``."""
    warehouse = str(paths.warehouse_path())
    return {
        "telemetry_source": TelemetrySource.from_env(),
        "warehouse_io_manager": WarehouseIOManager(database=warehouse, schema="pdm"),
        "warehouse": DuckDBResource(database=warehouse),
        "io_manager": dg.FilesystemIOManager(base_dir=str(paths.storage_dir())),
        "artifacts": LocalArtifactStore(base_dir=str(paths.artifacts_dir())),
        "mlflow_tracking": MlflowTracking.from_env(),
        "landing_zone": landing_zone_from_env(),
        "drift_policy": DriftPolicy.from_env(),
        "alerts": AlertSink.from_env(),
    }


defs = dg.Definitions(
    assets=dg.load_assets_from_modules(
        [
            telemetry,
            ingestion,
            features,
            models,
            evaluation,
            promotion,
            fleet_health,
            packaging,
            drift,
        ]
    ),
    jobs=[full_pipeline_job, ingest_job, retrain_job, drift_check_job, simulate_feed],
    schedules=[nightly_full_pipeline, daily_drift_check, weekly_retrain],
    sensors=[
        landing_zone_sensor,
        drift_retrain_sensor,
        alert_on_run_failure,
        alert_on_failed_checks,
    ],
    resources=build_resources(),
    executor=dg.in_process_executor,
)
