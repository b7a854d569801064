"""Jobs over the asset graph."""

from __future__ import annotations

import dagster as dg

from pdm_core.names import (
    DRIFT_CHECK_JOB,
    DRIFT_REPORT,
    FLEET_HEALTH,
    FULL_PIPELINE_JOB,
    INGEST_JOB,
    INGESTION_GROUP,
    RETRAIN_JOB,
)

SERIAL_TAG = "pdm/serial"
"""Runs with the same value of this tag must not overlap (a tag concurrency limit of 1 in the
production instance, deploy/dagster/dagster.yaml): ingestions compare a batch with the readings
already stored, and trainings write the same tables and move the same champion alias."""
INGESTION_RUNS = {SERIAL_TAG: "ingestion"}
TRAINING_RUNS = {SERIAL_TAG: "training"}

_per_batch = dg.AssetSelection.groups(INGESTION_GROUP)
_training = dg.AssetSelection.assets("raw_telemetry", "dataset_info").downstream() - _per_batch
PIPELINE_SELECTION = dg.AssetSelection.all() - _per_batch
"""Every asset but the per-batch ones (group ``ingestion``: each run needs a partition key).

This is what **Materialize all** on the ``full_pipeline`` job's page launches: one run, on a
fresh home and after batches have landed alike (the global lineage's button would select the
partitioned assets too and open a backfill)."""

full_pipeline_job = dg.define_asset_job(
    FULL_PIPELINE_JOB,
    selection=PIPELINE_SELECTION,
    tags=TRAINING_RUNS,
    description="Materialises every asset except the per-batch ingestion (what `make demo` "
    "runs): telemetry, features, candidates, promotion, packaging, fleet health, drift report.",
)
ingest_job = dg.define_asset_job(
    INGEST_JOB,
    selection=_per_batch | dg.AssetSelection.assets(DRIFT_REPORT, FLEET_HEALTH),
    tags=INGESTION_RUNS,
    description="Ingests one landed batch (partition), scores its readings with the champion, "
    "refreshes the fleet's health and the drift report.",
)
retrain_job = dg.define_asset_job(
    RETRAIN_JOB,
    selection=_training,
    tags=TRAINING_RUNS,
    description="Retrains on the source plus landed telemetry, evaluates on a fresh holdout, "
    "promotes only a better model, rebuilds the Bento and the drift report.",
)
drift_check_job = dg.define_asset_job(
    DRIFT_CHECK_JOB,
    selection=dg.AssetSelection.assets(DRIFT_REPORT),
    description="Recomputes the drift report of the newest landed batches.",
)
