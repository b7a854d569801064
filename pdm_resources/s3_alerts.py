"""Alerts in production: one JSON object per dedup key in S3, plus the same webhook.

Run pods share no DuckDB file, so :class:`S3AlertSink` keeps the alert log as objects
``<location>/alerts/<sha256(dedup key)>.json`` (the row :class:`~pdm_resources.alerts.AlertSink`
would write). The object is written with ``If-None-Match: *``: when two pods raise the same
alert at once, S3 keeps the first and the second sees a duplicate. A pod may then have POSTed
the alert too, so a webhook can see the same event twice in that race (at least once, never
lost); its body carries the dedup key for the receiver to drop repeats.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from pdm_core.alerts import Alert
from pdm_resources.alerts import ALERT_COLUMNS, AlertOutcome, AlertSink, _row, _row_values
from pdm_resources.s3_location import S3Location


class S3AlertSink(AlertSink):
    """Records alerts as S3 objects and POSTs new ones to the webhook.

    Attributes:
        location: The bucket and prefix; alerts go under ``<location>/alerts/``.
        database: Unused (kept empty); the local sink's DuckDB file.
    """

    location: S3Location
    database: str = ""

    def _key(self, dedup_key: str) -> str:
        digest = hashlib.sha256(dedup_key.encode()).hexdigest()[:32]
        return self.location.key("alerts", f"{digest}.json")

    def _exists(self, client: Any, dedup_key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            client.head_object(Bucket=self.location.bucket, Key=self._key(dedup_key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def _put_new(self, client: Any, row: dict[str, Any]) -> bool:
        """Writes the row unless its object exists; False when another writer was first."""
        from botocore.exceptions import ClientError

        try:
            client.put_object(
                Bucket=self.location.bucket,
                Key=self._key(row["dedup_key"]),
                Body=json.dumps(row).encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                return False
            raise
        return True

    def raise_alerts(self, alerts: Sequence[Alert]) -> list[AlertOutcome]:
        """Records and delivers the alerts whose dedup key has no object yet.

        Args:
            alerts: The alerts; a dedup key repeated within the batch counts once.

        Returns:
            One outcome per alert, in order (``recorded`` or ``duplicate``).
        """
        client = self.location.client()
        outcomes: list[AlertOutcome] = []
        handled: set[str] = set()
        unreachable: str | None = None
        for alert in alerts:
            key = alert.dedup_key
            if key in handled or self._exists(client, key):
                outcomes.append(AlertOutcome(key, "duplicate"))
                continue
            handled.add(key)
            error: str | None = None
            if self.webhook_url:
                if unreachable is not None:
                    error = f"not sent, webhook unreachable: {unreachable}"
                else:
                    error, transient = self._deliver(alert)
                    if error is not None and transient:
                        unreachable = error
            delivered, delivery_error = self._delivery_columns(key, {key: error})
            row = _row(alert, delivered, delivery_error)
            if self._put_new(client, row):
                outcomes.append(AlertOutcome(key, "recorded", delivered, delivery_error))
            else:
                outcomes.append(AlertOutcome(key, "duplicate"))
        return outcomes

    def recent_alerts(self, limit: int = 50) -> pd.DataFrame:
        """The latest alerts, newest first (by object time), as the local sink's frame."""
        client = self.location.client()
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=self.location.key("alerts") + "/"
        )
        items = [item for page in pages for item in page.get("Contents", [])]
        items.sort(key=lambda item: item["LastModified"], reverse=True)
        rows = []
        for item in items[: max(int(limit), 0)]:
            body = client.get_object(Bucket=self.location.bucket, Key=item["Key"])["Body"].read()
            rows.append(_row_values(json.loads(body)))
        if not rows:
            return pd.DataFrame({column: pd.Series(dtype=object) for column in ALERT_COLUMNS})
        recent = pd.DataFrame(rows, columns=list(ALERT_COLUMNS))
        recent["created_at"] = pd.to_datetime(recent["created_at"])
        return recent.sort_values("created_at", ascending=False, kind="stable").reset_index(
            drop=True
        )
