"""The spool: alert rows that waited while another process held the DuckDB warehouse.

One JSON line per row in ``alerts-spool.jsonl`` beside the warehouse. Appends and the move
into the table run under a ``filelock`` lock file, so two processes never interleave lines or
flush the same rows twice.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from pdm_resources.alerts.rows import ALERT_COLUMNS

logger = logging.getLogger(__name__)

SPOOL_FILE_NAME = "alerts-spool.jsonl"


class AlertSpool:
    """Rows waiting for the warehouse, in a JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = FileLock(f"{path}.lock")

    def rows(self) -> list[dict[str, Any]]:
        """The spooled rows (unreadable or incomplete lines are logged and left out)."""
        with self.lock:
            return self._read()

    def keys(self) -> set[str]:
        """Dedup keys of the spooled rows."""
        return {row["dedup_key"] for row in self.rows()}

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Appends rows and syncs them to disk before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock, self.path.open("a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
            handle.flush()
            os.fsync(handle.fileno())

    def drain(self, insert: Callable[[list[dict[str, Any]]], set[str]]) -> int:
        """Hands the rows to ``insert`` (which stores them) and empties the spool.

        Returns:
            How many rows ``insert`` stored.
        """
        with self.lock:
            rows = self._read()
            if not rows:
                return 0
            stored = insert(rows)
            self.path.write_text("", encoding="utf-8")
        logger.info("moved %d spooled alert(s) into the warehouse", len(stored))
        return len(stored)

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        rows = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("skipping unreadable line %d of %s", number, self.path)
                continue
            if isinstance(row, dict) and set(ALERT_COLUMNS) <= row.keys():
                rows.append(row)
            else:
                logger.warning("skipping malformed line %d of %s", number, self.path)
        return rows
