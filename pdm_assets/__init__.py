"""Dagster asset graph of the predictive-maintenance platform (see ``definitions.py``)."""

import os
import warnings

import dagster as dg

# TensorFlow (imported inside asset bodies) logs CUDA probing errors on CPU-only machines;
# keep its C++ log to warnings and errors unless the user asks for more.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Output(data_version=...) is marked beta; the assets rely on it for their data versions.
warnings.filterwarnings("ignore", message=".*data_version.*", category=dg.BetaWarning)
