"""The drift sensor: a new drift report over the threshold requests the retraining job.

The run key is ``retrain-<drift report data version>``: the version hashes the champion, the
batches compared and the test settings, so the same drift never triggers twice. Batches that
already triggered a retrain do not trigger another: the retrained model was trained on them, and
its own drift report (against a reference that now holds them among much older data) still shows
drift, which would otherwise retrain on the same data after every cooldown. A cooldown stops
retrain storms, a retraining run still queued or running holds new requests back, and every skip
says why (visible in the UI on the sensor's ticks).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import dagster as dg

from pdm_core.alerts import Alert, drift_dedup_key
from pdm_core.names import DRIFT_REPORT, RETRAIN_JOB
from pdm_core.retraining import DriftVerdict, decide_retrain
from pdm_resources.alerts import AlertSink
from pdm_resources.drift_policy import DriftPolicy
from sensors_schedules.event_metadata import plain_metadata

ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
#: Batches remembered in the cursor as already retrained on (the oldest are forgotten first).
REMEMBERED_BATCHES = 500


@dg.sensor(
    job_name=RETRAIN_JOB,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests the retrain job when the newest drift report's verdict is drift "
    "(run key from the report's data version; cooldown against storms).",
)
def drift_retrain_sensor(
    context: dg.SensorEvaluationContext, drift_policy: DriftPolicy, alerts: AlertSink
):  # type: ignore[no-untyped-def]
    """Reads the newest drift report materialisation and decides whether to retrain."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    latest = context.instance.fetch_materializations(dg.AssetKey(DRIFT_REPORT), limit=1).records
    record = latest[0] if latest else None  # an EventLogRecord: it has the storage_id
    if record is None or record.asset_materialization is None:
        return dg.SensorResult(skip_reason="no drift report yet", cursor=context.cursor)
    if record.storage_id == cursor.get("report_storage_id"):
        return dg.SensorResult(
            skip_reason=f"no new drift report since the one of run {record.run_id[:8]}",
            cursor=context.cursor,
        )
    metadata = plain_metadata(record.asset_materialization.metadata)
    verdict = DriftVerdict.from_metadata(metadata, drift_policy.threshold)
    tags = record.asset_materialization.tags or {}
    version = str(tags.get("dagster/data_version") or record.storage_id)
    batches = [str(b) for b in metadata.get("batches") or []]
    retrained: dict[str, str] = cursor.get("retrained_batches", {})
    seen_all = bool(batches) and all(batch in retrained for batch in batches)
    retrained_by = retrained[batches[0]] if seen_all else None  # the newest batch's retrain
    active = context.instance.get_runs(
        dg.RunsFilter(job_name=RETRAIN_JOB, statuses=ACTIVE), limit=1
    )
    decision = decide_retrain(
        verdict, datetime.now(UTC).timestamp(), cursor.get("last_triggered"),
        drift_policy.cooldown_minutes, active[0].run_id[:8] if active else None, retrained_by,
    )  # fmt: skip
    new_cursor = {**cursor, "report_storage_id": record.storage_id}
    details = {
        "drift_share": verdict.drift_share,
        "threshold": verdict.threshold,
        "report_version": version,
        "champion_version": metadata.get("champion_version"),
        "batches": batches,
        "decision": decision.reason,
    }
    if verdict.dataset_drift and verdict.n_checked and not retrained_by:
        # Drift in batches that already triggered a retrain was alerted on then.
        alerts.raise_alerts(
            [
                Alert(
                    kind="drift", severity="warning",
                    title=f"Telemetry drift: {verdict.drift_share:.0%} of features drifted",
                    details=details, dedup_key=drift_dedup_key(version),
                )
            ]
        )  # fmt: skip
    if not decision.retrain:
        return dg.SensorResult(skip_reason=decision.reason, cursor=json.dumps(new_cursor))
    run_key = f"retrain-{version}"
    new_cursor["last_triggered"] = datetime.now(UTC).timestamp()
    kept = {batch: key for batch, key in retrained.items() if batch not in batches}
    remembered = {**kept, **dict.fromkeys(batches, run_key)}  # newest last
    new_cursor["retrained_batches"] = dict(list(remembered.items())[-REMEMBERED_BATCHES:])
    context.log.info(decision.reason)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=run_key,
                tags={
                    "pdm/trigger": "drift",
                    "pdm/drift_share": f"{verdict.drift_share:.4f}",
                    "pdm/drift_report_version": version,
                },
            )
        ],
        cursor=json.dumps(new_cursor),
    )
