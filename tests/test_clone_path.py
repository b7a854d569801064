"""The Bento builds from a clone whose path has a folder starting with a dot (``~/.cache/...``).

BentoML refuses files under such a folder when they are named by path in a bentofile; the
full ``make demo`` in such a clone runs in ``tests/test_readme.py``, this is the quick check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BUILD = """
import json, sys, tempfile
from pathlib import Path
from pdm_assets.packaging import build_bento, import_bundle
stub = Path(tempfile.mkdtemp()) / "bundle"
stub.mkdir()
(stub / "bundle.json").write_text("{}")
model = import_bundle(stub, "pdm-fleet-model:clonepath", {"model_version": "1"})
bento = build_bento(str(model.tag), {"model_version": "1"})
requirements = Path(bento.path, "env", "python", "requirements.txt").read_text()
print(json.dumps({"tag": str(bento.tag), "requirements": requirements}))
"""


def test_bento_builds_in_a_clone_under_a_dot_folder(tmp_path: Path) -> None:
    clone = tmp_path / ".cache" / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(clone),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    result = subprocess.run(
        [sys.executable, "-c", BUILD], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]

    built = json.loads(result.stdout.strip().splitlines()[-1])
    assert built["tag"].startswith("pdm-risk-service:")
    pins = [line for line in (REPO / "bento_service" / "requirements.txt").read_text().splitlines()
            if line and not line.startswith("#")]  # fmt: skip
    for pin in pins:
        assert pin in built["requirements"]
