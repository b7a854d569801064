"""Names that the asset graph, its sensors and the programs around it must agree on.

The sensors and schedules do not import the asset modules (data flows one way: see the
README's layout), so the asset keys, partition sets, jobs and checks they refer to are named
here once and used by both sides. Asset keys are also the table names in the warehouse
(schema ``pdm``).
"""

from __future__ import annotations

# Asset keys (and warehouse tables) referred to outside their own module.
LANDED_TELEMETRY = "landed_telemetry"
RAW_TELEMETRY = "raw_telemetry"
MACHINE_RISK = "machine_risk"
RISK_HISTORY = "risk_history"
"""Warehouse table of every live score (written by :data:`MACHINE_RISK`, one partition per
batch)."""
SCORED_BATCHES = "scored_batches"
"""Warehouse table with one row per batch scored by :data:`MACHINE_RISK`: which version scored
it, when its file landed and when its scores were stored (the landing-to-score latency)."""
FLEET_HEALTH = "fleet_health"
DRIFT_REPORT = "drift_report"
TRAINING_SET = "training_set"
FLEET_MODEL_CANDIDATE = "fleet_model_candidate"
CHAMPION_MODEL = "champion_model"

PER_BATCH_ASSETS: tuple[str, ...] = (LANDED_TELEMETRY, MACHINE_RISK)
"""The partitioned assets (one partition per landed batch); every other asset is unpartitioned."""

INGESTION_GROUP = "ingestion"
"""Asset group of every per-batch (partitioned) asset; the ``full_pipeline`` job is the rest."""

TELEMETRY_BATCHES = "telemetry_batches"
"""Dynamic partition set of :data:`LANDED_TELEMETRY`: one partition per landed file."""

LANDED_AT_TAG = "pdm/landed_at"
"""Run tag the landing sensor sets: when the batch's file was written (ISO 8601, UTC), so that
scoring can tell how long a reading took from the landing zone to its risk score."""

PROMOTION_GATE = "not_worse_than_champion"
"""The blocking asset check on :data:`FLEET_MODEL_CANDIDATE` that stops a worse model."""

# Jobs.
FULL_PIPELINE_JOB = "full_pipeline"
INGEST_JOB = "ingest_telemetry"
RETRAIN_JOB = "retrain"
DRIFT_CHECK_JOB = "drift_check"
SIMULATE_FEED_JOB = "simulate_feed"
