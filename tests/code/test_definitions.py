"""How the definitions present the graph: what the jobs select and where partitioned assets go."""

from __future__ import annotations

import dagster as dg

from pdm_assets.jobs import PIPELINE_SELECTION
from pdm_core.names import FULL_PIPELINE_JOB, INGESTION_GROUP
from pdm_platform.definitions import defs


def test_every_partitioned_asset_is_in_the_ingestion_group() -> None:
    partitioned = {
        spec.key.to_user_string(): spec.group_name
        for spec in defs.resolve_all_asset_specs()
        if spec.partitions_def is not None
    }
    assert partitioned, "expected at least the per-batch landed_telemetry"
    assert set(partitioned.values()) == {INGESTION_GROUP}, partitioned


def test_full_pipeline_is_every_unpartitioned_asset() -> None:
    graph = defs.resolve_asset_graph()
    specs = list(defs.resolve_all_asset_specs())
    unpartitioned = {s.key for s in specs if s.partitions_def is None}
    assert PIPELINE_SELECTION.resolve(graph) == unpartitioned
    job = defs.resolve_job_def(FULL_PIPELINE_JOB)
    assert not job.partitions_def, "one run, no partition dialog"
    assert isinstance(job, dg.JobDefinition)


def test_the_named_per_batch_assets_are_exactly_the_partitioned_ones() -> None:
    from pdm_core.names import PER_BATCH_ASSETS

    partitioned = {
        spec.key.to_user_string()
        for spec in defs.resolve_all_asset_specs()
        if spec.partitions_def is not None
    }
    assert partitioned == set(PER_BATCH_ASSETS)


def test_unpartitioned_jobs_select_no_per_batch_asset() -> None:
    from pdm_core.names import PER_BATCH_ASSETS, RETRAIN_JOB

    for name in (FULL_PIPELINE_JOB, RETRAIN_JOB):
        keys = {
            k.to_user_string() for k in defs.resolve_job_def(name).asset_layer.selected_asset_keys
        }
        assert not keys & set(PER_BATCH_ASSETS), (name, keys & set(PER_BATCH_ASSETS))


def test_ingestion_scores_in_its_own_process_before_the_other_steps() -> None:
    """A landed batch's scores wait for no step process and no drift report (run in order)."""
    from pdm_core.names import INGEST_JOB, MACHINE_RISK

    job = defs.resolve_job_def(INGEST_JOB)
    assert job.executor_def is dg.in_process_executor
    priority = {
        node.name: int(node.definition.tags.get("dagster/priority", 0)) for node in job.graph.nodes
    }
    assert len(priority) > 2 and max(priority, key=priority.get) == MACHINE_RISK
    assert all(p < priority[MACHINE_RISK] for name, p in priority.items() if name != MACHINE_RISK)
