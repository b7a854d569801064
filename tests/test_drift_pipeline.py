"""Ingestion, drift report and retraining through Dagster's public interfaces (in process).

One small champion is trained once for the module; then landed files go through the
``ingest_telemetry`` job per partition and the ``retrain`` job, as the sensors would run them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pdm_assets.jobs import PIPELINE_SELECTION
from pdm_assets.models import CANDIDATES
from pdm_core.feed import FeedConfig, batch_frame
from pdm_core.landing import batch_id, write_batch
from pdm_platform import definitions
from pdm_resources.drift_policy import DriftPolicy
from pdm_resources.telemetry_source import TelemetrySource
from tests.pipeline_resources import local_resources

pytestmark = pytest.mark.slow

MACHINES, STEPS = 16, 1200
FAST = {"ops": {n: {"config": {"epochs": 3, "boosting_iterations": 30}} for n in CANDIDATES}}
# A 16-machine fleet varies more from batch to batch than the default 40 (see BENCHMARKS.md).
POLICY = DriftPolicy(min_effect_size=0.35)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("drift")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENTOML_HOME", str(root / "bentoml"))
        patch.setenv("BENTOML_DO_NOT_TRACK", "True")
        resources = local_resources(
            root, TelemetrySource(sim_machines=MACHINES, sim_steps=STEPS), drift_policy=POLICY
        )
        instance = dg.DagsterInstance.ephemeral()
        first = dg.materialize(
            list(definitions.defs.assets), selection=PIPELINE_SELECTION, resources=resources,
            instance=instance, run_config=FAST,
        )  # fmt: skip
        assert first.success
        yield {"root": root, "resources": resources, "instance": instance}


def feed(bias: dict[str, float] | None = None) -> FeedConfig:
    return FeedConfig(n_machines=MACHINES, start_step=STEPS, bias_sd=bias or {})


def land(home: dict, config: FeedConfig, batch: int, name: str) -> str:
    path = write_batch(batch_frame(config, batch), home["resources"]["landing_zone"].incoming, name)
    return batch_id(path.name, path.read_bytes())


def ingest(home: dict, batch: str) -> dg.ExecuteInProcessResult:
    home["instance"].add_dynamic_partitions("telemetry_batches", [batch])
    job = definitions.defs.resolve_job_def("ingest_telemetry")
    return job.execute_in_process(
        partition_key=batch, resources=home["resources"], instance=home["instance"],
        raise_on_error=False,
    )  # fmt: skip


def metadata(result: dg.ExecuteInProcessResult, key: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.asset_key.to_user_string() == key:
            return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{key} not materialised")


def landed_count(home: dict) -> int:
    """Rows in pdm.landed_telemetry (0 before the first ingestion; tests may run in any order)."""
    with duckdb.connect(str(home["root"] / "warehouse.duckdb"), read_only=True) as connection:
        found = connection.execute(
            "select count(*) from information_schema.tables where table_name = 'landed_telemetry'"
        ).fetchall()[0][0]
        if not found:
            return 0
        return connection.execute("select count(*) from pdm.landed_telemetry").fetchall()[0][0]


def test_batch_is_ingested_once_even_when_retried_or_offered_again(home: dict) -> None:
    batch = land(home, feed(), 0, "stationary-0")
    before = landed_count(home)
    first = ingest(home, batch)
    assert first.success
    assert metadata(first, "landed_telemetry")["rows_ingested"] == MACHINES * 50
    rows = landed_count(home)
    assert rows == before + MACHINES * 50
    retried = ingest(home, batch)  # a retried run / a backfill of the same partition
    assert retried.success
    assert landed_count(home) == rows
    again = land(home, feed(), 0, "stationary-0-copy")  # same readings, other file name
    assert again != batch
    copy = ingest(home, again)
    md = metadata(copy, "landed_telemetry")
    assert md["rows_ingested"] == 0 and md["redelivered_readings"] == MACHINES * 50
    assert landed_count(home) == rows
    report = metadata(first, "drift_report")
    assert report["n_checked"] == 5 and report["drift_share"] < POLICY.threshold


def test_corrupt_file_is_quarantined_with_its_reason(home: dict) -> None:
    zone = home["resources"]["landing_zone"]
    frame = batch_frame(feed(), 1).drop(columns=["pressure"])
    path = write_batch(frame, zone.incoming, "missing-pressure")
    batch = batch_id(path.name, path.read_bytes())
    rows = landed_count(home)
    result = ingest(home, batch)
    assert not result.success
    assert not path.exists()
    reason = json.loads((zone.quarantine_dir / f"{batch}.reason.json").read_text())
    assert "missing-pressure.parquet" in reason["reason"] and "pressure" in reason["reason"]
    assert (zone.quarantine_dir / f"{batch}.parquet").exists()
    assert landed_count(home) == rows


def test_drifted_batch_crosses_the_threshold_and_retraining_uses_it(home: dict) -> None:
    batch = land(home, feed({"vibration": 0.5, "temperature": 0.5}), 2, "drifted-2")
    result = ingest(home, batch)
    assert result.success
    report = metadata(result, "drift_report")
    assert report["drift_share"] >= POLICY.threshold
    assert Path(report["evidently_report"].removeprefix("file://")).stat().st_size > 10_000
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["drift_share_below_threshold"] is False

    tracking = home["resources"]["mlflow_tracking"]
    before = len(tracking.client().search_model_versions("name='pdm-fleet-model'"))
    retrain = definitions.defs.resolve_job_def("retrain").execute_in_process(
        resources=home["resources"], instance=home["instance"], run_config=FAST,
        raise_on_error=False,
    )  # fmt: skip
    raw = metadata(retrain, "raw_telemetry")
    assert raw["landed_rows_used"] == landed_count(home) >= MACHINES * 50  # all are labelled
    after = len(tracking.client().search_model_versions("name='pdm-fleet-model'"))
    assert after == before + 1
    decision = metadata(retrain, "fleet_model_candidate")["decision"]
    champion = tracking.client().get_model_version_by_alias("pdm-fleet-model", "champion")
    if decision == "reject":  # the blocking check stops the run; the old champion stays
        assert not retrain.success and str(champion.version) == str(before)
    else:
        assert retrain.success and str(champion.version) == str(after)
        assert metadata(retrain, "drift_report")["champion_version"] == str(after)
