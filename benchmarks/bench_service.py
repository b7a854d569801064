"""Serving benchmark: the BentoML service against a plain FastAPI + uvicorn control.

Both serve the same champion (the registry's ``champion`` under ``$PDM_HOME``, from
``make demo``, loaded from its bundle directory as inside a Bento) with the same validation,
feature code and model; the control has no BentoML (no middleware, metrics, or readiness
logic): one prediction per request. Both run two worker processes on 127.0.0.1 and get the
same asyncio/aiohttp load, in the same run:

* cold start of ``bentoml serve`` (process start to ``/readyz`` = 200), median of 3;
* ``/predict`` at concurrency 1 and 32: requests/s, p50/p95/p99 latency, errors;
* ``/predict_batch`` (``--batch`` windows per call) at concurrency 1 and 32: windows/s;
* a no-op BentoML service (same two workers, the same ``/predict`` body read as plain JSON, a
  constant answer) at concurrency 1 and 32: what BentoML's HTTP stack alone costs here, the
  floor under any model behind it.

Usage: ``python benchmarks/bench_service.py [--seconds 8] [--update BENCHMARKS.md]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent
MARK = "bench:service"

CONTROL_APP = """
import os
from threadpoolctl import threadpool_limits
threadpool_limits(1)
import fastapi
from bento_service.model_source import load_served_model
from bento_service.schemas import FleetWindows, MachineWindow, Prediction, FleetPredictions

app = fastapi.FastAPI()
model = load_served_model()
model.self_test()

@app.get("/readyz")
def readyz() -> dict:
    return {"ready": True}

@app.post("/predict")
def predict(window: MachineWindow) -> Prediction:
    return model.predict([window])[0]

@app.post("/predict_batch")
def predict_batch(batch: FleetWindows) -> FleetPredictions:
    return FleetPredictions(predictions=model.predict(batch.machines),
                            model_name=model.name, model_version=model.version)
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 180) -> float:
    import urllib.request

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(url)


NOOP_SERVICE = """
import bentoml


@bentoml.service(workers=2)
class NoopService:  # GET /readyz: BentoML's own
    @bentoml.api
    def predict(self, machine_id: str, readings: list | None = None,
                columns: dict | None = None) -> dict:
        return {"machine_id": machine_id, "failure_probability": 0.0}
"""


def start(kind: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    path = str(REPO)
    if kind == "bentoml":
        command = [str(BIN / "bentoml"), "serve", "bento_service.service:FleetRiskService",
                   "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    elif kind == "noop":
        (log.parent / "noop_service.py").write_text(NOOP_SERVICE)
        path = f"{log.parent}{os.pathsep}{REPO}"
        command = [str(BIN / "bentoml"), "serve", "noop_service:NoopService",
                   "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    else:
        (log.parent / "control_app.py").write_text(CONTROL_APP)
        command = [str(BIN / "uvicorn"), "control_app:app", "--host", "127.0.0.1",
                   "--port", str(port), "--workers", "2", "--no-access-log",
                   "--log-level", "warning", "--app-dir", str(log.parent)]  # fmt: skip
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=REPO, env={**os.environ, **env, "PYTHONPATH": path},
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    wait_ready(url, process)
    return process, url, time.monotonic() - started


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, 15)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)


async def load(url: str, body: bytes, concurrency: int, seconds: float) -> dict:
    """Closed-loop load: ``concurrency`` clients each send the next request on an answer."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        ok = response.status == 200
                except aiohttp.ClientError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += 0 if ok else 1

        for _ in range(min(concurrency, 4)):  # warm-up
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    ms = np.array(latencies) * 1e3
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "errors": errors,
    }


def request_bodies(batch: int) -> list[tuple[str, str, bytes, int]]:
    """(endpoint, form, body, windows per call): rows (``readings``) and ``columns`` forms."""
    from bento_service.convert import columns_from_window

    window = json.loads((REPO / "examples" / "serving" / "predict_request.json").read_text())
    out = []
    for form, body in (("readings", window), ("columns", columns_from_window(window))):
        machines = [{**body, "machine_id": f"machine-{i:05d}"} for i in range(batch)]
        out.append(("predict", form, json.dumps(body).encode(), 1))
        out.append(("predict_batch", form, json.dumps({"machines": machines}).encode(), batch))
    return sorted(out, key=lambda r: (r[0], r[1] != "readings"))


def run(args: argparse.Namespace) -> str:
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "pdm-bench-service"
    work.mkdir(parents=True, exist_ok=True)
    # The champion's bundle, fetched once from the registry: servers then load it as a Bento
    # does (no MLflow import at start-up).
    from pdm_core.registry import download_bundle
    from pdm_resources.paths import mlflow_tracking_uri

    uri = os.environ.get("MLFLOW_TRACKING_URI") or mlflow_tracking_uri()
    bundle, version = download_bundle(uri)
    print(f"champion: pdm-fleet-model v{version.version} ({bundle})", flush=True)
    env = {
        "PDM_MODEL_DIR": str(bundle),
        "PDM_SERVE_WORKERS": "2",
        "BENTOML_DO_NOT_TRACK": "True",
        "PDM_SERVE_MAX_BATCH": str(max(args.batch, 5000)),
    }
    bodies = request_bodies(args.batch)
    cold = []
    for i in range(3):
        process, url, seconds = start("bentoml", env, work / f"cold{i}.log")
        cold.append(seconds)
        stop(process)
    rows = []
    for kind in ("bentoml", "control", "noop"):
        process, url, _ = start(kind, env, work / f"{kind}.log")
        try:
            for endpoint, form, body, per_call in bodies:
                if kind == "noop" and (endpoint, form) != ("predict", "readings"):
                    continue
                for concurrency in (1, 32):
                    result = asyncio.run(load(f"{url}/{endpoint}", body, concurrency, args.seconds))
                    result.update(server=kind, endpoint=endpoint, form=form,
                                  concurrency=concurrency,
                                  windows_per_s=result["rps"] * per_call)  # fmt: skip
                    rows.append(result)
                    print(json.dumps(result), flush=True)
        finally:
            stop(process)
    return report(rows, cold, args)


def report(rows: list[dict], cold: list[float], args: argparse.Namespace) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {when} with `python benchmarks/bench_service.py --seconds {args.seconds} "
        f"--batch {args.batch}` on {os.cpu_count()} CPU cores ({platform.machine()}, no GPU); "
        "server and load generator share the cores. Both servers: 2 worker processes, same "
        "champion, same validation and feature code. `/predict` sends one 30-reading window; "
        f"`/predict_batch` sends {args.batch} windows per call; each as `readings` (one object "
        "per reading) and as `columns` (one list per field).",
        "",
        "| server | endpoint | form | concurrency | requests/s | windows/s | p50 ms | p95 ms "
        "| p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['server']} | {r['endpoint']} | {r['form']} | {r['concurrency']} | "
            f"{r['rps']:.1f} | "
            f"{r['windows_per_s']:.0f} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | "
            f"{r['errors']} of {r['requests']} |"
        )

    def pick(server: str) -> dict:
        return {
            (r["endpoint"], r["form"], r["concurrency"]): r for r in rows if r["server"] == server
        }

    bento, control, noop = pick("bentoml"), pick("control"), pick("noop")
    ratio = bento[("predict", "readings", 32)]["rps"] / control[("predict", "readings", 32)]["rps"]
    floor = noop[("predict", "readings", 32)]
    lines += [
        "",
        f"Cold start (`bentoml serve` process start to `/readyz` = 200): median "
        f"{statistics.median(cold):.1f} s of {', '.join(f'{c:.1f}' for c in cold)} s. "
        f"`/predict` (readings) throughput at concurrency 32, BentoML / control: {ratio:.2f}x. "
        f"The no-op BentoML service (no validation, no model) at concurrency 32: "
        f"{floor['rps']:.0f} requests/s, p99 {floor['p99']:.1f} ms; the service answers at "
        f"{bento[('predict', 'readings', 32)]['rps'] / floor['rps']:.2f}x its throughput.",
    ]
    return "\n".join(lines)


def update(path: Path, text: str) -> None:
    start, end = f"<!-- {MARK}:start -->", f"<!-- {MARK}:end -->"
    content = path.read_text()
    if start in content:
        head, rest = content.split(start, 1)
        content = head + start + "\n" + text + "\n" + end + rest.split(end, 1)[1]
    else:
        content += f"\n{start}\n{text}\n{end}\n"
    path.write_text(content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="Load per measurement.")
    parser.add_argument("--batch", type=int, default=500, help="Windows per batch call.")
    parser.add_argument("--update", type=Path, help="Write the table into this markdown file.")
    args = parser.parse_args()
    text = run(args)
    print(text)
    if args.update:
        update(args.update, text)


if __name__ == "__main__":
    main()
