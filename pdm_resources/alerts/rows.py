"""The shape of one recorded alert, shared by the local table, its spool and the S3 objects."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from pdm_core.alerts import Alert

ALERT_COLUMNS: tuple[str, ...] = (
    "created_at",
    "kind",
    "severity",
    "title",
    "details",
    "dedup_key",
    "delivered",
    "delivery_error",
)


def alert_row(alert: Alert, delivered: bool | None, delivery_error: str | None) -> dict[str, Any]:
    """The row of an alert as JSON-able values (table, spool line and S3 object alike)."""
    return {
        "created_at": alert.created_at.isoformat(),
        "kind": alert.kind,
        "severity": alert.severity,
        "title": alert.title,
        "details": json.dumps(alert.details, default=str),
        "dedup_key": alert.dedup_key,
        "delivered": delivered,
        "delivery_error": delivery_error,
    }


def row_values(row: dict[str, Any]) -> list[Any]:
    """The row's values in :data:`ALERT_COLUMNS` order; timestamps as naive UTC."""
    created = datetime.fromisoformat(row["created_at"])
    if created.tzinfo is not None:
        created = created.astimezone(UTC).replace(tzinfo=None)
    return [created, *(row[column] for column in ALERT_COLUMNS[1:])]


def alerts_frame(frames: list[pd.DataFrame], limit: int) -> pd.DataFrame:
    """Newest first, one row per dedup key (the first frame wins), at most ``limit`` rows."""
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in ALERT_COLUMNS})
    recent = pd.concat(frames, ignore_index=True).drop_duplicates("dedup_key", keep="first")
    recent["created_at"] = pd.to_datetime(recent["created_at"])
    ordered = recent.sort_values("created_at", ascending=False, kind="stable")
    return ordered.head(max(int(limit), 0)).reset_index(drop=True)


def rows_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows (as :func:`alert_row` makes them) as a frame with the table's columns."""
    return pd.DataFrame([row_values(row) for row in rows], columns=list(ALERT_COLUMNS))
