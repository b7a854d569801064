"""Shared fixtures: where the real datasets live, and how their absence is treated."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tooling import unavailable

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PDM_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def require_dataset(path: Path) -> Path:
    """Returns ``path`` if it exists; fails under CI (``CI=true``), skips elsewhere."""
    if path.exists():
        return path
    unavailable(f"dataset not found at {path} (see ../shared/data/README.md)")


@pytest.fixture(scope="session")
def cmapss_dir() -> Path:
    """Directory holding the real NASA C-MAPSS FD001 files."""
    directory = require_dataset(SHARED_DATA / "cmapss")
    require_dataset(directory / "train_FD001.txt")
    return directory
