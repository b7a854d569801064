"""What tests need from the machine: the offline validators in ``.ci/``, and missing tools."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_ci_script(
    script: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs a ``.ci/`` script in the repository root with extra environment variables.

    Args:
        script: The script's path.
        *args: Its arguments.
        env: Variables laid over the caller's environment.

    Returns:
        The finished process, output captured as text.
    """
    return subprocess.run(
        [str(script), *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
    )


def unavailable(message: str) -> NoReturn:
    """A tool the test needs is missing: fails under CI (``CI=true``), skips elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
