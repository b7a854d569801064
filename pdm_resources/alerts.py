"""Alert sink: records alerts in the warehouse and, when configured, POSTs them to a webhook.

Every alert becomes one row of ``pdm.alerts`` in the DuckDB warehouse (the dedup key is the
primary key, so the same event never alerts twice). With ``webhook_url`` set, each new alert is
also POSTed as JSON (:meth:`pdm_core.alerts.Alert.to_json`); the outcome of the delivery is
written to the row (``delivered``, ``delivery_error``). A failing webhook never raises.

DuckDB allows one writing process per file. While a Dagster run holds the warehouse, connecting
fails with a lock error; the sink retries for ``lock_wait_seconds`` and then appends the rows to
``alerts-spool.jsonl`` beside the warehouse, to be moved into the table by the next call that
gets the file. Webhook delivery does not wait for the warehouse.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import dagster as dg
import duckdb
import pandas as pd

from pdm_core import paths
from pdm_core.alerts import Alert

try:  # POSIX advisory locks keep concurrent appends and flushes of the spool apart.
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms this project runs on
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

WEBHOOK_ENV_VAR = "PDM_ALERT_WEBHOOK_URL"
SPOOL_FILE_NAME = "alerts-spool.jsonl"
ALERT_COLUMNS = (
    "created_at",
    "kind",
    "severity",
    "title",
    "details",
    "dedup_key",
    "delivered",
    "delivery_error",
)
_CREATE_TABLE = """
create schema if not exists pdm;
create table if not exists pdm.alerts (
    created_at timestamp not null,
    kind text not null,
    severity text not null,
    title text not null,
    details text not null,
    dedup_key text primary key,
    delivered boolean,
    delivery_error text
);
"""
_INSERT = (
    f"insert into pdm.alerts ({', '.join(ALERT_COLUMNS)}) "
    "values (?, ?, ?, ?, ?, ?, ?, ?) on conflict (dedup_key) do nothing returning dedup_key"
)

OutcomeStatus = Literal["recorded", "spooled", "duplicate"]


@dataclass(frozen=True)
class AlertOutcome:
    """What :meth:`AlertSink.raise_alerts` did with one alert.

    Attributes:
        dedup_key: The alert's dedup key.
        status: ``recorded`` (a new row in ``pdm.alerts``), ``spooled`` (the warehouse was
            locked; the row waits in the spool file) or ``duplicate`` (already recorded or
            spooled: nothing written, nothing sent).
        delivered: Whether the webhook accepted the alert; ``None`` when no webhook is set or
            the alert was a duplicate.
        delivery_error: Why delivery failed (last attempt), else ``None``.
    """

    dedup_key: str
    status: OutcomeStatus
    delivered: bool | None = None
    delivery_error: str | None = None


def _row(alert: Alert, delivered: bool | None, delivery_error: str | None) -> dict[str, Any]:
    """The table row of an alert, as JSON-able values (spool lines use the same shape)."""
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


def _row_values(row: dict[str, Any]) -> list[Any]:
    """Parameters for :data:`_INSERT`; timestamps stored as naive UTC."""
    created = datetime.fromisoformat(row["created_at"])
    if created.tzinfo is not None:
        created = created.astimezone(UTC).replace(tzinfo=None)
    return [created, *(row[column] for column in ALERT_COLUMNS[1:])]


def _is_lock_error(error: BaseException) -> bool:
    return "lock" in str(error).lower()


class AlertSink(dg.ConfigurableResource):
    """Records alerts in ``pdm.alerts`` of the DuckDB warehouse and POSTs them to a webhook.

    In Dagster definitions, read the webhook from the environment at launch time::

        AlertSink(
            database=str(paths.warehouse_path()),
            webhook_url=dg.EnvVar("PDM_ALERT_WEBHOOK_URL"),
        )

    (``dg.EnvVar`` fails when the variable is unset; use :meth:`from_env` where an unset
    variable should mean "no webhook".)

    Attributes:
        database: Path of the warehouse DuckDB file.
        webhook_url: ``http(s)://`` URL that receives each new alert as a JSON POST; empty means
            no webhook.
        timeout_seconds: Timeout of one POST.
        retries: Further attempts after a connection error, a timeout or a 5xx answer (4xx
            answers are not retried).
        retry_backoff_seconds: Wait before the first retry; doubled before each further one.
        lock_wait_seconds: How long one call keeps retrying, in all, while another process
            holds the warehouse, before spooling (keep it well under the 60 s a Dagster sensor
            tick may take).
    """

    database: str
    webhook_url: str = ""
    timeout_seconds: float = 5.0
    retries: int = 2
    retry_backoff_seconds: float = 0.5
    lock_wait_seconds: float = 30.0

    @classmethod
    def from_env(cls) -> AlertSink:
        """The sink of the embedded default.

        Returns:
            A sink on :func:`pdm_core.paths.warehouse_path` with the webhook from
            ``$PDM_ALERT_WEBHOOK_URL`` (unset or empty: no webhook).
        """
        return cls(
            database=str(paths.warehouse_path()),
            webhook_url=os.environ.get(WEBHOOK_ENV_VAR, "").strip(),
        )

    @property
    def spool_path(self) -> Path:
        """The spool file: ``alerts-spool.jsonl`` in the warehouse's directory."""
        return Path(self.database).expanduser().resolve().parent / SPOOL_FILE_NAME

    # ------------------------------------------------------------------ public API

    def raise_alerts(self, alerts: Sequence[Alert]) -> list[AlertOutcome]:
        """Records and delivers the alerts that were not raised before.

        First moves spooled rows into the table (when the warehouse can be opened). An alert
        whose dedup key is already recorded (or spooled) is skipped. Each new alert is POSTed
        to the webhook (if set) and then written with the delivery outcome; if the warehouse
        stays locked for ``lock_wait_seconds``, the rows go to the spool file instead. Once one
        alert has used up the retries on a transient failure, the rest of the batch is not
        sent (recorded as undelivered), which bounds the time one call can take. While the
        warehouse is locked only the spool can be checked for duplicates, so an alert recorded
        earlier may be POSTed again (its spooled row is then dropped when flushed).

        Args:
            alerts: The alerts; a dedup key repeated within the batch counts once.

        Returns:
            One outcome per alert, in order.

        Raises:
            duckdb.Error: When the warehouse fails for a reason other than a lock.
        """
        alerts = list(alerts)
        deadline = time.monotonic() + max(self.lock_wait_seconds, 0.0)
        with self._connection(deadline) as conn:
            warehouse_open = conn is not None
            if conn is not None:
                self._prepare(conn)
                if not alerts:
                    return []
                known = self._recorded_keys(conn, [alert.dedup_key for alert in alerts])
                if not self.webhook_url:
                    # Nothing to wait for: write the rows while the file is open.
                    return self._record(conn, alerts, known, {})
            else:
                known = self._spooled_keys()

        deliveries: dict[str, str | None] = {}
        unreachable: str | None = None
        for alert in alerts:
            if alert.dedup_key in known or alert.dedup_key in deliveries:
                continue
            if not self.webhook_url:
                deliveries[alert.dedup_key] = None
            elif unreachable is not None:
                # One alert already spent the retries: do not spend them again per alert.
                deliveries[alert.dedup_key] = f"not sent, webhook unreachable: {unreachable}"
            else:
                error, transient = self._deliver(alert)
                deliveries[alert.dedup_key] = error
                if error is not None and transient:
                    unreachable = error

        if warehouse_open:
            # Waits at most what is left of lock_wait_seconds (at least one attempt).
            with self._connection(deadline) as conn:
                if conn is not None:
                    return self._record(conn, alerts, known, deliveries)
        return self._spool(alerts, known, deliveries)

    def recent_alerts(self, limit: int = 50) -> pd.DataFrame:
        """The latest alerts, newest first, including rows still waiting in the spool.

        Args:
            limit: At most this many rows.

        Returns:
            A frame with the columns of ``pdm.alerts`` (``created_at`` naive UTC, ``details``
            JSON text); empty (with the columns) when there are none.
        """
        frames: list[pd.DataFrame] = []
        if Path(self.database).expanduser().exists():
            with self._connection(time.monotonic() + self.lock_wait_seconds) as conn:
                if conn is not None:
                    exists = conn.execute(
                        "select count(*) from information_schema.tables "
                        "where table_schema = 'pdm' and table_name = 'alerts'"
                    ).fetchone()
                    if exists and exists[0]:
                        frames.append(
                            conn.execute(
                                f"select {', '.join(ALERT_COLUMNS)} from pdm.alerts "
                                "order by created_at desc limit ?",
                                [int(limit)],
                            ).fetchdf()
                        )
        spooled = self._read_spool()
        if spooled:
            rows = [_row_values(row) for row in spooled]
            frames.append(pd.DataFrame(rows, columns=list(ALERT_COLUMNS)))
        frames = [frame for frame in frames if not frame.empty]
        if not frames:
            return pd.DataFrame({column: pd.Series(dtype=object) for column in ALERT_COLUMNS})
        recent = pd.concat(frames, ignore_index=True).drop_duplicates("dedup_key", keep="first")
        recent["created_at"] = pd.to_datetime(recent["created_at"])
        return (
            recent.sort_values("created_at", ascending=False, kind="stable")
            .head(limit)
            .reset_index(drop=True)
        )

    # ------------------------------------------------------------------ warehouse

    @contextlib.contextmanager
    def _connection(self, deadline: float) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """Opens the warehouse, retrying while another process holds it.

        Args:
            deadline: ``time.monotonic()`` value after which a locked file is given up on.

        Yields:
            A connection (closed on exit), or ``None`` when the file stayed locked for
            ``lock_wait_seconds``.
        """
        path = Path(self.database).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        conn: duckdb.DuckDBPyConnection | None = None
        delay = 0.05
        while True:
            try:
                conn = duckdb.connect(str(path))
                break
            except duckdb.IOException as error:
                if not _is_lock_error(error):
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    logger.warning("warehouse %s stayed locked: %s", path, error)
                    break
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 2.0)
        try:
            yield conn
        finally:
            if conn is not None:
                conn.close()

    def _prepare(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Creates the table if needed and moves spooled rows into it."""
        conn.execute(_CREATE_TABLE)
        self._flush_spool(conn)

    @staticmethod
    def _recorded_keys(conn: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> set[str]:
        rows = conn.execute(
            "select dedup_key from pdm.alerts where list_contains(?, dedup_key)", [list(keys)]
        ).fetchall()
        return {row[0] for row in rows}

    @staticmethod
    def _insert_rows(conn: duckdb.DuckDBPyConnection, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Inserts rows whose dedup key is new; returns the keys actually inserted."""
        inserted: set[str] = set()
        conn.execute("begin transaction")
        try:
            for row in rows:
                if conn.execute(_INSERT, _row_values(row)).fetchall():
                    inserted.add(row["dedup_key"])
            conn.execute("commit")
        except BaseException:
            conn.execute("rollback")
            raise
        return inserted

    def _new_rows(
        self,
        alerts: Sequence[Alert],
        known: set[str],
        deliveries: dict[str, str | None],
    ) -> dict[str, dict[str, Any]]:
        """Table rows of the alerts not yet known, once per key, with their delivery result."""
        rows: dict[str, dict[str, Any]] = {}
        for alert in alerts:
            if alert.dedup_key in known or alert.dedup_key in rows:
                continue
            delivered, error = self._delivery_columns(alert.dedup_key, deliveries)
            rows[alert.dedup_key] = _row(alert, delivered, error)
        return rows

    def _record(
        self,
        conn: duckdb.DuckDBPyConnection,
        alerts: Sequence[Alert],
        known: set[str],
        deliveries: dict[str, str | None],
    ) -> list[AlertOutcome]:
        rows = self._new_rows(alerts, known, deliveries)
        inserted = self._insert_rows(conn, list(rows.values()))
        return self._outcomes(alerts, inserted, "recorded", rows)

    # ------------------------------------------------------------------ spool

    @contextlib.contextmanager
    def _locked_spool(self, mode: str) -> Iterator[IO[str] | None]:
        """Opens the spool file under an exclusive advisory lock (``None`` if it is absent)."""
        path = self.spool_path
        if "r" in mode and not path.exists():
            yield None
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open(mode, encoding="utf-8") as handle:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                if fcntl is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _parse_spool(text: str) -> list[dict[str, Any]]:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("skipping unreadable line %d of the alert spool", number)
                continue
            if isinstance(row, dict) and set(ALERT_COLUMNS) <= row.keys():
                rows.append(row)
            else:
                logger.warning("skipping malformed line %d of the alert spool", number)
        return rows

    def _read_spool(self) -> list[dict[str, Any]]:
        with self._locked_spool("r") as handle:
            return [] if handle is None else self._parse_spool(handle.read())

    def _spooled_keys(self) -> set[str]:
        return {row["dedup_key"] for row in self._read_spool()}

    def _flush_spool(self, conn: duckdb.DuckDBPyConnection) -> int:
        """Moves spooled rows into the table, then empties the spool; returns rows inserted."""
        with self._locked_spool("r+") as handle:
            if handle is None:
                return 0
            rows = self._parse_spool(handle.read())
            inserted = self._insert_rows(conn, rows) if rows else set()
            handle.seek(0)
            handle.truncate()
        if rows:
            logger.info("moved %d spooled alert(s) into pdm.alerts", len(inserted))
        return len(inserted)

    def _spool(
        self,
        alerts: Sequence[Alert],
        known: set[str],
        deliveries: dict[str, str | None],
    ) -> list[AlertOutcome]:
        rows = self._new_rows(alerts, known, deliveries)
        if rows:
            with self._locked_spool("a") as handle:
                assert handle is not None
                for row in rows.values():
                    handle.write(json.dumps(row) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            logger.warning(
                "warehouse %s locked: %d alert(s) spooled to %s",
                self.database,
                len(rows),
                self.spool_path,
            )
        return self._outcomes(alerts, set(rows), "spooled", rows)

    # ------------------------------------------------------------------ outcomes

    def _delivery_columns(
        self, dedup_key: str, deliveries: dict[str, str | None]
    ) -> tuple[bool | None, str | None]:
        """``delivered`` and ``delivery_error`` of a new row."""
        if not self.webhook_url:
            return None, None
        error = deliveries.get(dedup_key)
        return error is None, error

    @staticmethod
    def _outcomes(
        alerts: Sequence[Alert],
        written: set[str],
        status: OutcomeStatus,
        rows: dict[str, dict[str, Any]],
    ) -> list[AlertOutcome]:
        outcomes = []
        reported: set[str] = set()
        for alert in alerts:
            key = alert.dedup_key
            if key in written and key not in reported:
                reported.add(key)
                row = rows[key]
                outcomes.append(AlertOutcome(key, status, row["delivered"], row["delivery_error"]))
            else:
                outcomes.append(AlertOutcome(key, "duplicate"))
        return outcomes

    # ------------------------------------------------------------------ webhook

    def _deliver(self, alert: Alert) -> tuple[str | None, bool]:
        """POSTs the alert to the webhook, retrying connection errors, timeouts and 5xx.

        Returns:
            ``(None, False)`` when a 2xx answer came back, else the last error as text and
            whether it was transient (retried until the retries ran out). Never raises.
        """
        try:
            scheme = urllib.parse.urlsplit(self.webhook_url).scheme.lower()
            if scheme not in ("http", "https"):
                return f"unsupported webhook URL scheme {scheme!r} (expected http or https)", False
            body = json.dumps(alert.to_json(), default=str).encode("utf-8")
        except Exception as error:
            return f"{type(error).__name__}: {error}", False
        error_text = "not attempted"
        retry = False
        attempts = max(self.retries, 0) + 1
        for attempt in range(attempts):
            retry = True
            try:
                request = urllib.request.Request(
                    self.webhook_url,
                    data=body,
                    method="POST",
                    headers={
                        "Content-Type": "application/json",
                        "User-Agent": "pdm-platform-alerts",
                    },
                )
                with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                    response.read()
                return None, False
            except urllib.error.HTTPError as error:
                error_text = f"HTTP {error.code} {error.reason}"
                retry = error.code >= 500
                error.close()
            except urllib.error.URLError as error:
                error_text = f"URLError: {error.reason}"
            except (TimeoutError, OSError) as error:
                error_text = f"{type(error).__name__}: {error}"
            except Exception as error:  # a malformed URL, an unexpected answer: do not retry
                error_text = f"{type(error).__name__}: {error}"
                retry = False
            if not retry or attempt == attempts - 1:
                break
            time.sleep(self.retry_backoff_seconds * 2**attempt)
        logger.warning("webhook delivery of alert %s failed: %s", alert.dedup_key, error_text)
        return error_text, retry
