"""Alerts in production: one JSON object per dedup key in S3, plus the same webhook.

Run pods share no DuckDB file, so :class:`S3AlertSink` keeps the alert log as objects
``<location>/alerts/<kind>/<sha256(dedup key)>.json`` holding the same row the local sink
writes. The kind is in the key so that the metrics exporter counts alerts by kind from a
listing alone (one request per 1,000 alerts), without reading any object. The
object is written with ``If-None-Match: *``: when two pods raise the same alert at once, S3
keeps the first and the second sees a duplicate. A pod may then have POSTed the alert too, so
a webhook can see the same event twice in that race (at least once, never lost); its body
carries the dedup key for the receiver to drop repeats.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd

from pdm_core.alerts import Alert
from pdm_resources.alerts.base import AlertOutcome, AlertSink
from pdm_resources.alerts.rows import alert_row, alerts_frame, rows_frame
from pdm_resources.s3_location import S3Location

MISSING = ("404", "NoSuchKey", "NotFound")
TAKEN = ("PreconditionFailed", "412")
FOLDER = "alerts"


class S3AlertSink(AlertSink):
    """Records alerts as S3 objects and POSTs new ones to the webhook.

    Attributes:
        location: The bucket and prefix; alerts go under ``<location>/alerts/``.
    """

    location: S3Location

    def _key(self, alert: Alert) -> str:
        digest = hashlib.sha256(alert.dedup_key.encode()).hexdigest()[:32]
        return self.location.key(FOLDER, alert.kind, f"{digest}.json")

    def _exists(self, client: Any, alert: Alert) -> bool:
        from botocore.exceptions import ClientError

        try:
            client.head_object(Bucket=self.location.bucket, Key=self._key(alert))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in MISSING:
                return False
            raise
        return True

    def _put_new(self, client: Any, alert: Alert, row: dict[str, Any]) -> bool:
        """Writes the row unless its object exists; False when another writer was first."""
        from botocore.exceptions import ClientError

        try:
            client.put_object(
                Bucket=self.location.bucket,
                Key=self._key(alert),
                Body=json.dumps(row).encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in TAKEN:
                return False
            raise
        return True

    def raise_alerts(self, alerts: Sequence[Alert]) -> list[AlertOutcome]:
        """Records and delivers the alerts whose dedup key has no object yet.

        Returns:
            One outcome per alert, in order (``recorded`` or ``duplicate``).
        """
        alerts = list(alerts)
        client = self.location.client()
        new: dict[str, Alert] = {}
        for alert in alerts:
            if alert.dedup_key not in new and not self._exists(client, alert):
                new[alert.dedup_key] = alert
        errors = self.deliver(new.values())
        written: dict[str, AlertOutcome] = {}
        for key, alert in new.items():
            delivered, error = self.delivery_columns(errors[key])
            if self._put_new(client, alert, alert_row(alert, delivered, error)):
                written[key] = AlertOutcome(key, "recorded", delivered, error)
        result = []
        for alert in alerts:
            outcome = written.pop(alert.dedup_key, None)
            result.append(outcome or AlertOutcome(alert.dedup_key, "duplicate"))
        return result

    def _listing(self, client: Any) -> list[dict[str, Any]]:
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=self.location.key(FOLDER) + "/"
        )
        return [item for page in pages for item in page.get("Contents", [])]

    def recorded_by_kind(self) -> dict[str, int]:
        """How many alerts are recorded, by kind, from the object names alone."""
        kinds = Counter(
            item["Key"].rsplit("/", 2)[-2]
            for item in self._listing(self.location.client())
            if item["Key"].endswith(".json")
        )
        return dict(sorted(kinds.items()))

    def recent_alerts(self, limit: int = 50) -> pd.DataFrame:
        """The latest alerts, newest first (by object time), as the local sink's frame."""
        client = self.location.client()
        items = self._listing(client)
        items.sort(key=lambda item: item["LastModified"], reverse=True)
        rows = [
            json.loads(
                client.get_object(Bucket=self.location.bucket, Key=item["Key"])["Body"].read()
            )
            for item in items[: max(int(limit), 0)]
        ]
        return alerts_frame([rows_frame(rows)], limit)
