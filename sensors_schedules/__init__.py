"""Schedules and sensors that start runs of the asset graph."""

from sensors_schedules.schedules import nightly_full_pipeline

__all__ = ["nightly_full_pipeline"]
