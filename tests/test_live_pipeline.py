"""Live scoring through the ``ingest_telemetry`` job: machine_risk, risk_history, fleet_health.

A small champion is trained once for the module (the ``full_pipeline`` assets, in process);
then simulator batches land and go through the ingestion job per partition, as the landing
sensor would run them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pandas as pd
import pytest

from pdm_assets.jobs import PIPELINE_SELECTION
from pdm_assets.models import CANDIDATES
from pdm_core.alerts import ALERT_RUL_SHARE, RiskAlertRule, high_risk_dedup_key
from pdm_core.feed import FeedConfig, batch_frame
from pdm_core.landing import batch_id, write_batch
from pdm_core.names import LANDED_AT_TAG
from pdm_platform import definitions
from pdm_resources.telemetry_source import TelemetrySource
from tests.pipeline_resources import local_resources

pytestmark = pytest.mark.slow

MACHINES, STEPS, PER_BATCH = 12, 1000, 50
FAST = {"ops": {n: {"config": {"epochs": 3, "boosting_iterations": 30}} for n in CANDIDATES}}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("live")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENTOML_HOME", str(root / "bentoml"))
        patch.setenv("BENTOML_DO_NOT_TRACK", "True")
        resources = local_resources(root, TelemetrySource(sim_machines=MACHINES, sim_steps=STEPS))
        instance = dg.DagsterInstance.ephemeral()
        trained = dg.materialize(
            list(definitions.defs.assets), selection=PIPELINE_SELECTION, resources=resources,
            instance=instance, run_config=FAST,
        )  # fmt: skip
        assert trained.success
        yield {"root": root, "resources": resources, "instance": instance}


def land(home: dict, number: int, name: str, frame: pd.DataFrame | None = None) -> str:
    config = FeedConfig(n_machines=MACHINES, start_step=STEPS, steps_per_batch=PER_BATCH)
    rows = batch_frame(config, number) if frame is None else frame
    path = write_batch(rows, home["resources"]["landing_zone"].incoming, name)
    return batch_id(path.name, path.read_bytes())


def ingest(
    home: dict, batch: str, tags: dict | None = None, succeed: bool = True
) -> dg.ExecuteInProcessResult:
    home["instance"].add_dynamic_partitions("telemetry_batches", [batch])
    job = definitions.defs.resolve_job_def("ingest_telemetry")
    result = job.execute_in_process(
        partition_key=batch, resources=home["resources"], instance=home["instance"],
        raise_on_error=False, tags=tags,
    )  # fmt: skip
    assert result.success or not succeed
    return result


def metadata(result: dg.ExecuteInProcessResult, key: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.asset_key.to_user_string() == key:
            return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{key} not materialised")


def query(home: dict, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(home["root"] / "warehouse.duckdb"), read_only=True) as connection:
        return connection.execute(sql).df()


def test_every_landed_reading_is_scored_once_per_model_version(home: dict) -> None:
    batch = land(home, 0, "live-0")
    written = datetime.now(UTC) - timedelta(seconds=30)  # as the landing sensor tags its runs
    first = ingest(home, batch, tags={LANDED_AT_TAG: written.isoformat()})
    risk = metadata(first, "machine_risk")
    assert 30 <= risk["landing_to_score_seconds"] < 30 + 600
    (record,) = query(home, f"select * from pdm.scored_batches where batch_id = '{batch}'")[
        ["landed_at", "stored_at", "scored", "model_version"]
    ].itertuples(index=False)
    assert record.scored == MACHINES * PER_BATCH and record.model_version == risk["model_version"]
    landed = pd.Timestamp(written.replace(tzinfo=None))
    assert abs((record.landed_at - landed).total_seconds()) < 1e-3
    assert record.stored_at > record.landed_at
    assert risk["readings"] == MACHINES * PER_BATCH
    # The training source supplies the windows' earlier readings: nothing is too short.
    assert risk["scored"] == MACHINES * PER_BATCH, risk["skipped"]
    stored = query(home, f"select * from pdm.risk_history where batch_id = '{batch}'")
    assert len(stored) == MACHINES * PER_BATCH
    assert stored[["machine_id", "cycle"]].duplicated().sum() == 0
    assert stored["model_version"].nunique() == 1
    assert stored["failure_probability"].between(0, 1).all()

    retried = ingest(home, batch)  # a retried run or a backfill of the same partition
    assert metadata(retried, "machine_risk")["scored"] == 0
    assert "already scored" in metadata(retried, "machine_risk")["reason"]
    again = query(home, f"select * from pdm.risk_history where batch_id = '{batch}'")
    assert len(again) == len(stored)

    health = metadata(first, "fleet_health")
    assert health["scored_live"] == MACHINES
    state = query(home, "select * from pdm.fleet_health")
    newest = stored.groupby("machine_id")["cycle"].max()
    assert dict(zip(state["machine_id"], state["cycle"], strict=True)) == newest.to_dict()


def test_high_risk_scores_raise_one_alert_per_machine_level_and_day(home: dict) -> None:
    for number in (1, 2, 3):
        ingest(home, land(home, number, f"live-{number}"))
    scores = query(home, "select * from pdm.risk_history")
    alerts = home["resources"]["alerts"].recent_alerts(limit=10_000)
    # The champion records the source's horizon (30 readings), so its alerts are RUL-gated.
    rule = RiskAlertRule.for_horizon(30)
    assert rule.max_rul == pytest.approx(30 * ALERT_RUL_SHARE)
    gated = rule.mask(scores["risk_level"].to_numpy(), scores["rul"].to_numpy())
    assert gated.any(), "no reading passes the alert rule: nothing to alert on"
    assert (scores["alert"].astype(bool) >= gated).all()  # the stored flag follows the rule

    def keys(rows: pd.DataFrame) -> set[str]:
        return {
            high_risk_dedup_key(
                row.machine_id, row.risk_level, str(row.timestamp)[:10], rule.imminent(row.rul)
            )
            for row in rows.itertuples(index=False)
        }

    raised = set(alerts.loc[alerts["kind"] == "high_risk", "dedup_key"])
    assert keys(scores[gated]) <= raised
    # HIGH/CRITICAL readings whose predicted failure is further off than the gate raise nothing.
    high = scores["risk_level"].isin(["HIGH", "CRITICAL"]).to_numpy()
    assert not (keys(scores[high & ~gated]) - keys(scores[gated])) & raised
    labelled = query(home, "select machine_id, cycle, failure_within_h from pdm.landed_telemetry")
    joined = scores.merge(labelled, on=["machine_id", "cycle"])
    by_label = joined.groupby("failure_within_h")["failure_probability"].mean()
    # The champion separates readings before a failure from the others on live data too.
    assert set(by_label.index) == {0, 1}, by_label
    assert by_label[1] > by_label[0]


def test_a_late_reading_and_an_unknown_machine_are_reported_not_scored(home: dict) -> None:
    config = FeedConfig(n_machines=MACHINES, start_step=STEPS, steps_per_batch=PER_BATCH)
    frame = batch_frame(config, 4)
    missing = (frame["machine_id"] == "M000") & (frame["cycle"] == frame["cycle"].min() + 3)
    ingest(home, land(home, 4, "live-4-gap", frame[~missing]))

    newcomer = batch_frame(FeedConfig(n_machines=1, start_step=0, seed=7), 0)
    newcomer = newcomer.assign(machine_id="NEW-1").head(5)
    late = pd.concat([frame[missing], newcomer], ignore_index=True)
    result = ingest(home, land(home, 5, "late-and-new", late))
    risk = metadata(result, "machine_risk")
    assert risk["readings"] == 6
    assert risk["scored"] == 0
    assert risk["skipped"]["late"] == 1
    assert risk["skipped"]["window_too_short"] == 5


def test_a_new_champion_scores_from_the_next_batch_on(home: dict) -> None:
    import mlflow

    tracking = home["resources"]["mlflow_tracking"]
    client = mlflow.MlflowClient(tracking.tracking_uri, registry_uri=tracking.tracking_uri)
    old = client.get_model_version_by_alias(tracking.registered_model, "champion")
    new = client.create_model_version(tracking.registered_model, old.source, run_id=old.run_id)
    client.set_registered_model_alias(tracking.registered_model, "champion", new.version)
    before = query(home, "select batch_id, model_version from pdm.risk_history")

    batch = land(home, 6, "after-promotion")
    risk = metadata(ingest(home, batch), "machine_risk")
    assert risk["model_version"] == str(new.version) and risk["scored"] == MACHINES * PER_BATCH
    after = query(home, "select batch_id, model_version from pdm.risk_history")
    assert set(after.loc[after["batch_id"] == batch, "model_version"]) == {str(new.version)}
    # The batches scored before the promotion keep the version that scored them.
    kept = after[after["batch_id"] != batch]
    assert (
        kept.sort_values(list(kept.columns))
        .reset_index(drop=True)
        .equals(before.sort_values(list(before.columns)).reset_index(drop=True))
    )
    assert set(kept["model_version"]) == {str(old.version)}


def test_a_batch_without_a_sensor_the_champion_needs_fails_naming_it_and_scores_nothing(
    home: dict,
) -> None:
    config = FeedConfig(n_machines=MACHINES, start_step=STEPS, steps_per_batch=PER_BATCH)
    frame = batch_frame(config, 7).assign(vibration=float("nan"))
    batch = land(home, 7, "no-vibration", frame)
    result = ingest(home, batch, succeed=False)
    assert not result.success
    failure = result.failure_data_for_node("landed_telemetry")
    assert failure is not None
    assert "no-vibration.parquet" in str(failure.error) and "'vibration'" in str(failure.error)
    assert not any(e.asset_key.to_user_string() == "machine_risk"
                   for e in result.get_asset_materialization_events())  # fmt: skip
    assert home["resources"]["warehouse"].scored_versions(batch) == set()
