"""Landing-zone ingestion: one dynamic partition per landed file, appended to the warehouse.

``landing_zone_sensor`` adds a partition of ``telemetry_batches`` for every new file and asks
for a run of ``ingest_telemetry``; ``landed_telemetry`` then reads the file, checks it against
the source's contract and replaces the partition's rows of ``pdm.landed_telemetry`` at once
(:meth:`~pdm_resources.warehouse.Warehouse.replace_partition`: one DuckDB transaction locally,
one Parquet object in S3). Ingesting a batch twice (a retried run, a
backfill, the same bytes offered again) therefore leaves the table as one ingestion would.

Readings that an earlier batch already delivered (MQTT redelivery, overlapping exports) are
counted and not stored again; the same key with other values is a conflict and goes to
quarantine with the earlier batch named. A file that breaks the contract is moved to
quarantine with its reason and the run fails, naming the file, line and column.
"""

import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd

from pdm_core import schema
from pdm_core.landing import (
    BATCH_ID,
    LandedFileError,
    LandingContract,
    read_landed_file,
    split_against_existing,
)
from pdm_core.names import INGESTION_GROUP, LANDED_TELEMETRY, TELEMETRY_BATCHES
from pdm_resources.landing_zone import LandingZone
from pdm_resources.telemetry_source import TelemetrySource
from pdm_resources.warehouse import Warehouse

LANDED = LANDED_TELEMETRY
INGESTED_AT = "ingested_at"

telemetry_batches = dg.DynamicPartitionsDefinition(name=TELEMETRY_BATCHES)


def conflict_rejects(source: str, conflicts: pd.DataFrame) -> pd.DataFrame:
    """Reject rows for readings already ingested with other values (the earlier batch wins)."""
    key = conflicts[schema.MACHINE].astype(str) + " cycle " + conflicts[schema.CYCLE].astype(str)
    return pd.DataFrame(
        {
            "source": source,
            "line": pd.NA,
            "column": schema.CYCLE,
            "value": key,
            "reason": "already ingested with other values in batch "
            + conflicts["previous_batch"].astype(str),
        },
        columns=list(schema.REJECT_COLUMNS),
    )


@dg.asset(
    name=LANDED,
    partitions_def=telemetry_batches,
    group_name=INGESTION_GROUP,
    kinds={"duckdb"},
    check_specs=[
        dg.AssetCheckSpec(
            "no_rejected_readings", asset=LANDED, blocking=False,
            description="The batch had no bad or conflicting row (warning only; they are "
            "quarantined with their reasons).",
        )
    ],
)  # fmt: skip
def landed_telemetry(
    context: dg.AssetExecutionContext,
    landing_zone: LandingZone,
    warehouse: Warehouse,
    telemetry_source: TelemetrySource,
):  # type: ignore[no-untyped-def]
    """Readings of one landed file (partition = batch id), appended to ``pdm.landed_telemetry``."""
    batch = context.partition_key
    started = time.perf_counter()
    name, data = landing_zone.fetch(batch)
    contract = LandingContract.from_info(telemetry_source.dataset_info())
    try:
        landed = read_landed_file(Path(name), contract, data=data)
    except LandedFileError as error:
        target = landing_zone.quarantine(batch, name, str(error))
        raise dg.Failure(
            description=f"{error} (file moved to {target})",
            metadata={"file": name, "quarantined_to": target},
        ) from error
    rows = landed.frame
    seen = warehouse.readings_with_keys(rows, exclude_batch=batch)
    fresh, conflicts, redelivered = split_against_existing(rows, seen, contract.numeric)
    stored = fresh.assign(**{BATCH_ID: batch, INGESTED_AT: datetime.now(UTC)})
    stored = stored[[*contract.table_columns(), INGESTED_AT]]
    stored_in = warehouse.replace_partition(LANDED, BATCH_ID, batch, stored)
    rejects = pd.concat([landed.rejects, conflict_rejects(name, conflicts)])
    metadata: dict[str, object] = {
        "file": name,
        "rows_read": landed.rows_read,
        "rows_ingested": len(stored),
        "rows_rejected": len(landed.rejects),
        "conflicting_readings": len(conflicts),
        "redelivered_readings": redelivered,
        "duplicates_in_file": landed.duplicates_in_file,
        "labelled_rows": int(stored[schema.LABEL].notna().sum()),
        "machines": int(stored[schema.MACHINE].nunique()),
        "ingest_seconds": round(time.perf_counter() - started, 3),
        "stored_in": stored_in,
    }
    if len(stored):
        metadata["cycles"] = f"{int(stored[schema.CYCLE].min())}..{int(stored[schema.CYCLE].max())}"
    if not rejects.empty:
        where = landing_zone.write_rejected_rows(batch, rejects)
        metadata["quarantine"] = where
        context.log.warning(f"{len(rejects)} row problem(s) in {name}; written to {where}")
    metadata["archived_to"] = landing_zone.archive(batch, name)
    context.log.info(
        f"{name}: {len(stored)} readings ingested, {redelivered} redelivered, "
        f"{len(rejects)} rejected"
    )
    yield dg.MaterializeResult(
        metadata=metadata, data_version=dg.DataVersion(batch.rsplit("-", 1)[-1])
    )
    yield dg.AssetCheckResult(
        check_name="no_rejected_readings",
        passed=rejects.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"observed": len(rejects), "threshold": 0},
    )
