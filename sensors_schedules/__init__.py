"""Schedules and sensors that start runs of the asset graph."""

from sensors_schedules.schedules import daily_drift_check, nightly_full_pipeline, weekly_retrain

__all__ = ["daily_drift_check", "nightly_full_pipeline", "weekly_retrain"]
