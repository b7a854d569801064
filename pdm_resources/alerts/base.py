"""The alert sink's interface, and the delivery rule every sink shares."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import dagster as dg
import pandas as pd

from pdm_core.alerts import Alert
from pdm_resources.alerts.webhook import Webhook

OutcomeStatus = Literal["recorded", "spooled", "duplicate"]
Delivered = tuple[bool | None, str | None]
"""``delivered`` and ``delivery_error`` of a record."""


@dataclass(frozen=True)
class AlertOutcome:
    """What :meth:`AlertSink.raise_alerts` did with one alert.

    Attributes:
        dedup_key: The alert's dedup key.
        status: ``recorded`` (a new record), ``spooled`` (the local warehouse was locked; the
            row waits in the spool file) or ``duplicate`` (already recorded or spooled:
            nothing written, nothing sent).
        delivered: Whether the webhook accepted the alert; ``None`` when no webhook is set or
            the alert was a duplicate.
        delivery_error: Why delivery failed (last attempt), else ``None``.
    """

    dedup_key: str
    status: OutcomeStatus
    delivered: bool | None = None
    delivery_error: str | None = None


class AlertSink(dg.ConfigurableResource):
    """Records alerts once per dedup key and POSTs each new one to a webhook.

    Assets and sensors depend on this interface; the environment picks the implementation
    (:class:`~pdm_resources.alerts.local.LocalAlertSink` or
    :class:`~pdm_resources.alerts.s3.S3AlertSink`).

    Attributes:
        webhook_url: ``http(s)://`` URL that receives each new alert as a JSON POST; empty
            means no webhook.
        timeout_seconds: Timeout of one POST.
        retries: Further attempts after a connection error, a timeout or a 5xx answer (4xx
            answers are not retried).
        retry_backoff_seconds: Backoff factor of the retries (exponential).
    """

    webhook_url: str = ""
    timeout_seconds: float = 5.0
    retries: int = 2
    retry_backoff_seconds: float = 0.5

    def raise_alerts(self, alerts: Sequence[Alert]) -> list[AlertOutcome]:
        """Records and delivers the alerts not raised before; one outcome per alert."""
        raise NotImplementedError

    def recent_alerts(self, limit: int = 50) -> pd.DataFrame:
        """The latest alerts, newest first, with the columns of ``ALERT_COLUMNS``."""
        raise NotImplementedError

    def deliver(self, alerts: Iterable[Alert]) -> dict[str, str | None]:
        """POSTs each alert once (by dedup key); dedup key -> delivery error (None: delivered).

        Once one alert has used up the retries on a transient failure, the rest are not
        sent (recorded as undelivered), which bounds the time one call can take. Without a
        webhook every alert maps to None and nothing is sent.
        """
        errors: dict[str, str | None] = {}
        webhook = (
            Webhook(
                self.webhook_url, self.timeout_seconds, self.retries, self.retry_backoff_seconds
            )
            if self.webhook_url
            else None
        )
        unreachable: str | None = None
        for alert in alerts:
            if alert.dedup_key in errors:
                continue
            if webhook is None:
                errors[alert.dedup_key] = None
            elif unreachable is not None:
                errors[alert.dedup_key] = f"not sent, webhook unreachable: {unreachable}"
            else:
                delivery = webhook.post(alert)
                errors[alert.dedup_key] = delivery.error
                if delivery.error is not None and delivery.transient:
                    unreachable = delivery.error
        return errors

    def delivery_columns(self, error: str | None) -> Delivered:
        """``delivered`` and ``delivery_error`` of a new record."""
        if not self.webhook_url:
            return None, None
        return error is None, error


def outcomes(
    alerts: Sequence[Alert],
    written: dict[str, tuple[bool | None, str | None]],
    status: OutcomeStatus,
) -> list[AlertOutcome]:
    """One outcome per alert: ``status`` for the first alert of each written key, else duplicate.

    Args:
        alerts: The alerts as given.
        written: Dedup key -> (delivered, delivery_error) of the records just written.
        status: What writing meant (``recorded`` or ``spooled``).
    """
    reported: set[str] = set()
    result = []
    for alert in alerts:
        key = alert.dedup_key
        if key in written and key not in reported:
            reported.add(key)
            result.append(AlertOutcome(key, status, *written[key]))
        else:
            result.append(AlertOutcome(key, "duplicate"))
    return result
