"""Time-based schedules (all times UTC)."""

from __future__ import annotations

import dagster as dg

from pdm_core.names import DRIFT_CHECK_JOB, FULL_PIPELINE_JOB, RETRAIN_JOB

nightly_full_pipeline = dg.ScheduleDefinition(
    name="nightly_full_pipeline",
    job_name=FULL_PIPELINE_JOB,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Rebuilds the whole graph every night at 02:00 UTC (off until switched on in "
    "the UI).",
)

daily_drift_check = dg.ScheduleDefinition(
    name="daily_drift_check",
    job_name=DRIFT_CHECK_JOB,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Recomputes the drift report every day at 06:00 UTC (on by default), so drift "
    "is judged against the current champion even when no new batch arrived.",
)

weekly_retrain = dg.ScheduleDefinition(
    name="weekly_retrain",
    job_name=RETRAIN_JOB,
    cron_schedule="0 3 * * 0",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Retrains every Sunday at 03:00 UTC on the source plus landed telemetry (off "
    "by default: a retrain takes minutes of CPU; switch it on in the UI).",
)
