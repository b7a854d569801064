"""Alerts on one machine: rows of ``pdm.alerts`` in the DuckDB warehouse, a spool beside it.

Every alert becomes one row (the dedup key is the primary key, so the same event never alerts
twice). While a Dagster run holds the warehouse, opening it is retried for
``lock_wait_seconds``; then the rows go to the spool (:mod:`pdm_resources.alerts.spool`) and
the next call that opens the warehouse moves them in. Webhook delivery does not wait for the
warehouse.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pdm_core import paths
from pdm_core.alerts import Alert
from pdm_resources.alerts import table
from pdm_resources.alerts.base import AlertOutcome, AlertSink, Delivered, outcomes
from pdm_resources.alerts.rows import alert_row, alerts_frame, rows_frame
from pdm_resources.alerts.spool import SPOOL_FILE_NAME, AlertSpool

WEBHOOK_ENV_VAR = "PDM_ALERT_WEBHOOK_URL"


class LocalAlertSink(AlertSink):
    """Records alerts in ``pdm.alerts`` of the local warehouse and POSTs new ones.

    In Dagster definitions, read the webhook at launch time with
    ``webhook_url=dg.EnvVar("PDM_ALERT_WEBHOOK_URL")`` (which fails when unset), or use
    :meth:`from_env`, where an unset variable means "no webhook".

    Attributes:
        database: Path of the warehouse DuckDB file.
        lock_wait_seconds: How long one call keeps trying, in all, while another process
            holds the warehouse, before spooling (keep it well under the 60 s a Dagster sensor
            tick may take).
    """

    database: str
    lock_wait_seconds: float = 30.0

    @classmethod
    def from_env(cls) -> LocalAlertSink:
        """The sink on :func:`pdm_core.paths.warehouse_path` with ``$PDM_ALERT_WEBHOOK_URL``."""
        return cls(
            database=str(paths.warehouse_path()),
            webhook_url=os.environ.get(WEBHOOK_ENV_VAR, "").strip(),
        )

    @property
    def spool_path(self) -> Path:
        """The spool file: ``alerts-spool.jsonl`` in the warehouse's directory."""
        return self._database.resolve().parent / SPOOL_FILE_NAME

    @property
    def _database(self) -> Path:
        return Path(self.database).expanduser()

    def raise_alerts(self, alerts: Sequence[Alert]) -> list[AlertOutcome]:
        """Records and delivers the alerts that were not raised before.

        First moves spooled rows into the table (when the warehouse can be opened). While the
        warehouse is locked only the spool can be checked for duplicates, so an alert recorded
        earlier may be POSTed again (its spooled row is then dropped when flushed).

        Raises:
            duckdb.Error: When the warehouse fails for a reason other than a lock.
        """
        alerts = list(alerts)
        spool = AlertSpool(self.spool_path)
        deadline = time.monotonic() + max(self.lock_wait_seconds, 0.0)
        with table.open_table(self._database, deadline) as connection:
            opened = connection is not None
            if connection is not None:
                spool.drain(lambda rows: table.insert_rows(connection, rows))
                if not alerts:
                    return []
                known = table.recorded_keys(connection, [a.dedup_key for a in alerts])
                if not self.webhook_url:  # nothing to wait for: write while the file is open
                    return self._write(connection, alerts, known, {})
            else:
                known = spool.keys()
        errors = self.deliver(a for a in alerts if a.dedup_key not in known)
        if opened:
            with table.open_table(self._database, deadline) as connection:
                if connection is not None:
                    return self._write(connection, alerts, known, errors)
        rows = self._rows(alerts, known, errors)
        if rows:
            spool.append(list(rows.values()))
        return outcomes(alerts, _delivery(rows), "spooled")

    def recent_alerts(self, limit: int = 50) -> pd.DataFrame:
        """The latest alerts, newest first, including rows still waiting in the spool."""
        frames = []
        if self._database.exists():
            deadline = time.monotonic() + self.lock_wait_seconds
            with table.open_table(self._database, deadline) as connection:
                if connection is not None:
                    frames.append(table.newest_rows(connection, limit))
        frames.append(rows_frame(AlertSpool(self.spool_path).rows()))
        return alerts_frame(frames, limit)

    def _rows(
        self, alerts: Sequence[Alert], known: set[str], errors: dict[str, str | None]
    ) -> dict[str, dict]:
        rows: dict[str, dict] = {}
        for alert in alerts:
            if alert.dedup_key not in known and alert.dedup_key not in rows:
                rows[alert.dedup_key] = alert_row(
                    alert, *self.delivery_columns(errors.get(alert.dedup_key))
                )
        return rows

    def _write(self, connection, alerts, known, errors) -> list[AlertOutcome]:  # type: ignore[no-untyped-def]
        rows = self._rows(alerts, known, errors)
        inserted = table.insert_rows(connection, list(rows.values()))
        return outcomes(alerts, _delivery({k: rows[k] for k in inserted}), "recorded")


def _delivery(rows: dict[str, dict]) -> dict[str, Delivered]:
    return {key: (row["delivered"], row["delivery_error"]) for key, row in rows.items()}
