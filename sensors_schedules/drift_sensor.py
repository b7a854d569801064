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
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from pdm_core.alerts import Alert, drift_dedup_key
from pdm_core.names import DRIFT_REPORT, RETRAIN_JOB
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


@dataclass(frozen=True)
class RetrainDecision:
    """Whether to request retraining now, and why (or why not)."""

    retrain: bool
    reason: str


def decide_retrain(
    drift_share: float,
    n_checked: int,
    threshold: float,
    now: float,
    last_triggered: float | None,
    cooldown_minutes: float,
    active_run: str | None = None,
    retrained_by: str | None = None,
) -> RetrainDecision:
    """The drift sensor's rule (pure).

    Args:
        drift_share: The report's share of drifted features.
        n_checked: Features that got a verdict (0: too little data for any).
        threshold: Share from which retraining is due.
        now: Current time (epoch seconds).
        last_triggered: When drift last triggered retraining (epoch seconds), if ever.
        cooldown_minutes: Least time between two triggered retrains.
        active_run: Id of a retraining run still queued or running, if any.
        retrained_by: Run key of the retrain that the same batches already triggered, if any.

    Returns:
        The decision with its reason.
    """
    if n_checked == 0:
        return RetrainDecision(False, "no feature had enough readings for a verdict")
    shown = f"drift share {drift_share:.2f} (threshold {threshold:.2f})"
    if drift_share < threshold:
        return RetrainDecision(False, f"{shown}: below threshold")
    if active_run:
        return RetrainDecision(False, f"{shown}, but retraining run {active_run} is in progress")
    if retrained_by:
        return RetrainDecision(
            False,
            f"{shown}, but these batches already triggered {retrained_by}: waiting for new batches",
        )
    if last_triggered is not None:
        waited = (now - last_triggered) / 60.0
        if waited < cooldown_minutes:
            return RetrainDecision(
                False,
                f"{shown}, but in cooldown: last retrain requested {waited:.1f} min ago "
                f"(cooldown {cooldown_minutes:g} min)",
            )
    return RetrainDecision(True, f"{shown}: retraining requested")


@dg.sensor(
    job_name=RETRAIN_JOB,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests the retrain job when the newest drift report's drift share reaches "
    "the threshold (run key from the report's data version; cooldown against storms).",
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
    share = float(metadata.get("drift_share", 0.0))
    n_checked = int(metadata.get("n_checked", 0))
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
        share, n_checked, drift_policy.threshold, datetime.now(UTC).timestamp(),
        cursor.get("last_triggered"), drift_policy.cooldown_minutes,
        active[0].run_id[:8] if active else None, retrained_by,
    )  # fmt: skip
    new_cursor = {**cursor, "report_storage_id": record.storage_id}
    details = {
        "drift_share": share,
        "threshold": drift_policy.threshold,
        "report_version": version,
        "champion_version": metadata.get("champion_version"),
        "batches": batches,
        "decision": decision.reason,
    }
    if share >= drift_policy.threshold and n_checked and not retrained_by:
        # Drift in batches that already triggered a retrain was alerted on then.
        alerts.raise_alerts(
            [
                Alert(
                    kind="drift", severity="warning",
                    title=f"Telemetry drift: {share:.0%} of features drifted",
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
                    "pdm/drift_share": f"{share:.4f}",
                    "pdm/drift_report_version": version,
                },
            )
        ],
        cursor=json.dumps(new_cursor),
    )
