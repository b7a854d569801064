"""Raw telemetry from the configured source, with its data-quality checks."""

import dagster as dg
import pandas as pd
from pydantic import Field

from pdm_assets.metadata import check_result, frame_metadata
from pdm_core import quality, schema
from pdm_core.training_window import combine_with_landed
from pdm_core.versioning import frame_version
from pdm_resources.artifacts import ArtifactStore
from pdm_resources.telemetry_source import TelemetrySource
from pdm_resources.warehouse import Warehouse

RAW = "raw_telemetry"
MIN_PREVALENCE, MAX_PREVALENCE = 0.001, 0.5

RAW_CHECKS = [
    dg.AssetCheckSpec(
        "schema_matches", asset=RAW, blocking=True,
        description="Every canonical, sensor and setting column is present with its dtype.",
    ),
    dg.AssetCheckSpec(
        "no_missing_values", asset=RAW, blocking=True,
        description="Keys, sensors, settings and the label hold no null or non-finite value.",
    ),
    dg.AssetCheckSpec(
        "sensor_values_in_range", asset=RAW, blocking=True,
        description="Sensor values lie within the dataset's declared plausible ranges.",
    ),
    dg.AssetCheckSpec(
        "time_ordered_per_machine", asset=RAW, blocking=True,
        description="Cycles increase strictly within each machine (no duplicates).",
    ),
    dg.AssetCheckSpec(
        "label_prevalence", asset=RAW, blocking=True,
        description=f"Share of failure_within_h=1 lies in [{MIN_PREVALENCE}, {MAX_PREVALENCE}].",
    ),
    dg.AssetCheckSpec(
        "no_rejected_rows", asset=RAW, blocking=False,
        description="The source had no row that had to be quarantined (warning only).",
    ),
]  # fmt: skip


def raw_checks(frame: pd.DataFrame, info: schema.DatasetInfo, load_rejected: int, rows_read: int):  # type: ignore[no-untyped-def]
    """Evaluates the raw-telemetry checks on the loaded frame (one property each)."""
    problems = quality.schema_problems(frame, info)
    yield check_result("schema_matches", not problems, len(problems), 0, asset_key=RAW,
                       problems=problems)  # fmt: skip
    columns = [schema.MACHINE, schema.CYCLE, schema.LABEL, *info.sensors, *info.settings]
    nulls = quality.null_counts(frame, [c for c in columns if c in frame.columns])
    yield check_result("no_missing_values", not nulls, sum(nulls.values()), 0, asset_key=RAW,
                       by_column=nulls)  # fmt: skip
    ranges = quality.declared_ranges(info)
    outside = quality.range_violations(frame, ranges)
    yield check_result(
        "sensor_values_in_range", not outside, sum(outside.values()), 0, asset_key=RAW,
        by_column=outside, ranges={k: list(v) for k, v in ranges.items()} or "none declared",
    )  # fmt: skip
    disorder = quality.time_order_violations(frame)
    yield check_result("time_ordered_per_machine", disorder == 0, disorder, 0, asset_key=RAW)
    prevalence = quality.label_prevalence(frame)
    yield check_result(
        "label_prevalence", MIN_PREVALENCE <= prevalence <= MAX_PREVALENCE, round(prevalence, 6),
        [MIN_PREVALENCE, MAX_PREVALENCE], asset_key=RAW,
    )  # fmt: skip
    share = load_rejected / rows_read if rows_read else 0.0
    yield check_result(
        "no_rejected_rows", load_rejected == 0, load_rejected, 0, asset_key=RAW,
        severity=dg.AssetCheckSeverity.WARN, rejected_share=round(share, 6),
    )  # fmt: skip


class TrainingWindow(dg.Config):
    """Which landed telemetry joins the source's data (the retraining window policy)."""

    include_landed: bool = Field(True, description="Train on labelled landed readings too.")
    landed_batches: int = Field(
        0, description="Newest landed batches to include; 0 includes every landed batch."
    )


def landed_rows(warehouse: Warehouse, window: TrainingWindow) -> pd.DataFrame:
    """Rows of ``pdm.landed_telemetry`` inside the window (empty when nothing landed)."""
    if not window.include_landed:
        return pd.DataFrame()
    if window.landed_batches > 0:
        return warehouse.landed_readings(warehouse.newest_batches(window.landed_batches))
    return warehouse.landed_readings()


@dg.multi_asset(
    deps=["landed_telemetry"],
    outs={
        RAW: dg.AssetOut(
            io_manager_key="warehouse_io_manager",
            group_name="telemetry",
            description="Canonical telemetry (one row per machine and reading) from the "
            "configured source, with labels: rul, failure_within_h, failure_mode.",
        ),
        "dataset_info": dg.AssetOut(
            group_name="telemetry",
            description="Column roles of raw_telemetry: sensors, settings, categoricals, "
            "horizon, regime rule.",
        ),
    },
    check_specs=RAW_CHECKS,
)
def raw_telemetry(
    context: dg.AssetExecutionContext,
    config: TrainingWindow,
    telemetry_source: TelemetrySource,
    artifacts: ArtifactStore,
    warehouse: Warehouse,
):  # type: ignore[no-untyped-def]
    """The source's telemetry plus labelled landed readings; rejected rows go to quarantine."""
    context.log.info(f"loading {telemetry_source.describe()}")
    result = telemetry_source.load()
    info = result.info
    frame, window = combine_with_landed(result.frame, landed_rows(warehouse, config), info)
    if window.landed_rows:
        context.log.info(f"landed telemetry: {window.to_dict()}")
    version = frame_version(frame)
    metadata = frame_metadata(frame, version)
    metadata.update(
        {
            "source": telemetry_source.describe(),
            "machines": int(frame[schema.MACHINE].nunique()),
            "rows_read": result.rows_read,
            "rows_rejected": result.rows_rejected,
            "landed_rows_used": window.used,
            "landed_rows_skipped": dg.MetadataValue.json(
                {k: v for k, v in window.to_dict().items() if k not in ("used", "landed_rows")}
            ),
        }
    )
    if result.rows_rejected:
        key = f"quarantine/{info.name.replace('/', '_')}-{version}.csv"
        uri = artifacts.write_bytes(key, result.rejects.to_csv(index=False).encode())
        metadata["quarantine"] = dg.MetadataValue.url(uri)
        by_reason = result.rejects["reason"].value_counts().head(20).to_dict()
        metadata["rejected_by_reason"] = dg.MetadataValue.json(by_reason)
        context.log.warning(f"{result.rows_rejected} row(s) rejected; written to {uri}")
    yield dg.Output(frame, output_name=RAW, metadata=metadata, data_version=dg.DataVersion(version))
    yield dg.Output(
        info.to_dict(),
        output_name="dataset_info",
        metadata={"sensors": len(info.sensors), "name": info.name, "horizon": info.horizon},
        data_version=dg.DataVersion(version),
    )
    yield from raw_checks(frame, info, result.rows_rejected, result.rows_read)
