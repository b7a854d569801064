"""Serving benchmark: the BentoML service against a plain FastAPI + uvicorn control.

Both serve the same champion (the registry's ``champion`` under ``$PDM_HOME``, from
``make demo``, loaded from its bundle directory as inside a Bento) with the same validation,
feature code and model; the control has no BentoML (no middleware, metrics, or readiness
logic): one prediction per request. Both run two worker processes on 127.0.0.1 and get the
same closed-loop load from the same load generator, in the same run: ``wrk`` (C, one thread;
Debian's ``wrk`` package) where it is on the PATH, else an asyncio/aiohttp client, which
itself takes about half a core from the two the servers run on (``--load-generator``). With
``wrk``, ``/predict`` at concurrency 1 and 32 is also measured with the aiohttp client, for
comparison:

* cold start of ``fleet-serve`` (``bentoml serve`` with a socket per worker; process start to
  ``/readyz`` = 200), median of 3, for the service and for the no-op service below;
* ``/predict`` at concurrency 1 and 32: requests/s, p50/p95/p99 latency, errors;
* ``/predict_batch`` (``--batch`` distinct windows per call, as ``readings`` and ``columns``
  JSON and as an Arrow table; the Arrow table also with ``--large-batch`` windows) at
  concurrency 1 and 32: windows/s;
* a no-op BentoML service (same two workers and settings, the same ``/predict`` body read as
  plain JSON, a constant answer) at concurrency 1 and 32: what BentoML's HTTP stack alone
  costs here, the floor under any model behind it.

Each server is loaded only once all its processes are idle (``/readyz`` answers as soon as one
worker is ready), and every run records how its connections were spread over the server's
processes. The BentoML servers start with ``python -m bento_service.serve`` (``fleet-serve``,
as ``make serve``), which gives each worker a listening socket of its own. In the same run the
service is also started on BentoML's one shared socket (``PDM_SERVE_SHARED_SOCKET=1``), with
each ``/predict`` request scored on its own instead of with the others its worker holds
(``PDM_SERVE_COALESCE=0``) and with Python's garbage-collector thresholds
(``PDM_SERVE_GC_THRESHOLDS=700,10,10``), and the four, running side by side, are loaded at
concurrency 32 in ``--rounds`` alternating rounds, a fresh set of connections each.

Usage: ``python benchmarks/bench_service.py [--seconds 8] [--update BENCHMARKS.md]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from bento_service.schemas import WindowContract

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.report_block import write_block  # noqa: E402

BIN = Path(sys.executable).parent
BLOCK = "service"
SHARED_SOCKET_ENV = "PDM_SERVE_SHARED_SOCKET"  # bento_service.serve: BentoML's one shared socket
COALESCE_ENV = "PDM_SERVE_COALESCE"  # bento_service.service: /predict windows scored together
GC_ENV = "PDM_SERVE_GC_THRESHOLDS"  # bento_service.service: a worker's gc.set_threshold
ARRANGEMENTS = {  # the service as served, and one change each: loaded in alternating rounds
    "bentoml": ("as served", {}),
    "bentoml-shared": ("one shared socket", {SHARED_SOCKET_ENV: "1"}),
    "bentoml-single": ("no coalescing", {COALESCE_ENV: "0"}),
    "bentoml-gc-python": ("Python's GC thresholds", {GC_ENV: "700,10,10"}),
}
ARROW_STREAM = "application/vnd.apache.arrow.stream"

CONTROL_APP = """
import os
from threadpoolctl import threadpool_limits
threadpool_limits(1)
import fastapi
from pydantic_core import to_json
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

@app.post("/predict_batch_arrow")
async def predict_batch_arrow(request: fastapi.Request) -> fastapi.Response:
    from bento_service.arrow_batch import STREAM, read_batch
    batch = read_batch(await request.body(), STREAM, model.contract)
    rows = model.prediction_rows(batch.machine_ids, batch.arrays)
    body = {"predictions": rows, "model_name": model.name, "model_version": model.version}
    return fastapi.Response(to_json(body), media_type="application/json")
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
import gc
import bentoml
import pydantic


class Answer(pydantic.BaseModel):  # a model, as the service answers: BentoML builds a JSON
    machine_id: str                # schema on every answer whose type is not one (a dict)
    failure_probability: float


# The service's settings: no access log, no tracing spans, start-up objects frozen.
@bentoml.service(workers=2, logging={"access": {"enabled": False}},
                 tracing={"excluded_urls": [".*"]})
class NoopService:  # GET /readyz: BentoML's own
    def __init__(self) -> None:
        gc.collect()
        gc.freeze()

    @bentoml.api
    async def predict(self, machine_id: str, readings: list | None = None,
                      columns: dict | None = None) -> Answer:
        return Answer(machine_id=machine_id, failure_probability=0.0)
"""


def start(kind: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    path = str(REPO)
    serve = [sys.executable, "-m", "bento_service.serve"]  # `make serve`'s launcher
    if kind in ARRANGEMENTS:
        command = [*serve, "bento_service.service:FleetRiskService",
                   "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        env = {**env, **ARRANGEMENTS[kind][1]}
    elif kind == "noop":
        (log.parent / "noop_service.py").write_text(NOOP_SERVICE)
        path = f"{log.parent}{os.pathsep}{REPO}"
        command = [*serve, "noop_service:NoopService", "--host", "127.0.0.1", "--port", str(port)]
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


def settle(server_pid: int, timeout: float = 60.0, busy: float = 0.1) -> float:
    """Waits until a server's processes use under ``busy`` of a core (every worker loaded).

    ``/readyz`` answers 200 once one worker is ready; the others may still be importing and
    loading, and would take CPU from the first measurements.

    Returns:
        Seconds waited.
    """
    import psutil

    def used() -> float:
        total = 0.0
        root = psutil.Process(server_pid)
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = used()
        time.sleep(0.5)
        if used() - before < busy * 0.5:
            break
    return time.monotonic() - started


def coalesced(url: str) -> tuple[float, float]:
    """``/predict`` windows scored and scoring calls so far (the service's ``/metrics``).

    Returns:
        ``(windows, calls)``, summed over the worker processes; zeros without coalescing.
    """
    import httpx

    totals = {"_sum": 0.0, "_count": 0.0}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        for suffix in totals:
            if line.startswith(f"pdm_predict_coalesced_windows{suffix}"):
                totals[suffix] += float(line.rsplit(" ", 1)[1])
    return totals["_sum"], totals["_count"]


def connections_per_worker(server_pid: int, port: int) -> list[int]:
    """Established connections to ``port`` held by each process of a server, most first.

    BentoML's workers accept from one shared socket, and a worker that wakes first may take a
    whole burst of new connections; this shows how a run's connections were spread.
    """
    import psutil

    counts = []
    for process in [psutil.Process(server_pid), *psutil.Process(server_pid).children(True)]:
        try:
            held = process.net_connections(kind="tcp")
        except psutil.Error:
            continue
        n = sum(1 for c in held if c.status == "ESTABLISHED" and c.laddr.port == port)
        if n:
            counts.append(n)
    return sorted(counts, reverse=True)


async def load(
    url: str,
    body: bytes,
    concurrency: int,
    seconds: float,
    media: str = "application/json",
    server_pid: int | None = None,
) -> dict:
    """Closed-loop load: ``concurrency`` clients each send the next request on an answer.

    With ``server_pid``, the connections each server process holds are sampled half-way.
    """
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"content-type": media}
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
        spread: list[int] = []

        async def sample() -> None:
            await asyncio.sleep(seconds / 2)
            if server_pid is not None:
                port = int(url.split(":")[2].split("/")[0])
                spread.extend(connections_per_worker(server_pid, port))

        began = time.perf_counter()
        await asyncio.gather(sample(), *(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    ms = np.array(latencies) * 1e3
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "errors": errors,
        "connections": spread,
    }


WRK_SCRIPT = """
local f = assert(io.open(os.getenv("PDM_BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("PDM_BENCH_MEDIA")

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nPDM_RESULT {"requests": %d, "seconds": %f, "p50": %f, "p95": %f, "p99": %f, '
    .. '"errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(95) / 1e3, latency:percentile(99) / 1e3,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def load_wrk(
    url: str,
    body: bytes,
    concurrency: int,
    seconds: float,
    media: str = "application/json",
    server_pid: int | None = None,
) -> dict:
    """The same closed-loop load as :func:`load`, from ``wrk`` (one thread).

    Errors are wrk's: failed connects, reads and writes, timeouts (30 s) and answers other than
    1xx-3xx. Latency percentiles are wrk's, over every completed request.
    """
    import urllib.error
    import urllib.request

    work = Path(os.environ.get("TMPDIR", "/tmp")) / "pdm-bench-service"
    work.mkdir(parents=True, exist_ok=True)
    (work / "body.bin").write_bytes(body)
    (work / "post.lua").write_text(WRK_SCRIPT)
    for _ in range(min(concurrency, 4)):  # warm-up, as load()
        request = urllib.request.Request(url, body, {"content-type": media})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
        except urllib.error.HTTPError:  # counted by the run itself
            pass
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
               "-s", str(work / "post.lua"), url]  # fmt: skip
    env = {**os.environ, "PDM_BENCH_BODY": str(work / "body.bin"), "PDM_BENCH_MEDIA": media}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    spread: list[int] = []
    if server_pid is not None:
        time.sleep(seconds / 2)
        port = int(url.split(":")[2].split("/")[0])
        spread = connections_per_worker(server_pid, port)
    out, _ = process.communicate(timeout=seconds + 120)
    if process.returncode != 0 or "PDM_RESULT " not in out:
        raise RuntimeError(f"wrk failed ({process.returncode}): {out}")
    result = json.loads(out.split("PDM_RESULT ", 1)[1].splitlines()[0])
    elapsed = result.pop("seconds")
    return {"rps": result["requests"] / elapsed, **result, "connections": spread}


def fleet_windows(count: int, length: int, seed: int = 0) -> list[pd.DataFrame]:
    """``count`` distinct windows of ``length`` readings from the demo's telemetry.

    Each is one machine's consecutive readings ending at a random cycle, renamed
    ``machine-00000``...: the trees see the spread of values a fleet sends, not one window
    repeated.
    """
    import duckdb

    from pdm_core.paths import warehouse_path

    with duckdb.connect(str(warehouse_path()), read_only=True) as db:
        telemetry = db.sql("SELECT * FROM pdm.raw_telemetry ORDER BY machine_id, cycle").df()
    machines = [g.reset_index(drop=True) for _, g in telemetry.groupby("machine_id", observed=True)]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        rows = machines[i % len(machines)]
        end = int(rng.integers(length, len(rows) + 1))
        window = rows.iloc[end - length : end].copy()
        window["machine_id"] = f"machine-{i:05d}"
        out.append(window)
    return out


def request_bodies(
    batch: int, large: int, contract: WindowContract
) -> list[tuple[str, str, bytes, int]]:
    """(endpoint, form, body, windows per call).

    ``/predict``: the README's example window as ``readings`` (one object per reading) and
    ``columns`` (one list per field). ``/predict_batch``: ``batch`` distinct windows of the
    same length from the demo's telemetry, in both JSON forms and as one Arrow IPC table
    (``arrow``); the Arrow table also with ``large`` windows.
    """
    import pandas as pd

    from bento_service.arrow_batch import arrow_from_frame
    from bento_service.convert import columns_from_window, window_from_frame

    window = json.loads((REPO / "examples" / "serving" / "predict_request.json").read_text())
    many = fleet_windows(max(batch, large), len(window["readings"]))
    frames = many[:batch]
    readings = [window_from_frame(frame, contract) for frame in frames]
    return [
        ("predict", "readings", json.dumps(window).encode(), 1),
        ("predict", "columns", json.dumps(columns_from_window(window)).encode(), 1),
        ("predict_batch", "readings", json.dumps({"machines": readings}).encode(), batch),
        ("predict_batch", "columns",
         json.dumps({"machines": [columns_from_window(w) for w in readings]}).encode(), batch),
        ("predict_batch", "arrow", arrow_from_frame(pd.concat(frames), contract), batch),
        ("predict_batch", "arrow", arrow_from_frame(pd.concat(many[:large]), contract), large),
    ]  # fmt: skip


def run(args: argparse.Namespace) -> str:
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "pdm-bench-service"
    work.mkdir(parents=True, exist_ok=True)
    # The champion's bundle, fetched once from the registry: servers then load it as a Bento
    # does (no MLflow import at start-up).
    from pdm_core.paths import mlflow_tracking_uri
    from pdm_core.registry import download_bundle

    uri = os.environ.get("MLFLOW_TRACKING_URI") or mlflow_tracking_uri()
    bundle, version = download_bundle(uri)
    print(f"champion: pdm-fleet-model v{version.version} ({bundle})", flush=True)
    env = {
        "PDM_MODEL_DIR": str(bundle),
        "PDM_SERVE_WORKERS": "2",
        "BENTOML_DO_NOT_TRACK": "True",
        "PDM_SERVE_MAX_BATCH": str(max(args.batch, args.large_batch, 5000)),
    }
    from bento_service.schemas import WindowContract
    from pdm_core.features import FeatureState

    state = FeatureState.from_json((bundle / "feature_state.json").read_text())
    bodies = request_bodies(args.batch, args.large_batch, WindowContract.of(state))
    cold: dict[str, list[float]] = {"bentoml": [], "noop": []}
    for kind, times in cold.items():
        for i in range(3):
            process, url, seconds = start(kind, env, work / f"cold-{kind}-{i}.log")
            times.append(seconds)
            stop(process)
    rows: list[dict] = []
    spreads: list[dict] = []
    generator = args.load_generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "aiohttp"
    if generator == "aiohttp" and args.load_generator == "auto":
        print("wrk is not on the PATH: the aiohttp client loads the servers", flush=True)
    args.load_generator = generator

    def measure(generator: str, url: str, body: bytes, concurrency: int, media: str,
                pid: int) -> dict:  # fmt: skip
        if generator == "wrk":
            return load_wrk(url, body, concurrency, args.seconds, media, pid)
        return asyncio.run(load(url, body, concurrency, args.seconds, media, pid))

    single = bodies[0]  # /predict, readings
    assert single[:2] == ("predict", "readings")
    # The arrangements, all up, in alternating rounds (the machine's speed drifts), each round
    # a fresh set of 32 connections: how each spreads them, and what coalescing gathers.
    running: dict[str, tuple[subprocess.Popen, str, float]] = {}
    try:
        for kind in ARRANGEMENTS:
            running[kind] = start(kind, env, work / f"{kind}-rounds.log")
        for kind, (process, _, _) in running.items():
            print(f"{kind}: idle {settle(process.pid):.1f} s after /readyz", flush=True)
        kinds = list(running)
        for i in range(args.rounds):  # each round starts with the next arrangement
            for kind in kinds[i % len(kinds) :] + kinds[: i % len(kinds)]:
                process, url, _ = running[kind]
                windows, calls = coalesced(url)
                result = measure(generator, f"{url}/predict", single[2], 32,
                                 "application/json", process.pid)  # fmt: skip
                after = coalesced(url)
                per_call = (after[0] - windows) / (after[1] - calls) if after[1] > calls else 0
                result.update(server=kind, round=i + 1, windows_per_call=per_call)
                spreads.append(result)
                print(json.dumps(result), flush=True)
    finally:
        for process, _, _ in running.values():
            stop(process)
    for kind in ("bentoml", "control", "noop"):
        process, url, _ = start(kind, env, work / f"{kind}.log")
        print(f"{kind}: idle {settle(process.pid):.1f} s after /readyz", flush=True)
        try:
            for endpoint, form, body, per_call in bodies:
                if kind == "noop" and (endpoint, form) != ("predict", "readings"):
                    continue
                path, media = endpoint, "application/json"
                if form == "arrow":
                    media = ARROW_STREAM
                    path = "predict_batch_arrow" if kind == "control" else endpoint
                generators = [generator]
                if generator == "wrk" and (endpoint, form) == ("predict", "readings"):
                    generators.append("aiohttp")  # for comparison with the Python client
                for using in generators:
                    for concurrency in (1, 32):
                        result = measure(using, f"{url}/{path}", body, concurrency, media,
                                         process.pid)  # fmt: skip
                        result.update(server=kind, endpoint=endpoint, form=form,
                                      per_call=per_call, concurrency=concurrency,
                                      generator=using,
                                      windows_per_s=result["rps"] * per_call)  # fmt: skip
                        rows.append(result)
                        print(json.dumps(result), flush=True)
        finally:
            stop(process)
    return report(rows, spreads, cold, args)


def report(
    rows: list[dict], spreads: list[dict], cold: dict[str, list[float]], args: argparse.Namespace
) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {when} with `python benchmarks/bench_service.py --seconds {args.seconds} "
        f"--batch {args.batch} --large-batch {args.large_batch} "
        f"--load-generator {args.load_generator}` on {os.cpu_count()} CPU cores "
        f"({platform.machine()}, no GPU); server and load generator share the cores. Load "
        f"generator: {generator_text(args.load_generator)}. Both "
        "servers: 2 worker processes, same champion, same validation and feature code; the "
        "BentoML servers run under `fleet-serve` (a listening socket per worker), the control "
        "is uvicorn's (one shared socket). "
        "`/predict` sends one 30-reading window; `/predict_batch` sends distinct 30-reading "
        "windows from the demo's telemetry, as `readings` (one JSON object per reading), "
        "`columns` (one JSON list per field) and `arrow` (one Arrow IPC table, a row per "
        "reading). Each server is measured once all its processes are idle after start-up. "
        "Connections per worker: the load's connections each server process held half-way "
        "through the run.",
        "",
        "| server | endpoint | form | windows/call | load generator | concurrency | requests/s "
        "| windows/s | p50 ms | p95 ms | p99 ms | errors | connections per worker |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        spread = "/".join(str(n) for n in r["connections"]) or "-"
        lines.append(
            f"| {r['server']} | {r['endpoint']} | {r['form']} | {r['per_call']} | "
            f"{r['generator']} | {r['concurrency']} | {r['rps']:.1f} | {r['windows_per_s']:.0f} | "
            f"{r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['errors']} of {r['requests']} "
            f"| {spread} |"
        )

    def pick(server: str, generator: str = args.load_generator) -> dict:
        return {
            (r["endpoint"], r["form"], r["per_call"], r["concurrency"]): r
            for r in rows
            if r["server"] == server and r["generator"] == generator
        }

    bento, control, noop = pick("bentoml"), pick("control"), pick("noop")
    single = ("predict", "readings", 1, 32)
    ratio = bento[single]["rps"] / control[single]["rps"]
    floor = noop[single]

    def batch_rate(form: str, per_call: int) -> float:
        return float(bento[("predict_batch", form, per_call, 32)]["windows_per_s"])

    def starts(kind: str) -> str:
        times = cold[kind]
        return (
            f"median {statistics.median(times):.1f} s of {', '.join(f'{c:.1f}' for c in times)} s"
        )

    lines += [
        "",
        "`/predict` (readings) at concurrency 32, a fresh set of connections per round: the "
        "service as served (`fleet-serve`: a listening socket per worker; the `/predict` "
        "requests a worker holds at one moment scored in one call), the same service "
        f"on BentoML's one shared socket (`{SHARED_SOCKET_ENV}=1`), the same service "
        f"scoring each request on its own (`{COALESCE_ENV}=0`) and the same service with "
        f"Python's garbage-collector thresholds (`{GC_ENV}=700,10,10`), all running, "
        f"{args.rounds} rounds each, alternating (each round starts with the next one). "
        "Windows per call: the mean number of "
        "requests scored together in the round (the service's `pdm_predict_coalesced_windows`).",
        "",
        "| arrangement | round | requests/s | p50 ms | p99 ms | errors | connections per worker "
        "| windows per call |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in spreads:
        spread = "/".join(str(n) for n in r["connections"]) or "-"
        per_call = f"{r['windows_per_call']:.1f}" if r["windows_per_call"] else "-"
        lines.append(
            f"| {ARRANGEMENTS[r['server']][0]} | {r['round']} | {r['rps']:.1f} | "
            f"{r['p50']:.1f} | {r['p99']:.1f} | {r['errors']} of {r['requests']} | {spread} "
            f"| {per_call} |"
        )

    def median_of(server: str, key: str) -> float:
        return statistics.median(r[key] for r in spreads if r["server"] == server)

    medians = "; ".join(
        f"{name} {median_of(kind, 'rps'):.0f} requests/s, p99 {median_of(kind, 'p99'):.1f} ms"
        for kind, (name, _) in ARRANGEMENTS.items()
    )
    lines += [
        "",
        f"Median over the rounds: {medians}. As served / no coalescing: "
        f"{median_of('bentoml', 'rps') / median_of('bentoml-single', 'rps'):.2f}x the "
        f"throughput, {median_of('bentoml', 'p99') / median_of('bentoml-single', 'p99'):.2f}x "
        "the p99. As served / Python's GC thresholds: "
        f"{median_of('bentoml', 'rps') / median_of('bentoml-gc-python', 'rps'):.2f}x the "
        f"throughput, {median_of('bentoml', 'p99') / median_of('bentoml-gc-python', 'p99'):.2f}x "
        "the p99.",
        "",
        f"Cold start (`fleet-serve` process start to `/readyz` = 200): {starts('bentoml')}; "
        f"the no-op BentoML service: {starts('noop')}. "
        f"`/predict` (readings) throughput at concurrency 32, BentoML / control: {ratio:.2f}x. "
        f"The no-op BentoML service (no validation, no model) at concurrency 32: "
        f"{floor['rps']:.0f} requests/s, p99 {floor['p99']:.1f} ms; the service answers at "
        f"{bento[single]['rps'] / floor['rps']:.2f}x its throughput. "
        f"`/predict_batch` at concurrency 32: {batch_rate('columns', args.batch):,.0f} "
        f"windows/s as `columns`, {batch_rate('arrow', args.batch):,.0f} as `arrow` "
        f"({args.batch} per call) and {batch_rate('arrow', args.large_batch):,.0f} as `arrow` "
        f"({args.large_batch} per call); goal 50,000.",
    ]
    if args.load_generator == "wrk":
        python, one = pick("bentoml", "aiohttp"), ("predict", "readings", 1, 1)
        lines[-1] += (
            " The same `/predict` (readings) load from the aiohttp client instead of `wrk`: "
            f"p50 {python[one]['p50']:.1f} ms at concurrency 1 "
            f"(`wrk`: {bento[one]['p50']:.1f}); at concurrency 32 "
            f"{python[single]['rps']:.0f} requests/s, p99 {python[single]['p99']:.1f} ms "
            f"(`wrk`: {bento[single]['rps']:.0f}, {bento[single]['p99']:.1f} ms), BentoML / "
            f"control {python[single]['rps'] / pick('control', 'aiohttp')[single]['rps']:.2f}x."
        )
    return "\n".join(lines)


def generator_text(generator: str) -> str:
    if generator == "wrk":
        return "`wrk` (C, one thread; Debian's `wrk` package)"
    return "a closed-loop asyncio/aiohttp client (about half a core of its own at 1,800 requests/s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="Load per measurement.")
    parser.add_argument("--batch", type=int, default=500, help="Windows per batch call.")
    parser.add_argument(
        "--large-batch", type=int, default=2000, help="Windows per call of the large Arrow batch."
    )
    parser.add_argument(
        "--load-generator", choices=("auto", "wrk", "aiohttp"), default="auto",
        help="wrk (when on the PATH, with auto) or the Python aiohttp client.",
    )  # fmt: skip
    parser.add_argument(
        "--rounds", type=int, default=6,
        help="Concurrency-32 /predict rounds per arrangement (fresh connections each).",
    )  # fmt: skip
    parser.add_argument("--update", type=Path, help="Write the table into this markdown file.")
    args = parser.parse_args()
    text = run(args)
    print(text)
    if args.update:
        write_block(
            args.update,
            BLOCK,
            text,
            heading="## Serving: BentoML service against a FastAPI control",
        )


if __name__ == "__main__":
    main()
