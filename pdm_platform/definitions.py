"""The Dagster definitions of the platform: ``[tool.dagster] module_name`` points here.

Heavy libraries (TensorFlow, Evidently, MLflow) are imported inside asset bodies only, so
loading this module stays fast for the webserver and every run. ``PDM_ENV`` (``local`` or
``prod``) picks the resources: see :mod:`pdm_resources.environment`.
"""

from __future__ import annotations

import dagster as dg

from pdm_assets import (
    drift,
    evaluation,
    features,
    fleet_health,
    ingestion,
    live,
    models,
    packaging,
    promotion,
    telemetry,
)
from pdm_assets.feed_job import simulate_feed
from pdm_assets.jobs import drift_check_job, full_pipeline_job, ingest_job, retrain_job
from pdm_resources.environment import build_resources
from sensors_schedules import daily_drift_check, nightly_full_pipeline, weekly_retrain
from sensors_schedules.alert_sensors import alert_on_failed_checks, alert_on_run_failure
from sensors_schedules.drift_sensor import drift_retrain_sensor
from sensors_schedules.landing_sensor import landing_zone_sensor

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(
        [
            telemetry,
            ingestion,
            live,
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
