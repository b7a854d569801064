"""Dagster asset graph of the predictive-maintenance platform (see ``definitions.py``)."""

import warnings

import dagster as dg

# Output(data_version=...) is marked beta; the assets rely on it for their data versions.
warnings.filterwarnings("ignore", message=".*data_version.*", category=dg.BetaWarning)
