"""Live scoring: every landed batch is scored by the champion in the run that ingests it.

``machine_risk`` (one partition per landed batch, like ``landed_telemetry``) scores each new
reading on its own window, reaching back into earlier batches and the training source for the
readings before it (:mod:`pdm_core.live_scoring`), writes one row per scored reading into
``pdm.risk_history`` (replacing the batch's partition, so a retried run or a backfill leaves
it as one run would), raises HIGH/CRITICAL risk and anomaly alerts through the alert sink and
records the batch in ``pdm.scored_batches`` (version, counts, when its file landed and when
its scores were stored).
"""

import time
from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from pdm_assets.ingestion import telemetry_batches
from pdm_core import schema
from pdm_core.live_scoring import LiveScores
from pdm_core.names import (
    CHAMPION_MODEL,
    INGESTION_GROUP,
    LANDED_AT_TAG,
    LANDED_TELEMETRY,
    MACHINE_RISK,
    RISK_HISTORY,
    SCORED_BATCHES,
    TELEMETRY_BATCHES,
)
from pdm_resources.alerts import AlertSink
from pdm_resources.mlflow_tracking import MlflowTracking
from pdm_resources.warehouse import Warehouse


class LiveScoring(dg.Config):
    """How live readings are accepted."""

    future_tolerance_minutes: float = 10.0
    """A reading stamped further ahead of the scoring time than this is refused."""


def batches_before(context: dg.AssetExecutionContext, batch: str) -> list[str]:
    """The batches that landed before ``batch`` (the partition set keeps landing order)."""
    keys = context.instance.get_dynamic_partitions(TELEMETRY_BATCHES)
    return keys[: keys.index(batch)] if batch in keys else keys


@dg.asset(
    name=MACHINE_RISK,
    partitions_def=telemetry_batches,
    group_name=INGESTION_GROUP,
    deps=[LANDED_TELEMETRY, CHAMPION_MODEL],
    kinds={"duckdb"},
    # The run's steps share one process (the definitions' executor): scoring goes before the
    # drift report, whose Evidently import alone takes seconds.
    op_tags={"dagster/priority": "10"},
)
def machine_risk(
    context: dg.AssetExecutionContext,
    config: LiveScoring,
    warehouse: Warehouse,
    mlflow_tracking: MlflowTracking,
    alerts: AlertSink,
) -> dg.MaterializeResult:
    """The champion's score of every new reading of the batch, into ``pdm.risk_history``."""
    from pdm_assets.promotion import load_fleet_model
    from pdm_core.live_scoring import score_batch

    batch = context.partition_key
    started = time.perf_counter()
    readings = warehouse.landed_readings([batch])
    if readings.empty:
        return dg.MaterializeResult(metadata={"readings": 0, "scored": 0, "reason": "no readings"})
    try:
        model, version = load_fleet_model(mlflow_tracking, serving=True)
    except Exception as error:  # no champion yet: nothing to score with, said so
        context.log.warning(f"batch {batch} not scored: no champion model ({error})")
        return dg.MaterializeResult(
            metadata={"readings": len(readings), "scored": 0, "reason": f"no champion: {error}"}
        )
    champion = str(version.version)
    if champion in warehouse.scored_versions(batch):
        context.log.info(f"batch {batch} already scored by champion v{champion}")
        return dg.MaterializeResult(
            metadata={
                "readings": len(readings),
                "scored": 0,
                "model_version": champion,
                "reason": f"already scored by v{champion}",
            }
        )
    state = model.feature_state
    first = readings.groupby(schema.MACHINE, observed=True)[schema.CYCLE].min().reset_index()
    history = warehouse.preceding_readings(
        first, state.window_length - 1, list(readings.columns), exclude_batch=batch
    )
    machines = [str(m) for m in first[schema.MACHINE]]
    now = pd.Timestamp(datetime.now(UTC)).tz_localize(None)
    result = score_batch(
        model, readings, history,
        batch_id=batch, model_name=mlflow_tracking.registered_model, model_version=champion,
        newest_before=warehouse.newest_cycles(batches_before(context, batch), machines),
        now=now, future_tolerance=pd.Timedelta(minutes=config.future_tolerance_minutes),
    )  # fmt: skip
    stored_in = warehouse.replace_partition(RISK_HISTORY, "batch_id", batch, result.rows)
    raised = alerts.raise_alerts(result.alerts(now.date().isoformat()))
    new_alerts = sum(outcome.status != "duplicate" for outcome in raised)
    landed = landed_at(context)
    stored = pd.Timestamp(datetime.now(UTC)).tz_localize(None)  # risk rows and alerts are in
    record = pd.DataFrame([{
        "batch_id": batch, "model_version": champion, "readings": len(readings),
        "scored": len(result.rows), "alerts_raised": new_alerts,
        "landed_at": pd.NaT if landed is None else landed, "scored_at": now, "stored_at": stored,
    }]).astype({"landed_at": "datetime64[ns]"})  # fmt: skip
    warehouse.replace_partition(SCORED_BATCHES, "batch_id", batch, record)
    log_outcome(context, batch, champion, len(readings), result, new_alerts)
    return dg.MaterializeResult(
        metadata={
            "readings": len(readings),
            "scored": len(result.rows),
            "skipped": dg.MetadataValue.json(result.skipped_by_reason()),
            "machines": len(machines),
            "model_version": champion,
            "readings_by_risk_level": dg.MetadataValue.json(
                {str(k): int(v) for k, v in result.rows["risk_level"].value_counts().items()}
            ),
            "alerts_raised": new_alerts,
            "score_seconds": round(time.perf_counter() - started, 3),
            "ingest_to_score_seconds": seconds_since_ingestion(readings, now),
            "landing_to_score_seconds": seconds_since(landed, stored),
            "stored_in": stored_in,
        }
    )


def landed_at(context: dg.AssetExecutionContext) -> pd.Timestamp | None:
    """When the batch's file was written (naive UTC), from the landing sensor's run tag."""
    tag = context.run.tags.get(LANDED_AT_TAG)
    if not tag:
        return None  # launched by hand or by a backfill: no file time to measure from
    try:
        return pd.Timestamp(tag).tz_convert("UTC").tz_localize(None)
    except (ValueError, TypeError):
        context.log.warning(f"run tag {LANDED_AT_TAG}={tag!r} is not an ISO time; ignored")
        return None


def seconds_since(moment: pd.Timestamp | None, now: pd.Timestamp) -> float | None:
    """Seconds from ``moment`` to ``now`` (both naive UTC), None when ``moment`` is unknown."""
    return None if moment is None else round((now - moment).total_seconds(), 3)


def seconds_since_ingestion(readings: pd.DataFrame, now: pd.Timestamp) -> float | None:
    """Seconds from the batch's ingestion to ``now`` (naive UTC), None without the column."""
    if "ingested_at" not in readings.columns or readings.empty:
        return None
    landed = pd.Timestamp(readings["ingested_at"].max())
    landed = landed.tz_convert("UTC").tz_localize(None) if landed.tzinfo else landed
    return round((now - landed).total_seconds(), 3)


def log_outcome(
    context: dg.AssetExecutionContext, batch: str, champion: str, readings: int,
    result: LiveScores, new_alerts: int,
) -> None:  # fmt: skip
    """One line with the counts, and the first unscored readings with their reasons."""
    context.log.info(
        f"batch {batch}: {len(result.rows)} of {readings} readings scored by v{champion}, "
        f"skipped {result.skipped_by_reason()}, {new_alerts} new alert(s)"
    )
    if len(result.skipped):
        context.log.warning(
            f"{len(result.skipped)} reading(s) not scored: "
            + "; ".join(
                f"{row.machine_id} cycle {row.cycle}: {row.reason} ({row.detail})"
                for row in result.skipped.head(5).itertuples(index=False)
            )
        )
