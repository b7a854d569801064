"""Every query on the Grafana dashboard returns data from a real Prometheus.

A real Prometheus (Debian's, on 127.0.0.1) scrapes the risk service (``fleet-serve`` with a
small trained model, under load) and the fleet metrics exporter (``pdm_platform.fleet_metrics``)
over a warehouse written by the live-scoring code: risk rows with their landing time, the
fleet's current state and the alerts those scores raise. Then each panel's PromQL goes to
Prometheus's query API and must come back with at least one finite value.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pandas as pd
import pytest

from bento_service.arrow_batch import ARROW_STREAM, arrow_from_frame
from bento_service.convert import window_from_frame
from bento_service.schemas import WindowContract
from pdm_core.alerts import risk_alerts
from pdm_core.fleet_state import current_state
from pdm_core.live_scoring import score_batch
from pdm_resources.alerts import LocalAlertSink
from pdm_resources.warehouse import LocalWarehouse
from tests.service_fixtures import ServedFleet, bentoml_server, build_served_fleet, wait_ready
from tests.services import free_port, prometheus_server

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "terraform" / "dashboards" / "pdm-fleet-risk.json"
SERVICE_JOB = "pdm-risk-service"  # the job name the dashboard's `up{job=...}` panel expects


def live_warehouse(path: Path, fleet: ServedFleet) -> None:
    """Two scored batches, the fleet's state and their alerts, as the ingestion run writes them."""
    telemetry = fleet.telemetry.sort_values(["machine_id", "cycle"])
    history = telemetry[telemetry["cycle"] <= 300]
    warehouse = LocalWarehouse(database=str(path))
    sink = LocalAlertSink(database=str(path))
    scored = []
    for number, (first, last) in enumerate([(301, 310), (311, 320)]):
        batch = telemetry[telemetry["cycle"].between(first, last)]
        now = pd.Timestamp(batch["timestamp"].max()) + pd.Timedelta(minutes=1)
        result = score_batch(
            fleet.model, batch, history, batch_id=f"b{number}", model_name="pdm-fleet-model",
            model_version="3", newest_before=pd.Series(dtype="int64"), now=now,
            future_tolerance=pd.Timedelta(minutes=10),
        )  # fmt: skip
        assert len(result.rows) == len(batch)
        warehouse.replace_partition("risk_history", "batch_id", f"b{number}", result.rows)
        record = {"batch_id": f"b{number}", "landed_at": now - pd.Timedelta(seconds=12),
                  "stored_at": now}  # fmt: skip
        warehouse.replace_partition("scored_batches", "batch_id", record["batch_id"],
                                    pd.DataFrame([record]))  # fmt: skip
        sink.raise_alerts(risk_alerts(result.rows.to_dict("records"), now.date().isoformat()))
        scored.append(result.rows)
        history = pd.concat([history, batch])
    no_source = pd.DataFrame(columns=["machine_id"])
    state = current_state(no_source, pd.concat(scored), pd.Timedelta(minutes=60))
    with duckdb.connect(str(path)) as db:
        db.register("state", state)
        db.execute("create or replace table pdm.fleet_health as select * from state")


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ServedFleet]]:
    home = tmp_path_factory.mktemp("prometheus")
    fleet = build_served_fleet(home / "trained")
    database = home / "warehouse.duckdb"
    live_warehouse(database, fleet)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pdm_platform.fleet_metrics", "--port", str(port),
         "--warehouse", str(database)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    target = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://{target}/metrics", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield target, fleet
    finally:
        process.terminate()
        process.wait(timeout=20)


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target on the dashboard."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def load(url: str, fleet: ServedFleet, stop: threading.Event) -> None:
    """Scores, batches and a few bad requests, until ``stop``: every service metric moves."""
    contract = WindowContract.of(fleet.state)
    frame = fleet.telemetry.sort_values(["machine_id", "cycle"])
    machine = frame[frame["machine_id"] == frame["machine_id"].iloc[0]]
    window = window_from_frame(machine.tail(fleet.state.window_length), contract)
    arrow = arrow_from_frame(frame.groupby("machine_id", observed=True).tail(30), contract)
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            client.post("/predict", json=window)
            client.post("/predict_batch", content=arrow, headers={"content-type": ARROW_STREAM})
            client.post("/predict", json={"machine_id": "m", "readings": []})  # a 400
            time.sleep(0.05)


def test_every_dashboard_query_returns_data(
    exporter: tuple[str, ServedFleet], tmp_path: Path
) -> None:
    target, fleet = exporter
    exported = httpx.get(f"http://{target}/metrics").text
    assert "pdm_warehouse_up 1.0" in exported
    assert 'pdm_landing_to_score_seconds_bucket{le="15.0"} 2.0' in exported
    env = {"PDM_MODEL_DIR": str(fleet.bundle_dir)}
    with bentoml_server(env, tmp_path) as url:
        wait_ready(url)
        service = url.removeprefix("http://")
        stop = threading.Event()
        loader = threading.Thread(target=load, args=(url, fleet, stop), daemon=True)
        loader.start()
        try:
            with prometheus_server({SERVICE_JOB: service, "pdm-fleet": target}) as prometheus:
                time.sleep(12)  # a dozen scrapes: rates over [5m] need two samples
                missing = {}
                for title, expr in panel_queries():
                    answer = httpx.get(
                        f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10
                    ).json()
                    assert answer["status"] == "success", (title, expr, answer)
                    values = [float(r["value"][1]) for r in answer["data"]["result"]]
                    if not any(math.isfinite(v) for v in values):
                        missing[title] = (expr, answer["data"]["result"])
        finally:
            stop.set()
            loader.join(timeout=30)
    assert not missing, missing
