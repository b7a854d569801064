"""``make rehearse-serve``: the exported Bento run the way its Kubernetes pod runs it.

There is no container engine or cluster here, but everything else the pod does can be
rehearsed with Linux namespaces, so the first try of the deploy is not a user's first deploy:

1. **The pod's shape is read from the rendered manifest** (the ``prod`` overlay, rendered by
   ``.ci/validate-manifests --render-only``): the container's ``args`` and ``env``, its port, the
   three probes, ``runAsUser``/``runAsGroup``/``fsGroup``, ``readOnlyRootFilesystem`` and the
   ``emptyDir`` mounts. Nothing is copied into this module, so the rehearsal fails when the
   manifest and the service drift apart.
2. **The image is rebuilt as the Bento's own Dockerfile builds it**, without building an image:
   the Bento is exported (``bentoml export``, models included) and unpacked to stand at its
   ``BENTO_PATH``; a fresh virtual environment gets only what the Dockerfile installs (the
   Bento's ``env/python/requirements.txt``, with the pins the Bento records, by uv); the
   Dockerfile's ``ARG``/``ENV``/``WORKDIR`` lines give the image's environment.
3. **The pod runs in its own mount and network namespaces** (``unshare``): the Bento is mounted
   read-only at its ``BENTO_PATH`` and the environment at a staging path (the image's
   ``/app/.venv`` would need a new folder on the host), every ``emptyDir`` is a tmpfs of
   its ``sizeLimit`` owned by the ``fsGroup``, every other mount is remounted read-only, and
   the container's ``args`` run with only the image's and the manifest's environment as the
   manifest's user and group, without capabilities or new privileges.
4. **From outside the container** (the same network namespace, as the kubelet and other pods
   reach a pod) :func:`check` waits for the startup probe within its budget, then asks the
   readiness and liveness probes, ``/predict`` with the README's example and ``/predict_batch``
   with an Arrow body (both must equal the development server's answers, started on the same
   Bento beforehand, within 1e-6), ``/metrics`` and ``/model_info`` (the Bento's model version).

Needs root (mount namespaces, another uid), ``unshare``, ``nsenter``, ``setpriv`` and ``ip``;
the Bento ``make demo`` built. Prints one line per check and exits 1 when any fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OVERLAY = "prod"
CONTAINER = "pdm-risk-service"
BENTO = "pdm-risk-service:latest"
EXAMPLE = REPO / "examples" / "serving" / "predict_request.json"
TOLERANCE = 1e-6


@dataclass(frozen=True)
class Probe:
    """One HTTP probe: its path and how long the kubelet gives it (period x failures)."""

    path: str
    period_s: float
    budget_s: float


@dataclass(frozen=True)
class PodShape:
    """What the rendered Deployment says about the service's container."""

    args: list[str]
    env: dict[str, str]
    port: int
    startup: Probe
    readiness: Probe
    liveness: Probe
    uid: int
    gid: int
    fs_group: int | None
    read_only_root: bool
    empty_dirs: dict[str, str | None]  # mount path -> sizeLimit
    secrets: dict[str, str] = field(default_factory=dict)  # mount path -> Secret name


def _probe(spec: dict[str, Any]) -> Probe:
    period = float(spec.get("periodSeconds", 10))
    return Probe(spec["httpGet"]["path"], period, period * float(spec.get("failureThreshold", 3)))


def pod_shape(rendered: Path, container: str = CONTAINER) -> PodShape:
    """The container's shape in a rendered overlay (one YAML stream).

    Raises:
        ValueError: No Deployment with that container, or an ``env`` entry that is not a plain
            value (the rehearsal cannot resolve references), naming it.
    """
    import yaml

    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    for doc in docs:
        if doc.get("kind") != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        found = [c for c in pod["containers"] if c["name"] == container]
        if found:
            break
    else:
        raise ValueError(f"{rendered}: no Deployment with a container {container!r}")
    spec = found[0]
    env = {}
    for entry in spec.get("env", []):
        if "value" not in entry:
            raise ValueError(f"{rendered}: env {entry['name']} is not a plain value")
        env[entry["name"]] = str(entry["value"])
    ports = {p.get("name"): int(p["containerPort"]) for p in spec["ports"]}
    startup = spec["startupProbe"]
    named = startup["httpGet"]["port"]
    port = ports[named] if isinstance(named, str) else int(named)
    pod_security = pod.get("securityContext", {})
    security = {**pod_security, **spec.get("securityContext", {})}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = spec.get("volumeMounts", [])
    empty_dirs = {
        m["mountPath"]: (volumes[m["name"]]["emptyDir"] or {}).get("sizeLimit")
        for m in mounts
        if "emptyDir" in volumes[m["name"]]
    }
    secrets = {
        m["mountPath"]: volumes[m["name"]]["secret"]["secretName"]
        for m in mounts
        if "secret" in volumes[m["name"]]
    }
    return PodShape(
        args=[str(a) for a in spec["args"]],
        env=env,
        port=port,
        startup=_probe(startup),
        readiness=_probe(spec["readinessProbe"]),
        liveness=_probe(spec["livenessProbe"]),
        uid=int(security["runAsUser"]),
        gid=int(security.get("runAsGroup", security["runAsUser"])),
        fs_group=pod_security.get("fsGroup"),
        read_only_root=bool(security.get("readOnlyRootFilesystem", False)),
        empty_dirs=empty_dirs,
        secrets=secrets,
    )


@dataclass(frozen=True)
class ImageShape:
    """What the Bento's generated Dockerfile sets up: environment and working directory."""

    env: dict[str, str]
    workdir: str
    bento_path: str


def image_shape(dockerfile: Path) -> ImageShape:
    """The image's ``ENV`` (with ``ARG`` defaults substituted) and ``WORKDIR``."""
    args: dict[str, str] = {}
    env: dict[str, str] = {}
    workdir = "/"

    def expand(value: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: {**args, **env}.get(m.group(1), ""), value)

    for line in dockerfile.read_text().splitlines():
        words = line.strip().split(None, 1)
        if len(words) != 2:
            continue
        keyword, rest = words
        if keyword == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            args[name] = expand(value)
        elif keyword == "ENV" and "=" in rest:
            name, value = rest.split("=", 1)
            env[name] = expand(value)
        elif keyword == "WORKDIR":
            workdir = expand(rest)
    for name in ("PATH", "VIRTUAL_ENV"):  # the rehearsal's environment is elsewhere
        env.pop(name, None)
    return ImageShape(env, workdir, env.get("BENTO_PATH", "/home/bentoml/bento"))


def render_overlay(out: Path, overlay: str = OVERLAY) -> Path:
    """Renders the overlays with the repository's own script; returns ``overlay``'s file."""
    result = subprocess.run(
        [str(REPO / ".ci" / "validate-manifests"), "--render-only", str(out)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"rendering the overlays failed:\n{result.stderr[-3000:]}")
    return out / f"{overlay}.yaml"


def find_uv() -> str:
    """The uv that ``make install`` bootstrapped (or the one on ``PATH``)."""
    for candidate in (REPO / ".tools" / "bin" / "uv", Path(sys.executable).parent / "uv"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("uv")
    if not found:
        raise RuntimeError("uv is not installed (make install bootstraps it)")
    return found


def stage_bento(tag: str, root: Path) -> tuple[Path, Path]:
    """Exports the Bento, unpacks it and builds its environment as its Dockerfile does.

    Returns:
        The unpacked Bento and the virtual environment.
    """
    archive = root / "bento.bento"
    subprocess.run(
        [str(Path(sys.executable).parent / "bentoml"), "export", tag, str(archive)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    bento = root / "bento"
    with tarfile.open(archive) as bundle:
        bundle.extractall(bento, filter="data")
    venv = root / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    uv = find_uv()
    subprocess.run([uv, "venv", "--quiet", "--python", base, str(venv)], check=True)
    source = bento / "src" if (bento / "src").is_dir() else bento / "env" / "python"
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
         "-r", str(bento / "env" / "python" / "requirements.txt")],
        check=True, cwd=source, env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
    )  # fmt: skip
    return bento, venv


def _hidden_ancestor(path: Path) -> Path | None:
    """The outermost directory above ``path`` that other users cannot enter, if any."""
    hidden = None
    for parent in reversed(path.parents):
        if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
            hidden = hidden or parent
    return hidden


def inner_script(
    pod: PodShape,
    image: ImageShape,
    bento: Path,
    venv: Path,
    secrets: dict[str, Path] | None = None,
) -> str:
    """The shell script that sets up the pod's filesystem in the new namespaces and runs it.

    ``secrets`` gives a directory for each Secret the pod mounts (one file per key), mounted
    read-only at the manifest's path as the kubelet mounts a Secret volume.

    Raises:
        ValueError: The pod mounts a Secret that ``secrets`` does not provide, naming it.
    """
    secrets = secrets or {}
    missing = sorted(set(pod.secrets.values()) - set(secrets))
    if missing:
        raise ValueError(f"the pod mounts Secret(s) {missing}: give each with --secret NAME=DIR")
    q = shlex.quote
    prefix = Path(os.path.realpath(venv / "bin" / "python")).parents[1]
    hidden = _hidden_ancestor(prefix)
    stage = "/run/pdm-rehearsal"
    lines = [
        "set -euo pipefail",
        "mount --make-rprivate /",
        "ip link set lo up",
        # A staging tmpfs (over /run, inside this namespace only) holds what the image holds.
        "mount -t tmpfs -o mode=755 tmpfs /run",
        f"mkdir -p {stage}/bento {stage}/venv {stage}/python",
        f"mount --bind {q(str(bento))} {stage}/bento",
        f"mount --bind {q(str(venv))} {stage}/venv",
        f"mount --bind {q(str(prefix))} {stage}/python",
    ]
    for number, name in enumerate(sorted(set(pod.secrets.values()))):
        lines += [
            f"mkdir -p {stage}/secret-{number}",
            f"mount --bind {q(str(secrets[name]))} {stage}/secret-{number}",
        ]
    if hidden is not None:  # the interpreter the venv links to lies below a private folder
        lines += [
            f"mount -t tmpfs -o mode=755 tmpfs {q(str(hidden))}",
            f"mkdir -p {q(str(prefix))}",
            f"mount --bind {stage}/python {q(str(prefix))}",
        ]
    # The Bento where the image has it (BENTO_PATH); the folders above it on a tmpfs when the
    # host lacks them. The environment stays at the staging path (the image's is /app/.venv:
    # a new top-level folder would have to be created on the host).
    top = "/" + Path(image.bento_path).parts[1]
    lines += [
        f"[ -e {q(image.bento_path)} ] || mount -t tmpfs -o mode=755 tmpfs {q(top)}",
        f"mkdir -p {q(image.bento_path)}",
        f"mount --bind {stage}/bento {q(image.bento_path)}",
    ]
    group = pod.fs_group if pod.fs_group is not None else pod.gid
    numbers = {name: n for n, name in enumerate(sorted(set(pod.secrets.values())))}
    for number, (path, name) in enumerate(pod.secrets.items()):
        # A Secret below an existing top folder (/etc/...): that folder is replaced, in this
        # namespace, by a copy with the mount point added, so nothing of the host changes.
        top, shadow = "/" + Path(path).parts[1], f"{stage}/shadow-{number}"
        lines += [
            f"if [ ! -e {q(path)} ]; then mkdir -p {shadow}; cp -a {q(top)}/. {shadow}/;"
            f" mkdir -p {shadow}/{q(str(Path(*Path(path).parts[2:])))};"
            f" mount --bind {shadow} {q(top)}; fi",
            f"mount --bind {stage}/secret-{numbers[name]} {q(path)}",
        ]
    for path, size in pod.empty_dirs.items():
        options = "mode=2775" + (f",size={_tmpfs_size(size)}" if size else "")
        lines += [
            f"mkdir -p {q(path)} 2>/dev/null || true",
            f"mount -t tmpfs -o {options} tmpfs {q(path)}",
            f"chown 0:{group} {q(path)}",
        ]
    if pod.read_only_root:
        keep = "|".join(re.escape(p) for p in pod.empty_dirs)
        lines.append("mount -o remount,bind,ro /")
        lines.append(
            "awk '{print $5}' /proc/self/mountinfo | sort -u | "
            f"grep -Ev '^/(proc|sys|dev)(/|$)' | grep -Ev '^({keep})$' | "
            'while read -r m; do mount -o remount,bind,ro "$m" 2>/dev/null || true; done'
        )
        probe = f"{image.bento_path}/.rehearsal-write-test"
        lines.append(
            f"if touch {q(probe)} 2>/dev/null; then echo 'root fs writable' >&2; exit 3; fi"
        )
    env = {**image.env, "VIRTUAL_ENV": f"{stage}/venv", "HOME": "/home/bentoml",
           "PATH": f"{stage}/venv/bin:/usr/local/bin:/usr/bin:/bin", **pod.env}  # fmt: skip
    assignments = " ".join(q(f"{k}={v}") for k, v in env.items())
    command = " ".join(q(a) for a in pod.args)
    lines += [
        'echo "namespace-ready $$"',
        f"cd {q(image.workdir)}",
        f"exec setpriv --reuid={pod.uid} --regid={pod.gid} --groups={group} --no-new-privs "
        f"--inh-caps=-all --bounding-set=-all env -i {assignments} {command}",
    ]
    return "\n".join(lines) + "\n"


def _tmpfs_size(limit: str) -> str:
    """A Kubernetes quantity (``512Mi``, ``1Gi``) as a tmpfs size (``512m``, ``1g``)."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", limit)
    if not match:
        raise ValueError(f"emptyDir sizeLimit {limit!r}: only Ki, Mi, Gi are understood")
    unit = {"Ki": "k", "Mi": "m", "Gi": "g", None: ""}[match.group(2)]
    return f"{match.group(1)}{unit}"


@dataclass
class Answers:
    """The development server's answers to the rehearsal's requests."""

    predict: dict[str, Any]
    predict_batch: list[dict[str, Any]]
    model_version: str


@dataclass
class CheckConfig:
    """What :func:`check` asks the rehearsed pod, and what it must answer."""

    port: int
    startup: dict[str, float | str]
    readiness: dict[str, float | str]
    liveness: dict[str, float | str]
    predict_body: str
    arrow_body: str  # a file: the Arrow IPC stream
    expected: dict[str, Any] = field(default_factory=dict)
    pod_pid: int = 0  # the pod's process: waiting stops when it is gone
    bearer: str = ""  # a valid token when the pod checks them (``PDM_SERVE_TOKENS_DIR``)


def requests_for(bento: Path) -> tuple[dict[str, Any], bytes]:
    """The README's ``/predict`` example, and an Arrow ``/predict_batch`` body built from it.

    The body holds three machines: the example's readings, with vibration scaled per machine.
    """
    import pandas as pd

    from bento_service.arrow_batch import arrow_from_frame
    from bento_service.schemas import WindowContract
    from pdm_core.features import FeatureState

    example = json.loads(EXAMPLE.read_text())
    model_dir = next((bento / "models").glob("*/v*"))
    state = FeatureState.from_json((model_dir / "feature_state.json").read_text())
    rows = []
    for number, scale in enumerate((1.0, 1.1, 1.25)):
        for reading in example["readings"]:
            sensors = {
                k: (v * scale if k == "vibration" else v) for k, v in reading["sensors"].items()
            }
            rows.append({"machine_id": f"rehearsal-{number}", "cycle": reading["cycle"],
                         "regime": reading.get("regime"),
                         "time_since_maintenance": reading.get("time_since_maintenance"),
                         **sensors})  # fmt: skip
    return example, arrow_from_frame(pd.DataFrame(rows), WindowContract.of(state))


def dev_answers(tag: str, example: dict[str, Any], arrow: bytes, log: Path) -> Answers:
    """The development server's (``fleet-serve`` on the Bento, as ``make serve``) answers."""
    import httpx

    from bento_service.arrow_batch import ARROW_STREAM

    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bento_service.serve", tag, "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PDM_SERVE_WORKERS": "1"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200, 180, log)
        predict = httpx.post(f"{url}/predict", json=example, timeout=30).json()
        batch = httpx.post(f"{url}/predict_batch", content=arrow, timeout=30,
                           headers={"content-type": ARROW_STREAM}).json()  # fmt: skip
        info = httpx.get(f"{url}/model_info", timeout=10).json()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    return Answers(predict, batch, str(info["model_version"]))


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(ready: Any, timeout: float, log: Path) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if ready():
                return time.monotonic() - started
        except Exception:  # not listening yet
            pass
        time.sleep(0.5)
    raise TimeoutError(f"not ready after {timeout:.0f} s; log {log}:\n{log.read_text()[-3000:]}")


def _close(got: Any, want: Any, where: str = "") -> list[str]:
    """Differences between two JSON answers (numbers within :data:`TOLERANCE`)."""
    if isinstance(want, dict) and isinstance(got, dict):
        if set(got) != set(want):
            return [f"{where}: fields {sorted(got)} != {sorted(want)}"]
        return [d for k in want for d in _close(got[k], want[k], f"{where}.{k}")]
    if isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        return [
            d
            for i, (g, w) in enumerate(zip(got, want, strict=True))
            for d in _close(g, w, f"{where}[{i}]")
        ]
    if isinstance(want, float) and isinstance(got, int | float):
        return [] if abs(got - want) <= TOLERANCE else [f"{where}: {got} != {want}"]
    return [] if got == want else [f"{where}: {got!r} != {want!r}"]


def _answer_diffs(answer: Any, expected: Any) -> list[str]:
    """Up to three differences of an HTTP answer from the development server's."""
    if answer.status_code != 200:
        return [f"HTTP {answer.status_code}: {answer.text[:300]}"]
    return _close(answer.json(), expected)[:3]


def check(config: CheckConfig) -> list[tuple[str, bool, str]]:
    """Asks the rehearsed pod what the kubelet and clients ask; one (name, ok, detail) each."""
    import httpx

    from bento_service.arrow_batch import ARROW_STREAM

    url = f"http://127.0.0.1:{config.port}"
    results: list[tuple[str, bool, str]] = []

    def probe(name: str, spec: dict[str, Any], budget: float) -> bool:
        started = time.monotonic()
        while time.monotonic() - started < budget:
            if config.pod_pid and not Path(f"/proc/{config.pod_pid}").exists():
                results.append((name, False, "the pod's process exited"))
                return False
            try:
                if httpx.get(url + str(spec["path"]), timeout=3).status_code == 200:
                    results.append(
                        (name, True, f"{spec['path']} 200 after {time.monotonic() - started:.1f} s")
                    )
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(min(float(spec["period_s"]), 1.0))
        results.append((name, False, f"{spec['path']} not 200 within {budget:.0f} s"))
        return False

    if not probe("startup probe", config.startup, float(config.startup["budget_s"])):
        return results
    probe("readiness probe", config.readiness, float(config.readiness["budget_s"]))
    probe("liveness probe", config.liveness, float(config.liveness["budget_s"]))
    expected = config.expected
    auth = {"authorization": f"Bearer {config.bearer}"} if config.bearer else {}
    if config.bearer:  # the same request without the token first
        refused = httpx.post(f"{url}/predict", content=config.predict_body, timeout=30,
                             headers={"content-type": "application/json"})  # fmt: skip
        name = "/predict without a token refused"
        results.append((name, refused.status_code == 401, f"{refused.status_code}"))
    answer = httpx.post(f"{url}/predict", content=config.predict_body, timeout=30,
                        headers={"content-type": "application/json", **auth})  # fmt: skip
    diffs = _answer_diffs(answer, expected["predict"])
    results.append(("/predict = development server", not diffs, "; ".join(diffs) or "README"))
    batch = httpx.post(f"{url}/predict_batch", content=Path(config.arrow_body).read_bytes(),
                       headers={"content-type": ARROW_STREAM, **auth}, timeout=30)  # fmt: skip
    diffs = _answer_diffs(batch, expected["predict_batch"])
    name = "/predict_batch (Arrow) = development server"
    results.append((name, not diffs, "; ".join(diffs) or "3 machines"))
    metrics = httpx.get(f"{url}/metrics", timeout=10)
    scraped = metrics.status_code == 200 and "pdm_predictions_total" in metrics.text
    results.append(("/metrics scrapeable", scraped, f"{metrics.status_code}"))
    info = httpx.get(f"{url}/model_info", headers=auth, timeout=10).json()
    same = str(info.get("model_version")) == expected["model_version"]
    results.append(("/model_info names the Bento's model", same, f"v{info.get('model_version')}"))
    return results


def bento_model_version(bento: Path) -> str | None:
    """The registry model version the Bento records (its ``model_version`` label), if any."""
    import yaml

    labels = yaml.safe_load((bento / "bento.yaml").read_text()).get("labels") or {}
    version = labels.get("model_version")
    return None if version is None else str(version)


def rehearse(
    tag: str = BENTO,
    overlay: str = OVERLAY,
    manifest: Path | None = None,
    then: str | None = None,
    secrets: dict[str, Path] | None = None,
    bearer: str = "",
) -> list[tuple[str, bool, str]]:
    """Stages the Bento, runs it as the rendered pod and checks it; the checks' results.

    Args:
        tag: The Bento.
        overlay: The overlay whose Deployment is the pod.
        manifest: Another rendered file instead of ``overlay`` (a test's edit).
        then: A shell command run after the checks passed, in the pod's network namespace,
            with ``{url}`` replaced by the pod's address (CD's smoke test); its outcome is
            one more check.
        secrets: A directory per Secret the pod mounts (``prod-external``'s tokens).
        bearer: A valid token, when the pod checks them: every request but the probes and
            ``/metrics`` sends it, after one ``/predict`` without it must be refused.
    """
    for tool in ("unshare", "nsenter", "setpriv", "ip"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed")
    if os.geteuid() != 0:
        raise RuntimeError("the rehearsal needs root (mount namespaces, running as the pod's uid)")
    from pdm_core.paths import pdm_home

    pdm_home().mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="rehearsal-", dir=pdm_home()))
    os.chmod(root, 0o755)
    pod = pod_shape(manifest or render_overlay(root / "rendered", overlay))
    bento, venv = stage_bento(tag, root)
    for path in (bento, venv):  # readable by the pod's user, as the image's COPY --chown makes it
        subprocess.run(["chmod", "-R", "a+rX", str(path)], check=True)
    image = image_shape(bento / "env" / "docker" / "Dockerfile")
    example, arrow = requests_for(bento)
    (root / "batch.arrows").write_bytes(arrow)
    answers = dev_answers(tag, example, arrow, root / "dev-server.log")
    config = CheckConfig(
        port=pod.port, startup=asdict(pod.startup), readiness=asdict(pod.readiness),
        liveness=asdict(pod.liveness), predict_body=json.dumps(example),
        arrow_body=str(root / "batch.arrows"), expected=asdict(answers), bearer=bearer,
    )  # fmt: skip
    config.expected["model_version"] = bento_model_version(bento) or answers.model_version
    script = root / "pod.sh"
    log = root / "pod.log"
    log.touch()
    script.write_text(inner_script(pod, image, bento, venv, secrets))
    pod_process = subprocess.Popen(
        ["unshare", "--mount", "--net", "--fork", "--kill-child", "bash", str(script)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    # The pod's output goes through a pipe: a file open for writing on a mount would keep that
    # mount from becoming read-only.
    copier = threading.Thread(target=_copy_lines, args=(pod_process.stdout, log), daemon=True)
    try:
        copier.start()
        ready = _namespace_pid(log, timeout=60)
        if ready is None:
            raise RuntimeError(f"the pod's namespace was not set up:\n{log.read_text()[-3000:]}")
        config.pod_pid = int(ready)
        (root / "check.json").write_text(json.dumps(asdict(config)))
        checker = subprocess.run(
            ["nsenter", f"--net=/proc/{ready}/ns/net", sys.executable, "-m",
             "pdm_platform.rehearse_serve", "--check", str(root / "check.json")],
            capture_output=True, text=True, cwd=REPO, timeout=pod.startup.budget_s + 300,
        )  # fmt: skip
        if checker.returncode != 0:
            raise RuntimeError(f"the checker failed:\n{checker.stderr[-3000:]}")
        results = [tuple(r) for r in json.loads(checker.stdout.strip().splitlines()[-1])]
        if then and all(ok for _, ok, _ in results):
            command = then.replace("{url}", f"http://127.0.0.1:{pod.port}")
            after = subprocess.run(
                ["nsenter", f"--net=/proc/{ready}/ns/net", "bash", "-c", command],
                capture_output=True, text=True, cwd=REPO, timeout=600,
            )  # fmt: skip
            said = (after.stdout + after.stderr).strip().replace("\n", " | ")[-1500:]
            results.append((f"then: {command}", after.returncode == 0, said))
    finally:
        os.killpg(pod_process.pid, signal.SIGTERM)
        try:
            pod_process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(pod_process.pid, signal.SIGKILL)
    if all(ok for _, ok, _ in results):
        shutil.rmtree(root, ignore_errors=True)  # the staged Bento and environment (~0.5 GB)
    else:
        pod_log = log.read_text(errors="replace")[-3000:]
        results.append((f"pod log (tail; all under {root})", False, pod_log))
    return results  # type: ignore[return-value]


def _copy_lines(stream: Any, log: Path) -> None:
    with log.open("a") as out:
        for line in stream:
            out.write(line)
            out.flush()


def _namespace_pid(log: Path, timeout: float) -> str | None:
    """The pid the pod's script printed once its namespace was ready (None: it never did)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"^namespace-ready (\d+)$", log.read_text(errors="replace"), re.M)
        if found:
            return found.group(1)
        time.sleep(0.2)
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m pdm_platform.rehearse_serve [--bento TAG] [--overlay NAME]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bento", default=BENTO)
    parser.add_argument("--overlay", default=OVERLAY)
    parser.add_argument("--manifest", type=Path, help="a rendered manifest instead of --overlay")
    parser.add_argument(
        "--then", help="a shell command run against the pod once it passed ({url}: its address)"
    )
    parser.add_argument(
        "--secret", action="append", default=[], metavar="NAME=DIR",
        help="the files of a Secret the pod mounts (one per key), e.g. the service's tokens",
    )  # fmt: skip
    parser.add_argument("--bearer", default="", help="a valid token, when the pod checks them")
    parser.add_argument("--check", type=Path, help=argparse.SUPPRESS)  # the inner checker
    args = parser.parse_args(argv)
    if args.check:
        config = CheckConfig(**json.loads(args.check.read_text()))
        print(json.dumps(check(config)))
        return 0
    started = time.monotonic()
    secrets = {}
    for item in args.secret:
        name, _, directory = item.partition("=")
        if not name or not directory:
            parser.error(f"--secret {item!r}: expected NAME=DIR")
        secrets[name] = Path(directory).resolve()
    results = rehearse(args.bento, args.overlay, args.manifest, args.then, secrets, args.bearer)
    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    passed = all(ok for _, ok, _ in results)
    print(f"rehearsal {'passed' if passed else 'FAILED'} in {time.monotonic() - started:.0f} s")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
