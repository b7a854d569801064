"""Sensors that turn failed runs and failed asset checks into alerts.

Both only write alerts (through the ``alerts`` resource, an
:class:`~pdm_resources.alerts.AlertSink`); neither requests runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from pdm_core.alerts import Alert, check_failed_dedup_key
from pdm_core.names import FLEET_MODEL_CANDIDATE, PROMOTION_GATE
from pdm_resources.alerts import AlertSink
from sensors_schedules.event_metadata import plain_metadata

CHECK_EVENTS_PER_TICK = 500
RUNS_PER_TICK = 100


# ---------------------------------------------------------------------- helpers


def _error_lines(error: Any) -> list[str]:
    """Messages of a ``SerializableErrorInfo`` and its causes, outermost first."""
    lines = []
    seen = 0
    while error is not None and seen < 10:
        message = (getattr(error, "message", "") or "").strip()
        if message:
            lines.append(message)
        error = getattr(error, "cause", None)
        seen += 1
    return lines


def _root_cause(error: Any) -> str | None:
    """The innermost message of an error chain (the user code's exception)."""
    lines = _error_lines(error)
    return lines[-1] if lines else None


def _outcome_counts(outcomes: Sequence[Any]) -> int:
    return sum(1 for outcome in outcomes if outcome.status != "duplicate")


# ---------------------------------------------------------------------- run failures


def only_the_promotion_gate(failed_steps: Mapping[str, str | None]) -> bool:
    """True when the only failure is the blocking promotion check (a candidate rejected).

    Args:
        failed_steps: Step key -> root error message of every failed step.
    """
    return bool(failed_steps) and all(
        step == FLEET_MODEL_CANDIDATE and PROMOTION_GATE in (error or "")
        for step, error in failed_steps.items()
    )


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Raises a critical run_failed alert (table pdm.alerts, webhook) for every "
    "failed run of a job in this code location.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext, alerts: AlertSink) -> None:
    """Raises one ``run_failed`` alert per failed run (dedup key: the run id).

    Args:
        context: The failed run and its failure event.
        alerts: The alert sink.
    """
    run = context.dagster_run
    event = context.failure_event
    failed_steps: dict[str, str | None] = {}
    for step_event in context.get_step_failure_events():
        data = step_event.event_specific_data
        failed_steps[step_event.step_key or "?"] = _root_cause(getattr(data, "error", None))
    data = event.event_specific_data
    reason = getattr(data, "failure_reason", None)
    details: dict[str, Any] = {
        "run_id": run.run_id,
        "job_name": run.job_name,
        "message": event.message or "",
        "failure_reason": getattr(reason, "value", reason),
        "run_error": _root_cause(getattr(data, "error", None)),
        "failed_steps": failed_steps,
        "tags": {key: str(value) for key, value in run.tags.items()},
    }
    first_error = next((text for text in failed_steps.values() if text), details["run_error"])
    title = f"Run {run.run_id[:8]} of {run.job_name} failed"
    if first_error:
        title += f": {first_error.splitlines()[0][:200]}"
    severity = "critical"
    if only_the_promotion_gate(failed_steps):
        severity = "info"
        title = (
            f"Run {run.run_id[:8]} of {run.job_name}: the retrained model was not better, "
            "the champion stays (promotion gate)"
        )
    outcomes = alerts.raise_alerts(
        [
            Alert(
                kind="run_failed",
                severity=severity,
                title=title,
                details=details,
                dedup_key=run.run_id,
            )
        ]
    )
    context.log.info(f"run_failed alert for {run.run_id}: {outcomes[0].status}")


# ---------------------------------------------------------------------- asset checks


def _check_alert(record: dg.EventLogRecord, dedup_key: str) -> Alert | None:
    """The alert of a failed check evaluation record, or ``None`` if it passed."""
    entry = record.event_log_entry
    event = entry.dagster_event
    if event is None or event.event_type != dg.DagsterEventType.ASSET_CHECK_EVALUATION:
        return None
    evaluation = event.asset_check_evaluation_data
    if evaluation.passed:
        return None
    critical = bool(evaluation.blocking) or evaluation.severity == dg.AssetCheckSeverity.ERROR
    asset = evaluation.asset_key.to_user_string()
    details = {
        "asset_key": asset,
        "check_name": evaluation.check_name,
        "run_id": entry.run_id,
        "severity": evaluation.severity.value,
        "blocking": bool(evaluation.blocking),
        "partition": evaluation.partition,
        "description": evaluation.description,
        "metadata": plain_metadata(evaluation.metadata),
        "storage_id": record.storage_id,
    }
    return Alert(
        kind="check_failed",
        severity="critical" if critical else "warning",
        title=f"Asset check {asset}:{evaluation.check_name} failed",
        details=details,
        dedup_key=dedup_key,
        created_at=datetime.fromtimestamp(entry.timestamp, UTC),
    )


def _read_global(
    instance: dg.DagsterInstance, cursor: dict[str, Any]
) -> tuple[list[tuple[dg.EventLogRecord, str]], dict[str, Any]]:
    """New evaluations from an event log with global storage ids (Postgres, in-memory)."""
    last_id = int(cursor.get("last_storage_id") or 0)
    records = instance.event_log_storage.get_event_records(
        dg.EventRecordsFilter(
            event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=last_id
        ),
        limit=CHECK_EVENTS_PER_TICK,
        ascending=True,
    )
    if records:
        last_id = max(record.storage_id for record in records)
    return (
        [(record, check_failed_dedup_key(record.storage_id)) for record in records],
        {**cursor, "last_storage_id": last_id},
    )


def _read_run_sharded(
    instance: dg.DagsterInstance, cursor: dict[str, Any]
) -> tuple[list[tuple[dg.EventLogRecord, str]], dict[str, Any]]:
    """New evaluations from Dagster's default SQLite event log (one id sequence per run).

    Storage ids there repeat across runs, so the cursor follows runs by update time instead:
    a run's last update (its end) comes after all its events, so every evaluation is read at
    the latest when its run is next updated.
    """
    after = cursor.get("runs_updated_after")
    filters = dg.RunsFilter(updated_after=datetime.fromisoformat(after)) if after else None
    run_records = instance.get_run_records(
        filters=filters, limit=RUNS_PER_TICK, order_by="update_timestamp", ascending=True
    )
    found: list[tuple[dg.EventLogRecord, str]] = []
    for run_record in run_records:
        run_id = run_record.dagster_run.run_id
        records = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        found.extend(
            (record, check_failed_dedup_key(record.storage_id, run_id)) for record in records
        )
    if run_records:
        after = run_records[-1].update_timestamp.isoformat()
    return found, {**cursor, "runs_updated_after": after}


@dg.sensor(
    name="alert_on_failed_checks",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Raises a check_failed alert (table pdm.alerts, webhook) for every asset check "
    "evaluation that did not pass; critical for blocking or ERROR checks, else warning.",
)
def alert_on_failed_checks(
    context: dg.SensorEvaluationContext, alerts: AlertSink
) -> dg.SensorResult:
    """Reads the asset check evaluations logged since the cursor and alerts on failed ones.

    The cursor is JSON: ``{"last_storage_id": int}`` on event logs with global storage ids
    (PostgreSQL, in-memory); on Dagster's default run-sharded SQLite event log it also holds
    ``runs_updated_after`` (ISO timestamp), since storage ids there repeat across runs.

    Args:
        context: The sensor context (instance and cursor).
        alerts: The alert sink.

    Returns:
        The advanced cursor and a skip reason counting evaluations read and alerts raised; never
        run requests.
    """
    cursor: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
    cursor.setdefault("last_storage_id", 0)
    instance = context.instance
    if instance.event_log_storage.is_run_sharded:
        records, new_cursor = _read_run_sharded(instance, cursor)
    else:
        records, new_cursor = _read_global(instance, cursor)
    failed = [alert for record, key in records if (alert := _check_alert(record, key))]
    outcomes = alerts.raise_alerts(failed) if failed else []
    raised = _outcome_counts(outcomes)
    return dg.SensorResult(
        cursor=json.dumps(new_cursor),
        skip_reason=f"read {len(records)} asset check evaluation(s), "
        f"{len(failed)} failed, raised {raised} alert(s)",
    )
