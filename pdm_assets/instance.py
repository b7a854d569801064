"""Prepares the Dagster instance under ``$PDM_HOME`` (``python -m pdm_assets.instance``)."""

from __future__ import annotations

import os
from pathlib import Path

from pdm_resources import paths

DAGSTER_YAML = """\
# Written by pdm_assets.instance; the embedded default keeps runs in SQLite here.
telemetry:
  enabled: false
"""


def ensure_instance() -> Path:
    """Sets ``DAGSTER_HOME`` to ``$PDM_HOME/dagster`` (unless set) and writes its dagster.yaml.

    Returns:
        The Dagster home directory.
    """
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(paths.dagster_home())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


if __name__ == "__main__":
    print(f"Dagster home: {ensure_instance()}")
