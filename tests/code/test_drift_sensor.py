"""Tests for the drift sensor: the retraining rule and the sensor over drift report events."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from pdm_core.retraining import DriftVerdict, decide_retrain
from pdm_resources.alerts import LocalAlertSink
from pdm_resources.drift_policy import DriftPolicy
from sensors_schedules.drift_sensor import REMEMBERED_BATCHES, drift_retrain_sensor

NOW = 1_800_000_000.0

# ---------------------------------------------------------------------- decide_retrain (pure)


def decide(share: float, n_checked: int = 5, **changes: object):  # type: ignore[no-untyped-def]
    """The rule for a report with this share, judged (as ks_drift does) against 0.3."""
    verdict = DriftVerdict(n_checked > 0 and share >= 0.3, share, 0.3, n_checked)
    arguments: dict[str, object] = {
        "verdict": verdict,
        "now": NOW,
        "last_triggered": None,
        "cooldown_minutes": 60.0,
        "active_run": None,
    }
    arguments.update(changes)
    return decide_retrain(**arguments)  # type: ignore[arg-type]


def test_below_threshold_does_not_retrain() -> None:
    decision = decide(0.29)
    assert not decision.retrain
    assert "below threshold" in decision.reason
    assert "0.29" in decision.reason and "0.30" in decision.reason


def test_at_threshold_retrains() -> None:
    decision = decide(0.3)
    assert decision.retrain
    assert "retraining requested" in decision.reason


def test_nothing_checked_does_not_retrain() -> None:
    decision = decide(1.0, n_checked=0)
    assert not decision.retrain
    assert "enough readings" in decision.reason


def test_cooldown_holds_back_and_names_the_minutes() -> None:
    decision = decide(0.8, last_triggered=NOW - 15 * 60)
    assert not decision.retrain
    assert "cooldown" in decision.reason
    assert "15.0 min ago" in decision.reason
    assert "cooldown 60 min" in decision.reason


def test_after_cooldown_retrains() -> None:
    assert decide(0.8, last_triggered=NOW - 61 * 60).retrain
    assert decide(0.8, last_triggered=NOW - 60 * 60).retrain  # exactly the cooldown
    assert not decide(0.8, last_triggered=NOW - 59 * 60).retrain


def test_active_run_holds_back() -> None:
    decision = decide(0.8, active_run="abcd1234")
    assert not decision.retrain
    assert "abcd1234" in decision.reason
    assert "in progress" in decision.reason


def test_batches_already_retrained_on_hold_back_and_name_the_run_key() -> None:
    decision = decide(0.8, retrained_by="retrain-abc123")
    assert not decision.retrain
    assert "retrain-abc123" in decision.reason
    assert "waiting for new batches" in decision.reason


# ---------------------------------------------------------------------- the sensor


def report(
    instance: dg.DagsterInstance,
    share: float,
    version: str | None = "abc123",
    n_checked: int = 5,
    batches: list[str] | None = None,
    threshold: float = 0.3,
) -> None:
    """Records a drift report materialisation as the drift_report asset would."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="drift_report",
            metadata={
                "drift_share": share,
                "n_checked": n_checked,
                "threshold": threshold,
                "dataset_drift": n_checked > 0 and share >= threshold,
                "champion_version": "1",
                "batches": ["b1"] if batches is None else batches,
            },
            tags={"dagster/data_version": version} if version else None,
        )
    )


def make_sink(tmp_path: Path) -> LocalAlertSink:
    return LocalAlertSink(database=str(tmp_path / "w.duckdb"), lock_wait_seconds=2.0)


def evaluate(instance: dg.DagsterInstance, tmp_path: Path, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "drift_policy": DriftPolicy(cooldown_minutes=60),
            "alerts": make_sink(tmp_path),
        },
    )
    result = drift_retrain_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def skip_message(result: dg.SensorResult) -> str:
    assert not result.run_requests
    assert result.skip_reason is not None
    return result.skip_reason.skip_message or ""


def alerts(tmp_path: Path) -> pd.DataFrame:
    return make_sink(tmp_path).recent_alerts()


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


def test_no_report_yet(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    result = evaluate(instance, tmp_path, None)
    assert skip_message(result) == "no drift report yet"
    assert alerts(tmp_path).empty


def test_drifted_report_requests_retraining_and_alerts(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    report(instance, 0.6)
    result = evaluate(instance, tmp_path, None)

    (request,) = result.run_requests or []
    assert request.run_key == "retrain-abc123"
    assert request.tags["pdm/trigger"] == "drift"
    assert request.tags["pdm/drift_report_version"] == "abc123"
    assert request.tags["pdm/drift_share"] == "0.6000"
    cursor = json.loads(result.cursor or "")
    assert isinstance(cursor["report_storage_id"], int)
    assert abs(cursor["last_triggered"] - time.time()) < 60

    rows = alerts(tmp_path)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["kind"] == "drift"
    assert row["severity"] == "warning"
    assert row["dedup_key"] == "drift-abc123"
    assert "60%" in row["title"]
    details = json.loads(row["details"])
    assert details["drift_share"] == 0.6
    assert details["threshold"] == 0.3
    assert details["report_version"] == "abc123"
    assert details["champion_version"] == "1"
    assert details["batches"] == ["b1"]
    assert "retraining requested" in details["decision"]


def test_the_sensor_follows_the_report_s_verdict_not_its_own_threshold(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    # The report was judged with threshold 0.8 (its run's drift_policy config), the sensor's
    # resource says 0.3: the report's verdict stands, and the alert shows the report's threshold.
    report(instance, 0.6, threshold=0.8)
    held = evaluate(instance, tmp_path, None)
    assert not held.run_requests
    assert "drift share 0.60 (threshold 0.80): below threshold" in skip_message(held)
    assert alerts(tmp_path).empty

    report(instance, 0.2, version="strict", threshold=0.1)
    request = evaluate(instance, tmp_path, held.cursor)
    assert [r.run_key for r in request.run_requests or []] == ["retrain-strict"]
    assert json.loads(alerts(tmp_path).iloc[0]["details"])["threshold"] == 0.1


def test_same_report_is_not_evaluated_twice(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    report(instance, 0.6)
    first = evaluate(instance, tmp_path, None)
    second = evaluate(instance, tmp_path, first.cursor)
    assert skip_message(second).startswith("no new drift report")
    assert second.cursor == first.cursor
    assert len(alerts(tmp_path)) == 1


def test_newer_drifted_report_within_cooldown_is_held_back(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    report(instance, 0.6)
    first = evaluate(instance, tmp_path, None)
    report(instance, 0.7, version="def456", batches=["b2"])
    second = evaluate(instance, tmp_path, first.cursor)
    message = skip_message(second)
    assert "cooldown" in message
    assert "cooldown 60 min" in message
    cursor = json.loads(second.cursor or "")
    assert cursor["last_triggered"] == json.loads(first.cursor or "")["last_triggered"]
    assert cursor["report_storage_id"] > json.loads(first.cursor or "")["report_storage_id"]
    # The drift is still alerted on, once per report version.
    assert sorted(alerts(tmp_path)["dedup_key"]) == ["drift-abc123", "drift-def456"]


def test_drifted_report_after_cooldown_retrains(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    report(instance, 0.7, version="late")
    cursor = json.dumps({"last_triggered": time.time() - 2 * 3600, "report_storage_id": -1})
    result = evaluate(instance, tmp_path, cursor)
    (request,) = result.run_requests or []
    assert request.run_key == "retrain-late"


def test_report_of_the_retrained_champion_on_the_same_batches_does_not_retrain_again(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """The retrain run rebuilds the drift report against the new champion. Its reference mixes
    the drifted batch with far more older data, so the same batch still shows drift; retraining
    on the same data again after each cooldown would loop forever."""
    report(instance, 0.6, batches=["b1"])
    first = evaluate(instance, tmp_path, None)
    assert first.run_requests
    assert json.loads(first.cursor or "")["retrained_batches"] == {"b1": "retrain-abc123"}
    report(instance, 0.5, version="after-retrain", batches=["b1"])
    past_cooldown = {**json.loads(first.cursor or ""), "last_triggered": time.time() - 2 * 3600}
    second = evaluate(instance, tmp_path, json.dumps(past_cooldown))
    message = skip_message(second)
    assert "already triggered retrain-abc123" in message
    assert "waiting for new batches" in message
    assert list(alerts(tmp_path)["dedup_key"]) == ["drift-abc123"]  # alerted on once
    # A new drifted batch is new evidence: it retrains (the cooldown has passed).
    report(instance, 0.7, version="new-batch", batches=["b2", "b1"])
    third = evaluate(instance, tmp_path, second.cursor)
    (request,) = third.run_requests or []
    assert request.run_key == "retrain-new-batch"
    remembered = json.loads(third.cursor or "")["retrained_batches"]
    assert remembered == {"b2": "retrain-new-batch", "b1": "retrain-new-batch"}


def test_remembered_batches_are_bounded(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    old = {f"old{i}": "retrain-x" for i in range(REMEMBERED_BATCHES)}
    report(instance, 0.6, batches=["fresh"])
    cursor = json.dumps({"retrained_batches": old})
    result = evaluate(instance, tmp_path, cursor)
    assert result.run_requests
    remembered = json.loads(result.cursor or "")["retrained_batches"]
    assert len(remembered) == REMEMBERED_BATCHES
    assert remembered["fresh"] == "retrain-abc123"
    assert "old0" not in remembered and f"old{REMEMBERED_BATCHES - 1}" in remembered


def test_report_below_threshold_is_skipped_without_alert(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    report(instance, 0.1)
    result = evaluate(instance, tmp_path, None)
    assert "below threshold" in skip_message(result)
    assert alerts(tmp_path).empty
    assert "report_storage_id" in json.loads(result.cursor or "")


def test_report_without_verdicts_is_skipped(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    report(instance, 0.0, n_checked=0)
    result = evaluate(instance, tmp_path, None)
    assert "enough readings" in skip_message(result)
    assert alerts(tmp_path).empty


def test_active_retraining_run_holds_back(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    run_id = str(uuid.uuid4())
    instance.add_run(
        dg.DagsterRun(job_name="retrain", run_id=run_id, status=dg.DagsterRunStatus.STARTED)
    )
    report(instance, 0.9)
    message = skip_message(evaluate(instance, tmp_path, None))
    assert run_id[:8] in message
    assert "in progress" in message


def test_finished_retraining_run_does_not_hold_back(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    instance.add_run(
        dg.DagsterRun(
            job_name="retrain", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.SUCCESS
        )
    )
    report(instance, 0.9)
    (request,) = evaluate(instance, tmp_path, None).run_requests or []
    assert request.run_key == "retrain-abc123"


def test_report_without_data_version_keys_on_the_event(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    report(instance, 0.9, version=None)
    result = evaluate(instance, tmp_path, None)
    (request,) = result.run_requests or []
    storage_id = json.loads(result.cursor or "")["report_storage_id"]
    assert request.run_key == f"retrain-{storage_id}"


def test_data_version_of_a_materialised_report_is_used(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """The real asset yields ``Output(data_version=...)``; the version lands in the event's tags."""

    @dg.asset(name="drift_report")
    def drift_report() -> dg.Output[dict]:
        return dg.Output(
            {"drift_share": 0.5},
            metadata={
                "drift_share": 0.5,
                "n_checked": 4,
                "dataset_drift": True,
                "champion_version": "3",
            },
            data_version=dg.DataVersion("v-from-output"),
        )

    assert dg.materialize([drift_report], instance=instance).success
    (request,) = evaluate(instance, tmp_path, None).run_requests or []
    assert request.run_key == "retrain-v-from-output"


def test_sensor_definition() -> None:
    assert drift_retrain_sensor.job_name == "retrain"
    assert drift_retrain_sensor.minimum_interval_seconds == 30
    assert drift_retrain_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert drift_retrain_sensor.required_resource_keys == {"drift_policy", "alerts"}


def test_new_report_seen_on_run_sharded_sqlite(tmp_path: Path) -> None:
    """The embedded default's SQLite event log keeps ids per run; reports from two runs must
    still be told apart."""

    def drift_report_asset(version: str) -> dg.AssetsDefinition:
        @dg.asset(name="drift_report")
        def drift_report() -> dg.Output[dict]:
            return dg.Output(
                {},
                metadata={"drift_share": 0.5, "n_checked": 4, "dataset_drift": True},
                data_version=dg.DataVersion(version),
            )

        return drift_report

    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as sharded:
        assert sharded.event_log_storage.is_run_sharded
        assert dg.materialize([drift_report_asset("one")], instance=sharded).success
        first = evaluate(sharded, tmp_path, None)
        assert [r.run_key for r in first.run_requests or []] == ["retrain-one"]
        assert dg.materialize([drift_report_asset("two")], instance=sharded).success
        second = evaluate(sharded, tmp_path, first.cursor)
        assert "cooldown" in skip_message(second)
        assert sorted(alerts(tmp_path)["dedup_key"]) == ["drift-one", "drift-two"]


# ---------------------------------------------------------------------- the policy's settings


def test_policy_defaults_are_the_drift_test_s_and_variables_override_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pdm_core.drift_settings import DriftSettings
    from pdm_resources.drift_policy import ENV_VARS

    for variable in ENV_VARS.values():
        monkeypatch.delenv(variable, raising=False)
    assert DriftPolicy.from_env().settings() == DriftSettings()

    monkeypatch.setenv("PDM_DRIFT_THRESHOLD", "0.5")
    monkeypatch.setenv("PDM_DRIFT_EVIDENTLY", "0")
    policy = DriftPolicy.from_env()
    assert (policy.threshold, policy.evidently_report, policy.alpha) == (0.5, False, 0.05)


@pytest.mark.parametrize("value", ["abc", "1.5"])
def test_a_bad_policy_variable_names_itself_and_its_value(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PDM_DRIFT_THRESHOLD", value)
    with pytest.raises(ValueError, match=f"PDM_DRIFT_THRESHOLD='{value}'"):
        DriftPolicy.from_env()
