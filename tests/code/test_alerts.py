"""Tests for alerts: the value type, the warehouse/webhook sink and the two alert sensors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pdm_core.alerts import (
    Alert,
    RiskAlertRule,
    check_failed_dedup_key,
    high_risk_dedup_key,
    risk_alerts,
)
from pdm_resources.alerts import LocalAlertSink
from sensors_schedules.alert_sensors import (
    alert_on_failed_checks,
    alert_on_run_failure,
    only_the_promotion_gate,
)

# ---------------------------------------------------------------------- fixtures


@dataclass
class Receiver:
    """A local webhook: answers with ``statuses`` in turn (then 200) and records bodies."""

    url: str
    statuses: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                state.bodies.append(body)
                state.headers.append(dict(self.headers.items()))
                status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def make_sink(tmp_path: Path, webhook_url: str = "", **overrides: float) -> LocalAlertSink:
    settings = {"timeout_seconds": 2.0, "retries": 2, "retry_backoff_seconds": 0.01}
    settings.update(overrides)
    return LocalAlertSink(
        database=str(tmp_path / "warehouse.duckdb"), webhook_url=webhook_url, **settings
    )


def make_alert(key: str = "machine-7-v3-120", **overrides: object) -> Alert:
    values: dict[str, object] = {
        "kind": "high_risk",
        "severity": "warning",
        "title": "Machine 7 at high failure risk",
        "details": {"machine_id": 7, "risk": 0.93, "threshold": 0.8},
        "dedup_key": key,
    }
    values.update(overrides)
    return Alert(**values)  # type: ignore[arg-type]


def table_rows(database: Path) -> list[dict[str, object]]:
    with duckdb.connect(str(database)) as conn:
        cursor = conn.execute("select * from pdm.alerts order by created_at, dedup_key")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# ---------------------------------------------------------------------- Alert


def test_alert_to_json_is_the_webhook_payload() -> None:
    created = datetime(2026, 3, 1, 4, 30, tzinfo=timezone(timedelta(hours=2)))
    alert = make_alert(created_at=created)
    payload = alert.to_json()
    assert payload == {
        "kind": "high_risk",
        "severity": "warning",
        "title": "Machine 7 at high failure risk",
        "details": {"machine_id": 7, "risk": 0.93, "threshold": 0.8},
        "dedup_key": "machine-7-v3-120",
        "created_at": "2026-03-01T02:30:00Z",
        "source": "pdm-platform",
    }
    assert alert.created_at.tzinfo is UTC
    assert json.loads(json.dumps(payload)) == payload


@pytest.mark.parametrize(
    "overrides",
    [
        {"kind": "oops"},
        {"severity": "fatal"},
        {"dedup_key": " "},
        {"details": {"when": datetime(2026, 1, 1)}},
        {"created_at": datetime(2026, 1, 1)},
    ],
)
def test_alert_rejects_invalid_fields(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_alert(**overrides)


def test_dedup_key_helpers() -> None:
    assert high_risk_dedup_key(7, "HIGH", "2026-01-02") == "high-risk-7-HIGH-2026-01-02"
    assert high_risk_dedup_key(7, "CRITICAL", "2026-01-02") != high_risk_dedup_key(
        7, "HIGH", "2026-01-02"
    )
    assert check_failed_dedup_key(42) == "check-42"
    assert check_failed_dedup_key(42, "abc") == "check-abc-42"


def scored(cycle: int, level: str, rul: float | None, probability: float = 0.9) -> dict:
    return {
        "machine_id": "M1", "cycle": cycle, "timestamp": f"2026-01-02 00:{cycle:02d}:00",
        "risk_level": level, "failure_probability": probability, "rul": rul,
        "anomaly_score": 0.1, "anomaly_alert": False, "model_version": "3",
    }  # fmt: skip


def test_risk_alert_rule_gates_high_levels_on_predicted_rul() -> None:
    rule = RiskAlertRule.for_horizon(30, share=2 / 3)
    assert rule.max_rul == pytest.approx(20.0)
    assert rule.raises("HIGH", 20.0) and rule.raises("CRITICAL", 3.0)
    assert not rule.raises("HIGH", 20.5)  # likely to fail, but not soon enough to act now
    assert not rule.raises("MEDIUM", 1.0) and not rule.raises("LOW", None)
    assert rule.raises("HIGH", None)  # a model without a RUL regressor: the level alone
    levels = ["LOW", "HIGH", "HIGH", "CRITICAL", "CRITICAL"]
    assert rule.mask(levels, [1.0, 25.0, 5.0, float("nan"), 40.0]).tolist() == [
        False, False, True, True, False,
    ]  # fmt: skip
    ungated = RiskAlertRule.for_horizon(None)
    assert ungated.max_rul is None and ungated.raises("HIGH", 1e9)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"horizon": 30, "share": 0.0},
        {"horizon": 30, "share": 1.5},
        {"horizon": 30, "imminent_share": 0.0},
    ],
)
def test_risk_alert_rule_rejects_a_share_outside_the_horizon(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="share"):
        RiskAlertRule.for_horizon(**kwargs)


def test_risk_alerts_follow_the_rule_once_per_machine_level_and_day() -> None:
    rows = [
        scored(1, "HIGH", 45.0),  # too far off: no alert yet
        scored(2, "HIGH", 18.0),  # first HIGH inside the gate
        scored(3, "HIGH", 12.0),  # same machine, level and day: deduplicated
        scored(4, "CRITICAL", 6.0),  # a rise to CRITICAL: another alert
    ]
    found = risk_alerts(rows, "2026-01-02", RiskAlertRule(max_rul=20.0))
    assert [(a.details["cycle"], a.details["risk_level"]) for a in found] == [
        (2, "HIGH"), (4, "CRITICAL"),
    ]  # fmt: skip
    assert found[0].details["rul"] == 18.0 and found[0].details["model_version"] == "3"
    assert len(risk_alerts(rows, "2026-01-02")) == 2  # ungated: the first HIGH is cycle 1
    assert risk_alerts(rows, "2026-01-02")[0].details["cycle"] == 1


def test_an_imminent_failure_escalates_once_per_machine_level_and_day() -> None:
    rule = RiskAlertRule.for_horizon(30, share=2 / 3, imminent_share=1 / 3)
    assert rule.imminent_rul == pytest.approx(10.0)
    assert rule.imminent(10.0) and not rule.imminent(10.5) and not rule.imminent(None)
    rows = [
        scored(1, "CRITICAL", 19.0),  # alerts: inside the gate, not yet imminent
        scored(2, "CRITICAL", 14.0),  # same machine, level and day: deduplicated
        scored(3, "CRITICAL", 9.0),  # turns imminent: one more alert
        scored(4, "CRITICAL", 4.0),  # still imminent: deduplicated
    ]
    found = risk_alerts(rows, "2026-01-02", rule)
    assert [(a.details["cycle"], a.details["imminent"]) for a in found] == [(1, False), (3, True)]
    assert found[1].dedup_key == high_risk_dedup_key("M1", "CRITICAL", "2026-01-02", True)
    assert "failure expected within 9 readings" in found[1].title
    assert len(risk_alerts(rows, "2026-01-02", RiskAlertRule(max_rul=20.0))) == 1  # no escalation
    assert RiskAlertRule.for_horizon(30, imminent_share=None).imminent_rul is None


# ---------------------------------------------------------------------- sink


def test_webhook_receives_json_payload(tmp_path: Path, receiver: Receiver) -> None:
    sink = make_sink(tmp_path, receiver.url)
    outcomes = sink.raise_alerts([make_alert()])

    assert [(o.status, o.delivered, o.delivery_error) for o in outcomes] == [
        ("recorded", True, None)
    ]
    assert len(receiver.bodies) == 1
    assert receiver.headers[0]["Content-Type"] == "application/json"
    payload = json.loads(receiver.bodies[0])
    assert set(payload) == {
        "kind",
        "severity",
        "title",
        "details",
        "dedup_key",
        "created_at",
        "source",
    }
    assert payload["kind"] == "high_risk"
    assert payload["details"] == {"machine_id": 7, "risk": 0.93, "threshold": 0.8}
    assert payload["created_at"].endswith("Z")
    assert payload["source"] == "pdm-platform"

    (row,) = table_rows(tmp_path / "warehouse.duckdb")
    assert row["dedup_key"] == "machine-7-v3-120"
    assert row["delivered"] is True
    assert row["delivery_error"] is None
    assert json.loads(str(row["details"]))["risk"] == 0.93


def test_same_alert_twice_records_and_posts_once(tmp_path: Path, receiver: Receiver) -> None:
    sink = make_sink(tmp_path, receiver.url)
    first = sink.raise_alerts([make_alert(), make_alert()])
    second = sink.raise_alerts([make_alert(title="again")])

    assert [o.status for o in first] == ["recorded", "duplicate"]
    assert [o.status for o in second] == ["duplicate"]
    assert second[0].delivered is None
    assert len(receiver.bodies) == 1
    rows = table_rows(tmp_path / "warehouse.duckdb")
    assert len(rows) == 1
    assert rows[0]["title"] == "Machine 7 at high failure risk"


def test_without_webhook_rows_are_recorded_with_null_delivery(tmp_path: Path) -> None:
    sink = make_sink(tmp_path)
    outcomes = sink.raise_alerts([make_alert("a"), make_alert("b", severity="critical")])
    assert [(o.status, o.delivered) for o in outcomes] == [("recorded", None)] * 2
    rows = table_rows(tmp_path / "warehouse.duckdb")
    assert [(r["dedup_key"], r["severity"], r["delivered"]) for r in rows] == [
        ("a", "warning", None),
        ("b", "critical", None),
    ]
    recent = sink.recent_alerts(limit=1)
    assert len(recent) == 1
    assert list(recent.columns) == [
        "created_at",
        "kind",
        "severity",
        "title",
        "details",
        "dedup_key",
        "delivered",
        "delivery_error",
    ]


def test_recent_alerts_without_table_is_empty_frame(tmp_path: Path) -> None:
    sink = make_sink(tmp_path)
    recent = sink.recent_alerts()
    assert recent.empty
    assert "dedup_key" in recent.columns
    assert not (tmp_path / "warehouse.duckdb").exists()


def test_webhook_500_then_200_is_retried(tmp_path: Path, receiver: Receiver) -> None:
    receiver.statuses = [500]
    sink = make_sink(tmp_path, receiver.url)
    (outcome,) = sink.raise_alerts([make_alert()])

    assert len(receiver.bodies) == 2
    assert receiver.bodies[0] == receiver.bodies[1]
    assert outcome.delivered is True
    assert outcome.delivery_error is None
    assert table_rows(tmp_path / "warehouse.duckdb")[0]["delivered"] is True


def test_webhook_4xx_is_not_retried(tmp_path: Path, receiver: Receiver) -> None:
    receiver.statuses = [400, 400, 400]
    sink = make_sink(tmp_path, receiver.url)
    (outcome,) = sink.raise_alerts([make_alert()])

    assert len(receiver.bodies) == 1
    assert outcome.delivered is False
    assert outcome.delivery_error is not None and "400" in outcome.delivery_error


def test_unreachable_webhook_is_not_retried_for_every_alert(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.statuses = [503, 503, 503, 503]
    sink = make_sink(tmp_path, receiver.url)
    first, second = sink.raise_alerts([make_alert("a"), make_alert("b")])

    assert len(receiver.bodies) == 3
    assert (first.delivered, first.delivery_error) == (False, "HTTP 503 Service Unavailable")
    assert second.delivered is False
    assert second.delivery_error is not None and second.delivery_error.startswith("not sent")
    assert [r["delivered"] for r in table_rows(tmp_path / "warehouse.duckdb")] == [False, False]


def test_webhook_down_records_error_without_raising(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, closed_port_url(), retries=1)
    (outcome,) = sink.raise_alerts([make_alert()])

    assert outcome.status == "recorded"
    assert outcome.delivered is False
    assert outcome.delivery_error
    (row,) = table_rows(tmp_path / "warehouse.duckdb")
    assert row["delivered"] is False
    assert row["delivery_error"] == outcome.delivery_error


def test_from_env_reads_webhook_and_warehouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PDM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PDM_ALERT_WEBHOOK_URL", "http://example.invalid/hook")
    sink = LocalAlertSink.from_env()
    assert sink.database == str((tmp_path / "home" / "warehouse.duckdb").resolve())
    assert sink.webhook_url == "http://example.invalid/hook"
    monkeypatch.delenv("PDM_ALERT_WEBHOOK_URL")
    assert LocalAlertSink.from_env().webhook_url == ""


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time, duckdb
    conn = duckdb.connect(sys.argv[1])
    conn.execute("create table if not exists held(x int)")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    conn.close()
    """
)


def hold_warehouse(database: Path, seconds: float) -> subprocess.Popen[str]:
    """Starts another process that opens the warehouse and keeps it for ``seconds``."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(database), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "locked"
    return process


def test_locked_warehouse_spools_then_flushes(tmp_path: Path, receiver: Receiver) -> None:
    database = tmp_path / "warehouse.duckdb"
    sink = make_sink(tmp_path, receiver.url, lock_wait_seconds=0.3)
    holder = hold_warehouse(database, 3.0)
    try:
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(str(database))
        started = time.monotonic()
        outcomes = sink.raise_alerts([make_alert("a"), make_alert("b")])
        assert time.monotonic() - started < 2.5
        assert [(o.status, o.delivered) for o in outcomes] == [("spooled", True)] * 2
        # The webhook does not wait for the warehouse; a spooled key is not raised again.
        assert len(receiver.bodies) == 2
        assert [o.status for o in sink.raise_alerts([make_alert("a")])] == ["duplicate"]
        spooled = [json.loads(line) for line in sink.spool_path.read_text().splitlines()]
        assert [row["dedup_key"] for row in spooled] == ["a", "b"]
        assert sink.spool_path == tmp_path / "alerts-spool.jsonl"
        assert set(sink.recent_alerts()["dedup_key"]) == {"a", "b"}
    finally:
        holder.wait(timeout=30)

    outcomes = sink.raise_alerts([make_alert("c"), make_alert("a")])
    assert [o.status for o in outcomes] == ["recorded", "duplicate"]
    rows = table_rows(database)
    assert sorted(r["dedup_key"] for r in rows) == ["a", "b", "c"]
    assert all(r["delivered"] is True for r in rows)
    assert sink.spool_path.read_text() == ""
    assert len(receiver.bodies) == 3


def test_short_lock_is_waited_for(tmp_path: Path) -> None:
    database = tmp_path / "warehouse.duckdb"
    sink = make_sink(tmp_path, lock_wait_seconds=20.0)
    holder = hold_warehouse(database, 1.0)
    try:
        (outcome,) = sink.raise_alerts([make_alert()])
    finally:
        holder.wait(timeout=30)
    assert outcome.status == "recorded"
    assert [r["dedup_key"] for r in table_rows(database)] == ["machine-7-v3-120"]
    assert not sink.spool_path.exists()


# ---------------------------------------------------------------------- sensors


@dg.asset(
    check_specs=[
        dg.AssetCheckSpec("no_negative_readings", asset="readings"),
        dg.AssetCheckSpec("enough_rows", asset="readings"),
        dg.AssetCheckSpec("sensor_drift_small", asset="readings"),
    ]
)
def readings() -> dg.MaterializeResult:
    return dg.MaterializeResult(
        check_results=[
            dg.AssetCheckResult(
                check_name="no_negative_readings",
                passed=False,
                metadata={"negative_rows": 3, "ratio": dg.MetadataValue.float(0.25)},
            ),
            dg.AssetCheckResult(check_name="enough_rows", passed=True),
            dg.AssetCheckResult(
                check_name="sensor_drift_small",
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "columns": dg.MetadataValue.table_schema(
                        dg.TableSchema(columns=[dg.TableColumn("s2", "float")])
                    )
                },
            ),
        ]
    )


def evaluate_check_sensor(
    instance: dg.DagsterInstance, sink: LocalAlertSink, cursor: str | None
) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"alerts": sink})
    result = alert_on_failed_checks(context)
    assert isinstance(result, dg.SensorResult)
    assert not result.run_requests
    return result


def assert_check_alerts(database: Path, key_prefix: str) -> None:
    rows = {json.loads(str(r["details"]))["check_name"]: r for r in table_rows(database)}
    assert set(rows) == {"no_negative_readings", "sensor_drift_small"}
    hard, soft = rows["no_negative_readings"], rows["sensor_drift_small"]
    assert hard["kind"] == "check_failed"
    assert hard["severity"] == "critical"
    assert soft["severity"] == "warning"
    assert str(hard["dedup_key"]).startswith(key_prefix)
    details = json.loads(str(hard["details"]))
    assert details["asset_key"] == "readings"
    assert details["metadata"] == {"negative_rows": 3, "ratio": 0.25}
    assert details["run_id"]
    assert isinstance(json.loads(str(soft["details"]))["metadata"]["columns"], str)


def test_failed_checks_sensor_alerts_once(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    sink = make_sink(tmp_path)
    assert dg.materialize([readings], instance=instance).success

    first = evaluate_check_sensor(instance, sink, None)
    assert first.skip_reason is not None
    assert "read 3" in first.skip_reason.skip_message
    assert "raised 2" in first.skip_reason.skip_message
    cursor = json.loads(first.cursor or "{}")
    assert cursor["last_storage_id"] > 0
    assert_check_alerts(tmp_path / "warehouse.duckdb", "check-")

    second = evaluate_check_sensor(instance, sink, first.cursor)
    assert second.skip_reason is not None
    assert "read 0" in second.skip_reason.skip_message
    assert "raised 0" in second.skip_reason.skip_message
    assert second.cursor == first.cursor
    assert len(table_rows(tmp_path / "warehouse.duckdb")) == 2

    # Starting over from scratch re-reads the evaluations but the dedup keys hold.
    again = evaluate_check_sensor(instance, sink, None)
    assert again.skip_reason is not None
    assert "raised 0" in again.skip_reason.skip_message
    assert len(table_rows(tmp_path / "warehouse.duckdb")) == 2


def test_failed_checks_sensor_on_run_sharded_sqlite(tmp_path: Path) -> None:
    """Dagster's default SQLite event log (the embedded default) keeps ids per run."""
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        assert instance.event_log_storage.is_run_sharded
        sink = make_sink(tmp_path)
        assert dg.materialize([readings], instance=instance).success
        assert dg.materialize([readings], instance=instance).success

        first = evaluate_check_sensor(instance, sink, None)
        assert first.skip_reason is not None
        assert "read 6" in first.skip_reason.skip_message
        assert "raised 4" in first.skip_reason.skip_message
        keys = [str(r["dedup_key"]) for r in table_rows(tmp_path / "warehouse.duckdb")]
        assert len(set(keys)) == 4

        second = evaluate_check_sensor(instance, sink, first.cursor)
        assert second.skip_reason is not None
        assert "read 0" in second.skip_reason.skip_message

        assert dg.materialize([readings], instance=instance).success
        third = evaluate_check_sensor(instance, sink, second.cursor)
        assert third.skip_reason is not None
        assert "read 3" in third.skip_reason.skip_message
        assert "raised 2" in third.skip_reason.skip_message
        assert len(table_rows(tmp_path / "warehouse.duckdb")) == 6


@dg.op
def explode() -> None:
    raise RuntimeError("sensor 14 reads nonsense")


@dg.job
def exploding_job() -> None:
    explode()


def run_failure_context(instance, result, sink: LocalAlertSink):  # type: ignore[no-untyped-def]
    """What the daemon hands alert_on_run_failure for a failed in-process run."""
    return dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources={"alerts": sink},
    )


def test_run_failure_sensor_raises_run_failed_alert(tmp_path: Path, receiver: Receiver) -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = exploding_job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    sink = make_sink(tmp_path, receiver.url)

    for _ in range(2):
        alert_on_run_failure(run_failure_context(instance, result, sink))

    (row,) = table_rows(tmp_path / "warehouse.duckdb")
    assert row["kind"] == "run_failed"
    assert row["severity"] == "critical"
    assert row["dedup_key"] == result.run_id
    assert "sensor 14 reads nonsense" in str(row["title"])
    details = json.loads(str(row["details"]))
    assert details["run_id"] == result.run_id
    assert details["job_name"] == "exploding_job"
    assert details["message"]
    assert "sensor 14 reads nonsense" in details["failed_steps"]["explode"]
    assert len(receiver.bodies) == 1
    assert json.loads(receiver.bodies[0])["dedup_key"] == result.run_id


@dg.asset(
    name="fleet_model_candidate",
    check_specs=[
        dg.AssetCheckSpec("not_worse_than_champion", asset="fleet_model_candidate", blocking=True)
    ],
)
def rejected_candidate():  # type: ignore[no-untyped-def]
    yield dg.Output(1)
    yield dg.AssetCheckResult(check_name="not_worse_than_champion", passed=False)


def test_rejected_candidate_is_an_info_alert_not_a_critical_one(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([rejected_candidate], instance=instance, raise_on_error=False)
    assert not result.success
    sink = make_sink(tmp_path, "")
    alert_on_run_failure(run_failure_context(instance, result, sink))
    (row,) = table_rows(tmp_path / "warehouse.duckdb")
    assert row["severity"] == "info"
    assert "champion stays" in str(row["title"])
    assert only_the_promotion_gate({"fleet_model_candidate": "x: not_worse_than_champion"})
    assert not only_the_promotion_gate({"fleet_model_candidate": "x", "other": None})
    assert not only_the_promotion_gate({})


def test_sensor_definitions() -> None:
    for sensor in (alert_on_run_failure, alert_on_failed_checks):
        assert sensor.minimum_interval_seconds == 30
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert sensor.required_resource_keys == {"alerts"}


def test_sensors_get_the_sink_from_definitions_like_the_daemon(tmp_path: Path) -> None:
    """``evaluate_tick`` with the top-level resources, as the sensor daemon's code server does."""
    sink = make_sink(tmp_path)
    defs = dg.Definitions(
        assets=[readings],
        jobs=[exploding_job],
        sensors=[alert_on_failed_checks, alert_on_run_failure],
        resources={"alerts": sink},
    )
    resources = defs.get_repository_def().get_top_level_resources()
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:

        def tick(sensor: dg.SensorDefinition, cursor: str | None) -> str | None:
            with dg.build_sensor_context(
                instance=instance, resources=resources, cursor=cursor, sensor_name=sensor.name
            ) as context:
                data = sensor.evaluate_tick(context)
            assert not data.run_requests
            return data.cursor

        run_cursor = tick(alert_on_run_failure, None)  # the first tick only sets the cursor
        assert dg.materialize([readings], instance=instance).success
        failed = exploding_job.execute_in_process(instance=instance, raise_on_error=False)
        tick(alert_on_failed_checks, None)
        tick(alert_on_run_failure, run_cursor)

    kinds = sorted(str(r["kind"]) for r in table_rows(tmp_path / "warehouse.duckdb"))
    assert kinds == ["check_failed", "check_failed", "run_failed"]
    assert failed.run_id in {r["dedup_key"] for r in table_rows(tmp_path / "warehouse.duckdb")}
