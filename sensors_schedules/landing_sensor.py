"""The landing-zone sensor: one ingestion run per new file, exactly once.

Every tick lists ``incoming/``; a file not seen before (or rewritten since) is hashed into its
batch id, added as a partition of ``telemetry_batches`` and requested as a run with
``run_key = batch id``. Dagster never launches two runs with the same key for a sensor, so a
file is ingested once even when the cursor is lost or the daemon restarts mid-tick. A copy of
the same bytes under another name is a new batch whose readings ingestion counts as
redeliveries and does not store again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from pdm_core.names import INGEST_JOB, LANDED_AT_TAG, TELEMETRY_BATCHES
from pdm_resources.landing_zone import LandedFile, LandingZone

MAX_FILES_PER_TICK = 25


@dataclass(frozen=True)
class LandingDecision:
    """What one tick does: the runs to request and the cursor to keep."""

    batches: list[tuple[str, str]]  # (file name, batch id) to request, oldest first
    cursor: dict[str, list[str]]  # file name -> [fingerprint, batch id], still in incoming
    deferred: int  # new files left for the next tick


def plan_tick(
    files: list[LandedFile],
    cursor: dict[str, list[str]],
    batch_of,  # type: ignore[no-untyped-def]
    limit: int = MAX_FILES_PER_TICK,
) -> LandingDecision:
    """Decides which incoming files to request (pure; ``batch_of(name)`` hashes a file).

    Args:
        files: Complete files in ``incoming/``, oldest first.
        cursor: The previous tick's cursor (file name -> [fingerprint, batch id]).
        batch_of: Returns the batch id of a file name.
        limit: Most files requested per tick; the rest wait for the next one.

    Returns:
        The batches to request and the new cursor (files that left ``incoming/`` drop out).
    """
    kept: dict[str, list[str]] = {}
    batches: list[tuple[str, str]] = []
    deferred = 0
    for entry in files:
        known = cursor.get(entry.name)
        if known and known[0] == entry.fingerprint:
            kept[entry.name] = known
            continue
        if len(batches) >= limit:
            deferred += 1
            continue
        batch = batch_of(entry.name)
        kept[entry.name] = [entry.fingerprint, batch]
        batches.append((entry.name, batch))
    return LandingDecision(batches, kept, deferred)


LANDING_INTERVAL_SECONDS = 4
"""Minimum seconds between the sensor's ticks. The daemon's sensor loop wakes every 5 s; a
minimum just under that lets every loop tick (5 s would skip every other loop: 10 s); the wait
for the next tick is part of a landed reading's way to its risk score."""


def landed_at(mtime_ns: int) -> str:
    """A file's modification time as the ISO 8601 UTC value of :data:`LANDED_AT_TAG`."""
    return datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC).isoformat()


@dg.sensor(
    job_name=INGEST_JOB,
    minimum_interval_seconds=LANDING_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests one ingestion run per new file in the landing zone (run key = batch "
    "id: content hash), adding the batch as a partition of telemetry_batches.",
)
def landing_zone_sensor(context: dg.SensorEvaluationContext, landing_zone: LandingZone):  # type: ignore[no-untyped-def]
    """One run per new landed file; the cursor remembers files still waiting in incoming/."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    files = landing_zone.list_incoming()
    decision = plan_tick(files, cursor.get("files", {}), landing_zone.batch_of)
    new_cursor = json.dumps({"files": decision.cursor}, sort_keys=True)
    if not decision.batches:
        waiting = len(files)
        reason = (
            f"no new file in {landing_zone.describe()}"
            if not waiting
            else f"{waiting} file(s) in incoming already requested (being ingested)"
        )
        return dg.SensorResult(skip_reason=reason, cursor=new_cursor)
    keys = [batch for _, batch in decision.batches]
    written = {entry.name: entry.mtime_ns for entry in files}
    context.log.info(
        f"{len(keys)} new file(s): {', '.join(name for name, _ in decision.batches)}"
        + (f"; {decision.deferred} left for the next tick" if decision.deferred else "")
    )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=batch,
                partition_key=batch,
                tags={
                    "pdm/landed_file": name[:200],
                    "pdm/trigger": "landing_zone",
                    LANDED_AT_TAG: landed_at(written[name]),
                },
            )
            for name, batch in decision.batches
        ],
        dynamic_partitions_requests=[
            dg.AddDynamicPartitionsRequest(
                partitions_def_name=TELEMETRY_BATCHES, partition_keys=keys
            )
        ],
        cursor=new_cursor,
    )
