"""Every resource of the definitions, rooted in a test's own directory."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pdm_resources.alerts import LocalAlertSink
from pdm_resources.artifacts import LocalArtifactStore
from pdm_resources.drift_policy import DriftPolicy
from pdm_resources.landing_zone import LocalLandingZone
from pdm_resources.mlflow_tracking import MlflowTracking
from pdm_resources.telemetry_source import TelemetrySource
from pdm_resources.warehouse import LocalWarehouse, WarehouseIOManager


def local_resources(
    root: Path,
    source: TelemetrySource,
    tracking: MlflowTracking | None = None,
    **overrides: object,
) -> dict[str, object]:
    """The definitions' resources with all state under ``root`` (created)."""
    root.mkdir(parents=True, exist_ok=True)  # DuckDB retries for minutes on a missing dir
    warehouse = str(root / "warehouse.duckdb")
    resources: dict[str, object] = {
        "telemetry_source": source,
        "warehouse_io_manager": WarehouseIOManager(database=warehouse, schema="pdm"),
        "warehouse": LocalWarehouse(database=warehouse),
        "io_manager": dg.FilesystemIOManager(base_dir=str(root / "storage")),
        "artifacts": LocalArtifactStore(base_dir=str(root / "artifacts")),
        "mlflow_tracking": tracking
        or MlflowTracking(
            tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
            artifact_location=(root / "mlartifacts").as_uri(),
        ),
        "landing_zone": LocalLandingZone(root=str(root / "landing")),
        "drift_policy": DriftPolicy(),
        "alerts": LocalAlertSink(database=warehouse),
    }
    resources.update(overrides)
    return resources
