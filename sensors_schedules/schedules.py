"""Time-based schedules."""

from __future__ import annotations

import dagster as dg

from pdm_assets.jobs import full_pipeline_job

nightly_full_pipeline = dg.ScheduleDefinition(
    name="nightly_full_pipeline",
    job=full_pipeline_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Rebuilds the whole graph every night at 02:00 UTC (off until switched on in "
    "the UI).",
)
