"""The Bento rehearsal (``make rehearse-serve``): the pod's shape from the manifest, and a run.

The shape tests read the rendered ``prod`` overlay. The run tests build a Bento from a small
trained bundle exactly as ``fleet_bento`` does (``import_bundle`` + ``build_bento``, in their
own BentoML home), rehearse it as the rendered pod runs it, and rehearse it once more with the
pod's writable BentoML home removed from the manifest, which must fail at start-up: the
rehearsal catches what the static checks pass. CD's smoke test (``deploy/cd/bento-steps.sh
smoke``) runs against the rehearsed pod. The runs need root (mount namespaces, another uid);
outside CI a machine without it skips them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pdm_platform.rehearse_serve import image_shape, inner_script, pod_shape, render_overlay
from tests.service_fixtures import REPO, build_served_fleet
from tests.tooling import unavailable

RUNTIME = "/home/bentoml/runtime"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return render_overlay(tmp_path_factory.mktemp("rendered"))
    except RuntimeError as error:
        unavailable(f"cannot render the overlays: {error}")
        raise


def test_the_pod_shape_is_the_manifest_s(rendered: Path) -> None:
    pod = pod_shape(rendered)
    deployment = next(
        d for d in yaml.safe_load_all(rendered.read_text()) if d and d["kind"] == "Deployment"
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert pod.args == container["args"]
    assert pod.port == 3000 and pod.uid == pod.gid == pod.fs_group == 1034
    assert pod.read_only_root is True
    assert pod.empty_dirs == {"/tmp": "512Mi", RUNTIME: "256Mi"}
    assert (pod.startup.path, pod.startup.budget_s) == ("/livez", 300.0)
    assert (pod.readiness.path, pod.liveness.path) == ("/readyz", "/livez")
    assert pod.env["BENTOML_HOME"] == RUNTIME


def test_the_script_mounts_only_the_empty_dirs_writable(rendered: Path, tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "ARG BENTO_PATH=/home/bentoml/bento\nENV BENTO_PATH=$BENTO_PATH\n"
        "ENV BENTOML_HOME=/home/bentoml/\nWORKDIR $BENTO_PATH\nENV VIRTUAL_ENV=/app/.venv\n"
    )
    image = image_shape(dockerfile)
    assert image.workdir == image.bento_path == "/home/bentoml/bento"
    pod = pod_shape(rendered)
    script = inner_script(pod, image, tmp_path / "bento", tmp_path / "venv")
    assert "mount -o remount,bind,ro /" in script
    for path, size in (("/tmp", "512m"), (RUNTIME, "256m")):
        assert f"mount -t tmpfs -o mode=2775,size={size} tmpfs {path}" in script
    command = script.strip().splitlines()[-1]
    assert command.startswith("exec setpriv --reuid=1034 --regid=1034 --groups=1034")
    assert "BENTOML_HOME=/home/bentoml/runtime" in command  # the manifest's, over the image's
    assert command.endswith(" ".join(pod.args))
    assert pod.secrets == {}  # prod mounts no Secret; prod-external mounts the tokens


@pytest.fixture(scope="module")
def bento(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if os.geteuid() != 0:
        unavailable("the rehearsal needs root (mount namespaces, the pod's uid)")
    home = tmp_path_factory.mktemp("rehearsal-home")
    build_served_fleet(home / "bundle")
    env = {
        **os.environ,
        "PDM_HOME": str(home),
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    code = (
        "from pathlib import Path\n"
        "from pdm_assets.packaging import build_bento, import_bundle\n"
        f"model = import_bundle(Path({str(home / 'bundle')!r}), 'pdm-fleet-model:v1-test', "
        "{'registered_model': 'pdm-fleet-model', 'model_version': '1'})\n"
        "bento = build_bento(str(model.tag), {'model_version': '1'})\n"
        "print(bento.tag)\n"
    )
    built = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr[-3000:]
    yield {**env, "TAG": built.stdout.strip().splitlines()[-1]}


def rehearse(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pdm_platform.rehearse_serve", "--bento", env["TAG"]]
    return subprocess.run(
        [*command, *extra], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )


SMOKE = "deploy/cd/bento-steps.sh smoke {url} examples/serving/predict_request.json"


def test_the_bento_serves_as_its_pod_and_passes_cd_s_smoke_test(bento: dict[str, str]) -> None:
    run = rehearse(bento, "--then", SMOKE)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-3000:]
    for check in ("startup probe", "readiness probe", "liveness probe",
                  "/predict = development server", "/predict_batch (Arrow) = development server",
                  "/metrics scrapeable", "/model_info names the Bento's model"):  # fmt: skip
        assert f"ok   {check}" in run.stdout, run.stdout
    smoke = SMOKE.replace("{url}", "http://127.0.0.1:3000")
    assert f"ok   then: {smoke}: smoke test passed: model " in run.stdout, run.stdout
    assert "rehearsal passed" in run.stdout


def test_a_manifest_without_the_writable_bentoml_home_fails(
    bento: dict[str, str], rendered: Path, tmp_path: Path
) -> None:
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    for doc in docs:
        if doc["kind"] == "Deployment":
            container = doc["spec"]["template"]["spec"]["containers"][0]
            mounts = container["volumeMounts"]
            container["volumeMounts"] = [m for m in mounts if m["mountPath"] != RUNTIME]
    edited = tmp_path / "prod-without-runtime.yaml"
    edited.write_text(yaml.safe_dump_all(docs))
    run = rehearse(bento, "--manifest", str(edited))
    assert run.returncode == 1, run.stdout[-4000:]
    assert "FAIL startup probe: the pod's process exited" in run.stdout
    assert f"Read-only file system: '{RUNTIME}'" in run.stdout


def test_external_access_checks_tokens_in_the_rehearsed_pod(
    bento: dict[str, str], tmp_path: Path
) -> None:
    """``prod-external``: the tokens Secret mounted read-only, 401 without one, served with one."""
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    (tokens / "plant-a").write_text("rehearsal-token-3f9c")
    os.chmod(tokens / "plant-a", 0o444)
    smoke = "SMOKE_TOKEN=rehearsal-token-3f9c " + SMOKE
    run = rehearse(bento, "--overlay", "prod-external", "--secret",
                   f"pdm-risk-service-tokens={tokens}", "--bearer", "rehearsal-token-3f9c",
                   "--then", smoke)  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-3000:]
    assert "ok   /predict without a token refused: 401" in run.stdout
    assert "ok   /predict = development server" in run.stdout
    assert "smoke test passed" in run.stdout and "rehearsal passed" in run.stdout
    missing = rehearse(bento, "--overlay", "prod-external")
    assert missing.returncode != 0
    assert "mounts Secret(s) ['pdm-risk-service-tokens']" in missing.stderr
