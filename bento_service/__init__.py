"""BentoML service for the champion model (issue: serving).

The service computes features with :mod:`pdm_core.features` (``compute_window_features``),
the same definition the pipeline uses, and must never import Dagster.
"""
