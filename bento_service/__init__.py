"""The champion as a BentoML REST service: ``/predict``, ``/predict_batch`` (JSON or Arrow).

Features come from :mod:`pdm_core.features`, the definition training and live scoring use.
The service imports neither Dagster nor TensorFlow nor the platform's other packages (the
import-linter contracts in ``pyproject.toml`` check it), so a Bento ships only what it serves.
"""
