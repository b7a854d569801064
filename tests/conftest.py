"""Shared fixtures: where the real datasets live, and how their absence is treated.

Also the order of the test files: ``make test`` runs two workers with ``--dist loadfile
--no-loadscope-reorder`` (each file on one worker, so its module fixtures are built once, and
the files handed out in collection order), and the files that take minutes go first so that
the two workers finish together instead of one starting the longest file last.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tooling import unavailable

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PDM_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


#: Test files that take minutes on 2 cores, longest first (CI timings, --durations=60).
LONG_FIRST = (
    "tests/test_readme.py",
    "tests/ui/test_dagster_ui.py",
    "tests/test_models_pipeline.py",
    "tests/test_prod_shape_s3.py",
    "tests/test_drift_pipeline.py",
    "tests/model/test_model_behaviour.py",
    "tests/test_service_http.py",
    "tests/test_pipeline.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Moves the long test files to the front (stable: every file keeps its own order)."""
    rank = {name: position for position, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


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
