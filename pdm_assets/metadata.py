"""Small helpers that turn frames into Dagster metadata."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pandas as pd


def markdown_table(frame: pd.DataFrame, max_rows: int = 10, digits: int = 4) -> str:
    """The first rows of a frame as a markdown table (pandas through tabulate)."""
    return frame.head(max_rows).to_markdown(index=False, floatfmt=f".{digits}g")


def frame_metadata(frame: pd.DataFrame, data_version: str, preview_columns: int = 12) -> dict:
    """Standard metadata for a table asset: row count, schema, preview, data version."""
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name=str(c), type=str(t)) for c, t in frame.dtypes.items()]
    )
    return {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": schema,
        "columns": dg.MetadataValue.int(frame.shape[1]),
        "preview": dg.MetadataValue.md(markdown_table(frame.iloc[:, :preview_columns])),
        "data_version": dg.MetadataValue.text(data_version),
    }


def metadata_value(metadata: dict[str, Any], key: str, default: Any = None) -> Any:
    """The plain value of a metadata entry (``MetadataValue.value``), ``default`` if absent."""
    item = metadata.get(key)
    return default if item is None else getattr(item, "value", item)


def check_result(
    check_name: str,
    passed: bool,
    observed: Any,
    threshold: Any,
    *,
    asset_key: str | None = None,
    description: str = "",
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    **extra: Any,
) -> dg.AssetCheckResult:
    """An asset check result carrying the observed value and the threshold in metadata."""
    metadata = {"observed": observed, "threshold": threshold, **extra}
    if description:
        metadata["description"] = description
    return dg.AssetCheckResult(
        check_name=check_name,
        asset_key=asset_key,
        passed=bool(passed),
        severity=severity,
        metadata={k: _plain(v) for k, v in metadata.items()},
    )


def _plain(value: Any) -> Any:
    """Makes a value acceptable as Dagster metadata."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, dg.MetadataValue):
        return value
    return dg.MetadataValue.json(value) if isinstance(value, (dict, list)) else str(value)
