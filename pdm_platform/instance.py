"""Prepares the Dagster instance under ``$PDM_HOME`` (``python -m pdm_platform.instance``)."""

from __future__ import annotations

import os
from pathlib import Path

from pdm_core import paths

MARKER = "# Written by pdm_platform.instance"
DAGSTER_YAML = f"""\
{MARKER}; the embedded default keeps runs in SQLite here.
telemetry:
  enabled: false
# One run at a time: runs share the embedded DuckDB warehouse, which has a single writer.
concurrency:
  runs:
    max_concurrent_runs: 1
# A queued run starts within a second (the default checks every 5 s): a landed batch's scores
# wait for its ingestion run.
run_queue:
  dequeue_interval_seconds: 1
"""


def ensure_instance() -> Path:
    """Sets ``DAGSTER_HOME`` to ``$PDM_HOME/dagster`` (unless set) and writes its dagster.yaml.

    Returns:
        The Dagster home directory.
    """
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(paths.dagster_home())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or (
        config.read_text().startswith(MARKER) and config.read_text() != DAGSTER_YAML
    ):
        config.write_text(DAGSTER_YAML)
    return home


if __name__ == "__main__":
    print(f"Dagster home: {ensure_instance()}")
