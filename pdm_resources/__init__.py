"""Dagster resources: where data comes from and where outputs go, chosen by environment."""
