"""One switch, ``PDM_ENV``, picks where the platform keeps its state.

* ``local`` (default): the embedded default, everything under ``$PDM_HOME`` (a DuckDB file,
  the filesystem IO manager, local artifacts and landing directory, MLflow on SQLite).
* ``prod``: S3 through dagster-aws and pyarrow: pickled values with dagster-aws's
  ``S3PickleIOManager``, asset frames and warehouse tables as Parquet
  (:mod:`pdm_resources.s3_warehouse`), artifacts and alerts as objects, the landing zone on an
  S3 prefix; MLflow at ``$MLFLOW_TRACKING_URI``. Bucket names come from the environment;
  credentials only from the AWS SDK's chain (IRSA in the cluster), never from code.
"""

from __future__ import annotations

import os
from typing import Literal

import dagster as dg

from pdm_core import paths
from pdm_resources.alerts import WEBHOOK_ENV_VAR, LocalAlertSink
from pdm_resources.artifacts import LocalArtifactStore, S3ArtifactStore
from pdm_resources.drift_policy import DriftPolicy
from pdm_resources.landing_zone import S3LandingZone, landing_zone_from_env
from pdm_resources.mlflow_tracking import MlflowTracking
from pdm_resources.s3_location import S3Location, s3_location_from_env
from pdm_resources.telemetry_source import TelemetrySource
from pdm_resources.warehouse import LocalWarehouse, Warehouse, WarehouseIOManager

Environment = Literal["local", "prod"]
ENVIRONMENTS: tuple[str, ...] = ("local", "prod")
ENV_VAR = "PDM_ENV"


def current_environment() -> Environment:
    """``$PDM_ENV`` (default ``local``).

    Raises:
        ValueError: For any other value, naming the variable and the allowed values.
    """
    value = os.environ.get(ENV_VAR, "local").strip().lower() or "local"
    if value not in ENVIRONMENTS:
        raise ValueError(f"{ENV_VAR}={value!r} is not one of {', '.join(ENVIRONMENTS)}")
    return value  # type: ignore[return-value]


def local_resources() -> dict[str, object]:
    """Resources of the embedded default: everything under ``$PDM_HOME``."""
    warehouse = str(paths.warehouse_path())
    return {
        "telemetry_source": TelemetrySource.from_env(),
        "warehouse_io_manager": WarehouseIOManager(database=warehouse, schema="pdm"),
        "warehouse": LocalWarehouse(database=warehouse),
        "io_manager": dg.FilesystemIOManager(base_dir=str(paths.storage_dir())),
        "artifacts": LocalArtifactStore(base_dir=str(paths.artifacts_dir())),
        "mlflow_tracking": MlflowTracking.from_env(),
        "landing_zone": landing_zone_from_env(),
        "drift_policy": DriftPolicy.from_env(),
        "alerts": LocalAlertSink.from_env(),
    }


def prod_resources(location: S3Location | None = None) -> dict[str, object]:
    """Resources of the production shape: state in S3, runs anywhere.

    Args:
        location: The bucket and prefix; default from ``PDM_S3_BUCKET``, ``PDM_S3_PREFIX``,
            ``AWS_ENDPOINT_URL_S3`` and ``AWS_REGION``.

    Raises:
        ValueError: When ``PDM_S3_BUCKET`` or ``PDM_LANDING_S3_BUCKET`` is unset.
    """
    from dagster_aws.s3 import S3PickleIOManager, S3Resource

    from pdm_resources.alerts import S3AlertSink
    from pdm_resources.s3_warehouse import S3ParquetIOManager, S3Warehouse

    location = location or s3_location_from_env()
    if not os.environ.get("PDM_LANDING_S3_BUCKET", "").strip():
        raise ValueError(
            "PDM_ENV=prod needs $PDM_LANDING_S3_BUCKET: the bucket producers land telemetry in"
        )
    s3 = S3Resource(
        endpoint_url=location.endpoint_url or None, region_name=location.region_name or None
    )
    return {
        "telemetry_source": TelemetrySource.from_env(),
        "warehouse_io_manager": S3ParquetIOManager(location=location),
        "warehouse": S3Warehouse(location=location),
        "io_manager": S3PickleIOManager(
            s3_resource=s3, s3_bucket=location.bucket, s3_prefix=location.key("io")
        ),
        "artifacts": S3ArtifactStore(location=location),
        "mlflow_tracking": MlflowTracking.from_env(),
        "landing_zone": S3LandingZone.from_env(),
        "drift_policy": DriftPolicy.from_env(),
        "alerts": S3AlertSink(
            location=location, webhook_url=os.environ.get(WEBHOOK_ENV_VAR, "").strip()
        ),
    }


def metrics_warehouse(environment: Environment | None = None) -> Warehouse:
    """The warehouse of ``environment`` (default ``$PDM_ENV``) as a reader beside the runs.

    Locally the DuckDB file opened read-only (it fails at once while a run holds the write
    lock); in production the S3 warehouse, which needs only ``PDM_S3_BUCKET`` (and
    ``PDM_S3_PREFIX``, ``AWS_REGION``), not the landing bucket a run needs.
    """
    from pdm_resources.s3_warehouse import S3Warehouse

    chosen = environment or current_environment()
    if chosen == "prod":
        return S3Warehouse(location=s3_location_from_env())
    return LocalWarehouse(database=str(paths.warehouse_path()), read_only=True)


def build_resources(environment: Environment | None = None) -> dict[str, object]:
    """The resources of ``environment`` (default ``$PDM_ENV``)."""
    chosen = environment or current_environment()
    return prod_resources() if chosen == "prod" else local_resources()
