"""The direction of imports between the packages (README, "Layout"), checked by import-linter.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``). The second test plants an
upward import in a copy of the tree and expects the same command to refuse it, so the first
test cannot pass because the contracts check nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pdm_core", "pdm_resources", "pdm_assets", "sensors_schedules", "pdm_platform",
            "bento_service")  # fmt: skip
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_every_import_contract_is_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def copy_tree(target: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, target / package,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip


def test_an_upward_import_breaks_a_contract(tmp_path: Path) -> None:
    copy_tree(tmp_path)
    planted = tmp_path / "pdm_core" / "planted.py"
    planted.write_text("from pdm_assets import jobs  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "pdm_core.planted -> pdm_assets.jobs" in result.stdout


def test_the_service_may_not_import_dagster(tmp_path: Path) -> None:
    copy_tree(tmp_path)
    (tmp_path / "bento_service" / "planted.py").write_text("import dagster  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "bento_service.planted -> dagster" in result.stdout
