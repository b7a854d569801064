"""The service's own Prometheus metrics, next to BentoML's on ``/metrics``.

BentoML collects them across its worker processes (prometheus_client's multiprocess mode).
This module must not import Dagster.
"""

from __future__ import annotations

import prometheus_client

PREDICTIONS = prometheus_client.Counter(
    name="pdm_predictions_total",
    documentation="Predictions served, by risk level.",
    labelnames=["risk_level"],
)
REJECTED = prometheus_client.Counter(
    name="pdm_rejected_requests_total",
    documentation="Requests answered 4xx, by the rule they broke.",
    labelnames=["endpoint", "reason"],
)
LATENCY = prometheus_client.Histogram(
    name="pdm_prediction_latency_seconds",
    documentation="Time to validate-convert-featurise-score one request (inside the service).",
    labelnames=["endpoint"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
COALESCED = prometheus_client.Histogram(
    name="pdm_predict_coalesced_windows",
    documentation="Windows of /predict requests scored together in one call (per worker).",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
MODEL_INFO = prometheus_client.Gauge(
    name="pdm_model_info",
    documentation="The model being served (value 1).",
    labelnames=["model_name", "model_version", "alias", "source"],
    multiprocess_mode="max",  # one series per model across BentoML's worker processes
)
