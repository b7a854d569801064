"""HTTP tests against a running risk service (``fleet-serve``, real process, loopback).

The service starts before its model exists (it must be live but not ready), then the bundle
appears and it becomes ready. Every request rule answers 4xx naming field and rule, the
service keeps serving, and its predictions equal the pipeline's for the same windows.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from bento_service.arrow_batch import arrow_from_frame
from bento_service.convert import columns_from_window, window_from_frame
from bento_service.schemas import ARROW_STREAM, WindowContract
from pdm_core.models.tree_export import PARITY
from tests.service_fixtures import (
    REPO,
    ServedFleet,
    bentoml_server,
    build_served_fleet,
    wait_ready,
)


@dataclass
class Service:
    url: str
    fleet: ServedFleet
    contract: WindowContract
    before: dict[str, int]
    log: Path


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("service")
    fleet = build_served_fleet(home / "trained")
    model_dir = home / "model"  # does not exist yet: the service waits for it
    env = {
        "PDM_MODEL_DIR": str(model_dir),
        "PDM_SERVE_LOAD_RETRY_S": "0.3",
        "PDM_SERVE_MAX_BODY_MB": "1",
    }
    with bentoml_server(env, home) as url:
        window = window_from_frame(fleet.telemetry.head(60), WindowContract.of(fleet.state))
        before = {
            "livez": httpx.get(f"{url}/livez").status_code,
            "readyz": httpx.get(f"{url}/readyz").status_code,
            "predict": httpx.post(f"{url}/predict", json=window).status_code,
            "model_info": httpx.get(f"{url}/model_info").status_code,
            "predict_batch_arrow": httpx.post(
                f"{url}/predict_batch",
                content=arrow_from_frame(fleet.telemetry.head(60), WindowContract.of(fleet.state)),
                headers={"content-type": ARROW_STREAM},
            ).status_code,
        }
        shutil.copytree(fleet.bundle_dir, home / "staging")
        (home / "staging").rename(model_dir)
        wait_ready(url)
        # At once after readiness, while the worker still imports pyarrow in the background
        # (this once raced the request's own import: a 500).
        before["first_arrow_batch_when_ready"] = httpx.post(
            f"{url}/predict_batch",
            content=arrow_from_frame(fleet.telemetry.head(60), WindowContract.of(fleet.state)),
            headers={"content-type": ARROW_STREAM},
        ).status_code
        log = home / f"bentoml-{url.rsplit(':', 1)[1]}.log"  # bentoml_server's
        yield Service(url, fleet, WindowContract.of(fleet.state), before, log)


def machine_window(service: Service, machine: str, end: int, length: int | None = None) -> dict:
    telemetry = service.fleet.telemetry
    rows = telemetry[(telemetry["machine_id"] == machine) & (telemetry["cycle"] <= end)]
    return window_from_frame(rows.tail(length or service.contract.window_length), service.contract)


def post(service: Service, path: str, body) -> httpx.Response:
    if isinstance(body, (bytes, str)):
        return httpx.post(
            service.url + path, content=body, headers={"content-type": "application/json"}
        )
    return httpx.post(service.url + path, json=body, timeout=60)


def test_live_before_the_model_arrives_ready_after(service: Service) -> None:
    assert service.before == {
        "livez": 200, "readyz": 503, "predict": 503, "model_info": 503, "predict_batch_arrow": 503,
        "first_arrow_batch_when_ready": 200,
    }  # fmt: skip
    assert httpx.get(f"{service.url}/readyz").status_code == 200


def test_predict_returns_every_field(service: Service) -> None:
    response = post(service, "/predict", machine_window(service, "M003", 500))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["machine_id"] == "M003"
    assert 0.0 <= body["failure_probability"] <= 1.0
    assert body["risk_level"] in {"LOW", "MEDIUM", "HIGH", "CRITICAL"}
    assert body["rul"] >= 0 and body["anomaly_score"] >= 0
    assert isinstance(body["anomaly_alert"], bool)
    assert body["model_name"] == "pdm-fleet-model" and body["model_version"] == "local"
    # No tracing span by default (PDM_SERVE_TRACING=1 brings BentoML's back, and this header).
    assert "x-bentoml-request-id" not in response.headers


def test_service_predictions_equal_the_pipeline_rows(service: Service) -> None:
    """Parity: same window -> same features (pipeline code) -> same outputs within 1e-5 of
    their scale (RUL: its cap; the served trees sum in float32, see tree_export)."""
    fleet = service.fleet
    rul_abs = PARITY * fleet.model.components["rul_regressor"].extra["rul_cap"]
    ends = [("M001", 200), ("M004", 651), ("M007", 899), ("M010", 35)]
    for machine, end in ends:
        got = post(service, "/predict", machine_window(service, machine, end, length=80)).json()
        row = fleet.features[
            (fleet.features["machine_id"] == machine) & (fleet.features["cycle"] == end)
        ]
        want = fleet.model.predict(row.reset_index(drop=True)).iloc[0]
        assert got["failure_probability"] == pytest.approx(want["failure_probability"], abs=1e-5)
        assert got["rul"] == pytest.approx(want["rul"], abs=rul_abs)
        assert got["anomaly_score"] == pytest.approx(want["anomaly_score"], abs=1e-5)
        assert got["risk_level"] == want["risk_level"]
        for bound in ("rul_lower", "rul_upper"):
            assert got[bound] == pytest.approx(want[bound], abs=rul_abs)
        assert got["rul_lower"] <= got["rul"] <= got["rul_upper"]


def test_batch_scores_many_machines_in_request_order(service: Service) -> None:
    machines = [f"M{i:03d}" for i in (9, 2, 14, 0, 5)]
    windows = [machine_window(service, m, 400 + 10 * i) for i, m in enumerate(machines)]
    response = post(service, "/predict_batch", {"machines": windows})
    assert response.status_code == 200, response.text
    batch = response.json()["predictions"]
    assert [p["machine_id"] for p in batch] == machines
    for window, predicted in zip(windows, batch, strict=True):
        single = post(service, "/predict", window).json()
        assert predicted["failure_probability"] == pytest.approx(
            single["failure_probability"], abs=1e-9
        )


def _concurrent_predicts_match_alone(service: Service, url: str) -> tuple[float, float]:
    """Sends 12 windows one at a time, then 4 rounds of the 12 plus a broken window all at
    once; each concurrent answer must equal the one alone (the broken ones: 400).

    Returns:
        ``(windows, calls)`` of ``pdm_predict_coalesced_windows`` from ``url``'s ``/metrics``.
    """
    machines = [f"M{i:03d}" for i in range(12)]
    windows = [machine_window(service, m, 300 + 25 * i) for i, m in enumerate(machines)]
    alone = [httpx.post(f"{url}/predict", json=w, timeout=60).json() for w in windows]
    rul_abs = PARITY * service.fleet.model.components["rul_regressor"].extra["rul_cap"]

    async def together() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            rounds = [[*windows, _bad(service, RULES[0][1])] for _ in range(4)]
            sent = [client.post("/predict", json=body) for bodies in rounds for body in bodies]
            return await asyncio.gather(*sent)

    answers = asyncio.run(together())
    for index, response in enumerate(answers):
        if index % (len(windows) + 1) == len(windows):  # the broken window of each round
            assert response.status_code == 400, response.text
            continue
        assert response.status_code == 200, response.text
        want = alone[index % (len(windows) + 1)]
        got = response.json()
        assert got["machine_id"] == want["machine_id"]
        # float32 sums differ in the last bits with the batch's size: the parity bound holds
        assert got["failure_probability"] == pytest.approx(want["failure_probability"], abs=1e-5)
        assert got["anomaly_score"] == pytest.approx(want["anomaly_score"], rel=1e-5)
        assert got["rul"] == pytest.approx(want["rul"], abs=rul_abs)
        assert got["risk_level"] == want["risk_level"]
    lines = httpx.get(f"{url}/metrics").text.splitlines()

    def total(name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name))

    return total("pdm_predict_coalesced_windows_sum"), total("pdm_predict_coalesced_windows_count")


def test_concurrent_predicts_get_their_own_answers(service: Service) -> None:
    """/predict requests in flight together (scored together: ``bento_service.coalesce``)
    each get the answer they get alone, and a broken one its own 400."""
    windows, calls = _concurrent_predicts_match_alone(service, service.url)
    assert calls < windows


@pytest.mark.parametrize("coalesce", ["1", "0"], ids=["coalescing", "each alone"])
def test_coalescing_counts_windows_per_call_and_can_be_turned_off(
    service: Service, tmp_path: Path, coalesce: str
) -> None:
    """On a fresh server, 60 windows reach the model in fewer calls than windows (the 12 sent
    one at a time take a call each); with ``PDM_SERVE_COALESCE=0`` none is coalesced."""
    env = {"PDM_MODEL_DIR": str(service.fleet.bundle_dir), "PDM_SERVE_COALESCE": coalesce}
    with bentoml_server(env, tmp_path) as url:
        wait_ready(url)
        windows, calls = _concurrent_predicts_match_alone(service, url)
    if coalesce == "0":
        assert (windows, calls) == (0, 0)
    else:
        assert windows == 12 + 4 * 12  # the broken windows fail validation, before scoring
        assert 12 < calls < windows


def test_the_columnar_form_gives_the_same_answers(service: Service) -> None:
    """``columns`` (one list per field) is the same window as ``readings``: same outputs."""
    machines = [f"M{i:03d}" for i in (3, 8, 12)]
    rows = [machine_window(service, m, 500 + 7 * i, length=45) for i, m in enumerate(machines)]
    columns = [columns_from_window(w) for w in rows]
    batch = post(service, "/predict_batch", {"machines": columns})
    assert batch.status_code == 200, batch.text
    for window, compact, answer in zip(rows, columns, batch.json()["predictions"], strict=True):
        single = post(service, "/predict", compact)
        assert single.status_code == 200, single.text
        want = post(service, "/predict", window).json()
        assert single.json() == want
        assert answer["machine_id"] == want["machine_id"]
        assert answer["failure_probability"] == pytest.approx(
            want["failure_probability"], abs=1e-12
        )
    ragged = columns_from_window(rows[0])
    ragged["columns"]["sensors"]["vibration"].pop()
    response = post(service, "/predict", ragged)
    assert response.status_code == 400
    assert response.json()["detail"][0]["type"] == "ragged_columns"


def _bad(service: Service, mutate) -> dict:
    body = machine_window(service, "M002", 300)
    mutate(body)
    return body


RULES = [
    ("missing_sensor", lambda b: b["readings"][3]["sensors"].pop("vibration")),
    ("unknown_sensor", lambda b: b["readings"][0]["sensors"].update(oil_quality=3.0)),
    ("window_too_short", lambda b: b["readings"].__delitem__(slice(5, None))),
    ("unsorted", lambda b: b["readings"].reverse()),
    ("duplicate_time", lambda b: b["readings"][4].update(cycle=b["readings"][3]["cycle"])),
    ("ordering_key", lambda b: b["readings"][2].pop("cycle")),
    ("float_parsing", lambda b: b["readings"][1]["sensors"].update(vibration="high")),
    ("int_parsing", lambda b: b["readings"][1].update(cycle="later")),
    ("extra_forbidden", lambda b: b.update(priority="urgent")),
    ("missing", lambda b: b.pop("machine_id")),
    ("less_than_equal", lambda b: b["readings"][1]["sensors"].update(vibration=1e300)),
    ("too_short", lambda b: b.update(readings=[])),
]


@pytest.mark.parametrize(("rule", "mutate"), RULES, ids=[r for r, _ in RULES])
def test_each_rule_answers_400_naming_field_and_rule(service: Service, rule, mutate) -> None:
    response = post(service, "/predict", _bad(service, mutate))
    assert response.status_code == 400, response.text
    detail = response.json()["detail"][0]
    assert detail["type"] == rule
    assert detail["loc"] or "readings" in detail["msg"]


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (b"", "missing"),  # BentoML reads an empty body as {}
        (b"{not json", "json_invalid"),
        (b"[1, 2, 3]", "model_type"),
        ("NaN", "model_type"),
    ],
)
def test_malformed_bodies_answer_400(service: Service, body, rule: str) -> None:
    response = post(service, "/predict", body)
    assert response.status_code == 400
    assert response.json()["detail"][0]["type"] == rule


def test_a_rejected_request_logs_one_line_naming_its_rules_not_a_traceback(
    service: Service,
) -> None:
    start = service.log.stat().st_size
    bad = _bad(service, lambda b: b["readings"][1]["sensors"].update(vibration="high"))
    assert post(service, "/predict", bad).status_code == 400
    assert post(service, "/predict", b"{not json").status_code == 400
    lines: list[str] = []
    deadline = time.monotonic() + 10
    while len(lines) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        with service.log.open() as f:
            f.seek(start)
            lines = [line for line in f.read().splitlines() if line.strip()]
    assert any("Rejected /predict [POST] with 400: float_parsing" in line for line in lines)
    assert any("Rejected /predict [POST] with 400: json_invalid" in line for line in lines)
    assert len(lines) == 2, lines  # no traceback lines, nothing else
    assert all("[INFO]" in line for line in lines), lines


def test_nan_and_infinite_readings_answer_400(service: Service) -> None:
    for literal in ("NaN", "Infinity", "-Infinity"):
        body = json.loads(json.dumps(machine_window(service, "M002", 300)))
        body["readings"][2]["sensors"]["temperature"] = "__X__"
        text = json.dumps(body).replace('"__X__"', literal)
        response = post(service, "/predict", text)
        assert response.status_code == 400, (literal, response.text)
        assert response.json()["detail"][0]["type"] == "finite_number"


def test_oversized_payload_answers_413_and_service_keeps_serving(service: Service) -> None:
    window = machine_window(service, "M002", 300)
    big = {"machines": [{**window, "machine_id": f"m{i}"} for i in range(400)]}  # > 1 MB
    response = post(service, "/predict_batch", big)
    assert response.status_code == 413
    assert response.json()["detail"][0]["type"] == "payload_too_large"
    assert post(service, "/predict", window).status_code == 200


def test_batch_rules(service: Service) -> None:
    window = machine_window(service, "M002", 300)
    duplicate = post(service, "/predict_batch", {"machines": [window, window]})
    assert duplicate.status_code == 400
    assert duplicate.json()["detail"][0]["type"] == "duplicate_machine"
    empty = post(service, "/predict_batch", {"machines": []})
    assert empty.status_code == 400 and empty.json()["detail"][0]["type"] == "too_short"


def arrow_post(service: Service, body: bytes, media: str = ARROW_STREAM) -> httpx.Response:
    return httpx.post(
        f"{service.url}/predict_batch", content=body, headers={"content-type": media}, timeout=60
    )


def recent_rows(service: Service, machines: list[str], end: int = 500) -> list[pd.DataFrame]:
    telemetry = service.fleet.telemetry
    return [
        telemetry[(telemetry["machine_id"] == m) & (telemetry["cycle"] <= end)].tail(45)
        for m in machines
    ]


def test_the_arrow_form_gives_the_json_form_s_answers(service: Service) -> None:
    """The fleet's readings as one Arrow table: the same predictions, in first-seen order."""
    frames = recent_rows(service, ["M006", "M001", "M011", "M003"])
    response = arrow_post(service, arrow_from_frame(pd.concat(frames), service.contract))
    assert response.status_code == 200, response.text
    windows = [window_from_frame(frame, service.contract) for frame in frames]
    assert response.json() == post(service, "/predict_batch", {"machines": windows}).json()


@pytest.mark.parametrize(
    ("change", "rule", "loc"),
    [
        (lambda f: f.drop(columns="vibration"), "missing_sensor", ["body", "vibration"]),
        (lambda f: f.iloc[[*range(10), 11, 10, *range(12, len(f))]], "unsorted",
         ["body", "cycle", 11]),
        (lambda f: f.assign(temperature=f["temperature"].where(f.index != f.index[50], np.inf)),
         "finite_number", ["body", "temperature", 50]),
        (lambda f: f.iloc[:20], "window_too_short", ["body", "machine_id", 0]),
    ],
    ids=["missing_sensor", "unsorted", "finite_number", "window_too_short"],
)  # fmt: skip
def test_arrow_rules_answer_400_naming_column_and_row(service: Service, change, rule, loc) -> None:
    frame = change(pd.concat(recent_rows(service, ["M002", "M007"])))
    response = arrow_post(service, arrow_from_frame(frame, service.contract))
    assert response.status_code == 400, response.text
    detail = response.json()["detail"][0]
    assert (detail["type"], detail["loc"]) == (rule, loc), detail
    assert (
        arrow_post(service, arrow_from_frame(frame.iloc[:0], service.contract)).status_code == 400
    )


def test_arrow_garbage_oversize_and_readiness(service: Service) -> None:
    garbage = arrow_post(service, b"not arrow at all")
    assert garbage.status_code == 400
    assert garbage.json()["detail"][0]["type"] == "invalid_arrow"
    big = arrow_post(service, b"\0" * (2**20 + 1))  # the fixture's 1 MB limit
    assert big.status_code == 413
    assert big.json()["detail"][0]["type"] == "payload_too_large"
    as_file = arrow_post(service, b"ARROW1", "application/vnd.apache.arrow.file")
    assert as_file.status_code == 400 and "Arrow IPC file" in as_file.json()["error"]
    text = httpx.get(f"{service.url}/metrics").text
    assert 'pdm_rejected_requests_total{endpoint="predict_batch",reason="invalid_arrow"}' in text
    good = arrow_from_frame(pd.concat(recent_rows(service, ["M004"])), service.contract)
    assert arrow_post(service, good).status_code == 200  # still serving
    assert (
        httpx.post(
            f"{service.url}/predict", content=good, headers={"content-type": ARROW_STREAM}
        ).status_code
        == 415
    )  # only the batch endpoint takes Arrow


def test_wrong_method_and_unknown_path_are_4xx(service: Service) -> None:
    assert httpx.get(f"{service.url}/predict").status_code in (404, 405)
    assert httpx.post(f"{service.url}/nope", json={}).status_code == 404


def test_model_info(service: Service) -> None:
    info = httpx.get(f"{service.url}/model_info").json()
    state = service.fleet.state
    assert info["model_name"] == "pdm-fleet-model"
    assert info["training_data_version"] == "test-data-v1"
    # A derived sensor is computed by the service: clients send its inputs, not it.
    assert "electrical_load" in state.sensors
    assert info["required_sensors"] == list(state.input_sensors)
    assert "electrical_load" not in info["required_sensors"] + info["accepted_sensors"]
    assert info["derived_sensors"] == {"electrical_load": "motor_current * rotational_speed / 1000"}
    assert info["window_length"] == state.window_length
    assert info["risk_thresholds"] == {"medium": 0.2, "high": 0.5, "critical": 0.8}
    assert info["rul_interval_level"] == 0.9
    assert info["anomaly_threshold"] > 0
    assert set(info["components"]) == {"risk_classifier", "rul_regressor", "anomaly_detector"}


def test_openapi_lists_the_endpoints(service: Service) -> None:
    spec = httpx.get(f"{service.url}/docs.json").json()
    for path in ("/predict", "/predict_batch"):
        assert "post" in spec["paths"][path]
    content = spec["paths"]["/predict_batch"]["post"]["requestBody"]["content"]
    assert {"application/json", ARROW_STREAM} <= set(content)


def test_metrics_count_predictions_rejections_latency_and_model(service: Service) -> None:
    post(service, "/predict", machine_window(service, "M005", 700))
    post(service, "/predict", _bad(service, RULES[0][1]))
    text = httpx.get(f"{service.url}/metrics").text
    lines = text.splitlines()

    def value(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))

    assert value("pdm_predictions_total{") >= 1
    assert value('pdm_rejected_requests_total{endpoint="predict",reason="missing_sensor"}') >= 1
    assert value('pdm_prediction_latency_seconds_count{endpoint="predict"}') >= 1
    assert any(
        line.startswith("pdm_model_info{") and 'model_name="pdm-fleet-model"' in line
        for line in lines
    )


def test_anomaly_score_rises_on_a_broken_sensor(service: Service) -> None:
    """A sanity check of the served autoencoder: a sensor stuck far off raises the score."""
    window = machine_window(service, "M006", 300)
    normal = post(service, "/predict", window).json()["anomaly_score"]
    for reading in window["readings"]:
        reading["sensors"]["temperature"] += 40.0
    broken = post(service, "/predict", window).json()["anomaly_score"]
    assert np.isfinite(broken) and broken > 2 * normal


def test_other_media_types_answer_415(service: Service) -> None:
    for media in ("multipart/form-data", "text/plain", "application/xml"):
        response = httpx.post(
            f"{service.url}/predict", content=b"{}", headers={"content-type": media}
        )
        assert response.status_code == 415, (media, response.text)
        assert response.json()["detail"][0]["type"] == "unsupported_media_type"


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    service: Service, tmp_path: Path
) -> None:
    """Property-based run over the service's own OpenAPI document (fixed seed)."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"), "run", f"{service.url}/docs.json",
        "--checks", "not_a_server_error,response_schema_conformance",
        "--max-examples", "100", "--seed", "1",
        "--report", "junit", "--report-dir", str(tmp_path),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:]
    assert " passed" in run.stdout and "failures" not in run.stdout.split("Test cases:")[-1]
    assert httpx.get(f"{service.url}/readyz").status_code == 200  # still serving


def listening_sockets(port: int) -> dict[str, set[int]]:
    """Each listening socket on ``port`` (by inode) and the processes that hold it."""
    import psutil

    held: dict[str, set[int]] = {}
    for process in psutil.process_iter():
        try:
            for c in process.net_connections(kind="tcp"):
                if c.status == "LISTEN" and c.laddr.port == port:
                    inode = os.readlink(f"/proc/{process.pid}/fd/{c.fd}")
                    held.setdefault(inode, set()).add(process.pid)
        except psutil.Error:  # another user's process, or one that has exited
            continue
    return held


def connections_held(pids: set[int], port: int) -> dict[int, int]:
    """Established connections to ``port`` held by each of ``pids``."""
    import psutil

    return {
        pid: sum(
            1
            for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.status == "ESTABLISHED" and c.laddr.port == port
        )
        for pid in pids
    }


@pytest.mark.parametrize("shared", [False, True], ids=["socket per worker", "one shared socket"])
def test_each_worker_listens_on_its_own_socket_and_gets_connections(
    service: Service, tmp_path: Path, shared: bool
) -> None:
    """``fleet-serve`` gives each of two workers its own listening socket on the one port, and
    64 new connections reach both workers; ``PDM_SERVE_SHARED_SOCKET=1`` keeps BentoML's one
    socket, held by the supervisor and both workers."""
    env = {"PDM_MODEL_DIR": str(service.fleet.bundle_dir), "PDM_SERVE_WORKERS": "2"}
    if shared:
        env["PDM_SERVE_SHARED_SOCKET"] = "1"
    with bentoml_server(env, tmp_path) as url:
        wait_ready(url)
        port = int(url.rsplit(":", 1)[1])
        listening = listening_sockets(port)
        holders = [pids for pids in listening.values()]
        clients = [httpx.Client(base_url=url, timeout=30) for _ in range(64)]
        try:
            assert all(c.get("/livez").status_code == 200 for c in clients)  # each holds one
            workers = set().union(*holders)
            if shared:
                assert len(listening) == 1 and len(holders[0]) == 3  # supervisor + 2 workers
                import psutil

                workers = {p for p in workers if psutil.Process(p).parent().pid in workers}
            else:
                assert len(listening) == 2 and all(len(pids) == 1 for pids in holders)
            held = connections_held(workers, port)
            assert len(held) == 2 and sum(held.values()) == 64, held
            if not shared:  # by the kernel's hash of the addresses: all 64 on one is 2**-63
                assert min(held.values()) > 0, held
            said = "binds its own socket" in (tmp_path / f"bentoml-{port}.log").read_text()
            assert said is not shared  # the start-up log says which arrangement is in effect
        finally:
            for client in clients:
                client.close()


def _predictions_counted(url: str) -> float:
    lines = httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
    counted = [ln for ln in lines if ln.startswith("pdm_predictions_total{")]
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in counted)


def test_a_second_server_on_the_same_home_leaves_the_first_s_metrics(
    service: Service, tmp_path: Path
) -> None:
    """BentoML empties ``$BENTOML_HOME/prometheus_multiproc_dir`` whenever a server starts;
    ``fleet-serve`` gives each server a directory of its own, so a second server on the same
    home does not wipe what the first one's ``/metrics`` counted."""
    env = {"PDM_MODEL_DIR": str(service.fleet.bundle_dir)}
    with bentoml_server(env, tmp_path) as first:
        wait_ready(first)
        for end in (400, 500, 600):
            body = machine_window(service, "M003", end)
            assert httpx.post(f"{first}/predict", json=body, timeout=60).status_code == 200
        counted = _predictions_counted(first)
        assert counted == 3
        with bentoml_server(env, tmp_path) as second:
            wait_ready(second)
            assert _predictions_counted(second) == 0
            assert _predictions_counted(first) == counted


def test_bad_gc_thresholds_stop_the_server_at_start_naming_the_variable(
    service: Service, tmp_path: Path
) -> None:
    env = {"PDM_MODEL_DIR": str(service.fleet.bundle_dir), "PDM_SERVE_GC_THRESHOLDS": "fast"}
    failed = pytest.raises(RuntimeError, match="PDM_SERVE_GC_THRESHOLDS must be three")
    with failed, bentoml_server(env, tmp_path):
        pass


def test_a_broken_model_keeps_the_service_live_and_never_ready(
    service: Service, tmp_path: Path
) -> None:
    """A bundle that fails to load: live, not ready, predictions 503; no crash loop."""
    broken = tmp_path / "broken"
    shutil.copytree(service.fleet.bundle_dir, broken)
    (broken / "feature_state.json").write_text("{not json")
    with bentoml_server({"PDM_MODEL_DIR": str(broken)}, tmp_path) as url:
        time.sleep(3)
        assert httpx.get(f"{url}/livez").status_code == 200
        assert httpx.get(f"{url}/readyz").status_code == 503
        window = machine_window(service, "M002", 300)
        assert httpx.post(f"{url}/predict", json=window).status_code == 503


def test_the_serving_path_imports_no_training_library(service: Service, tmp_path: Path) -> None:
    """Workers load, self-test and score (JSON and Arrow) with numpy, scipy, pyarrow and ONNX
    Runtime only: no pandas, scikit-learn, TensorFlow, MLflow or Dagster (each would add
    seconds to a cold start)."""
    body = arrow_from_frame(pd.concat(recent_rows(service, ["M001", "M002"])), service.contract)
    (tmp_path / "batch.arrows").write_bytes(body)
    code = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "import bento_service.service\n"
        "from bento_service.scoring import ServedModel\n"
        f"bundle = Path({str(service.fleet.bundle_dir)!r})\n"
        "model = ServedModel.from_bundle(bundle, name='m', version='1')\n"
        "model.self_test()\n"
        "from bento_service.arrow_batch import STREAM, read_batch\n"
        f"batch = read_batch(Path({str(tmp_path / 'batch.arrows')!r}).read_bytes(), STREAM,"
        " model.contract)\n"
        "assert len(model.predict_arrays(batch.machine_ids, batch.arrays)) == 2\n"
        "heavy = ('pandas', 'sklearn', 'joblib', 'tensorflow', 'keras', 'mlflow', 'dagster')\n"
        "print(json.dumps(sorted({k.split('.')[0] for k in sys.modules} & set(heavy))))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PDM_MODEL_DIR"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


# ----------------------------------------------------------------------------------------------
# Bearer tokens (PDM_SERVE_TOKENS_DIR): a second server on the same model, tokens in files as a
# mounted Kubernetes Secret lays them out.

TOKEN_A, TOKEN_B, TOKEN_C = (
    "tok-a-8f14e45fceea167a5a36",
    "tok-b-c9f0f895fb98ab91",
    "tok-c-45c48cce2e2d7fbd",
)


@pytest.fixture(scope="module")
def guarded(service: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    home = tmp_path_factory.mktemp("guarded")
    tokens = home / "tokens"
    (tokens / "..2026_12_06_data").mkdir(parents=True)  # a Secret volume's hidden entries
    (tokens / "a").write_text(TOKEN_A + "\n")
    (tokens / "b").write_text(TOKEN_B)
    (tokens / ".hidden").write_text(TOKEN_C)
    env = {
        "PDM_MODEL_DIR": str(service.fleet.bundle_dir),
        "PDM_SERVE_TOKENS_DIR": str(tokens),
        "PDM_SERVE_TOKENS_RELOAD_S": "0.5",
    }
    with bentoml_server(env, home) as url:
        wait_ready(url)
        log = home / f"bentoml-{url.rsplit(':', 1)[1]}.log"
        yield {"url": url, "tokens": tokens, "log": log}


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_tokens_guard_every_path_but_probes_and_metrics(service: Service, guarded: dict) -> None:
    url, window = guarded["url"], machine_window(service, "M001", 400)
    for path in ("/livez", "/readyz", "/metrics"):
        assert httpx.get(url + path).status_code == 200, path
    for headers, reason in (
        ({}, "no bearer token"),
        ({"authorization": f"Basic {TOKEN_A}"}, "no bearer token"),
        (_bearer("tok-a-wrong"), "unknown bearer token"),
        (_bearer(TOKEN_C), "unknown bearer token"),  # a hidden file holds no token
    ):
        answer = httpx.post(f"{url}/predict", json=window, headers=headers)
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.json()["detail"] == [
            {"type": "unauthorized", "loc": ["authorization"], "msg": reason}
        ]
    assert httpx.get(f"{url}/model_info").status_code == 401
    assert httpx.get(f"{url}/docs.json").status_code == 401
    expected = post(service, "/predict", window).json()
    for token in (TOKEN_A, TOKEN_B):  # two tokens valid at once; the scheme is case-blind
        answer = httpx.post(
            f"{url}/predict", json=window, headers={"authorization": f"bearer {token}"}
        )
        assert answer.status_code == 200 and answer.json() == expected
    metrics = httpx.get(f"{url}/metrics").text
    assert 'pdm_rejected_requests_total{endpoint="predict",reason="unauthorized"}' in metrics
    logged = guarded["log"].read_text()
    assert "401 POST /predict: unknown bearer token" in logged
    assert "tok-a-wrong" not in logged and TOKEN_A not in logged and TOKEN_C not in logged


def test_tokens_rotate_without_a_restart(service: Service, guarded: dict) -> None:
    url, tokens = guarded["url"], guarded["tokens"]
    window = machine_window(service, "M002", 300)
    (tokens / "c").write_text(TOKEN_C)  # a new token is added...
    (tokens / "a").unlink()  # ...and an old one removed
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        new = httpx.post(f"{url}/predict", json=window, headers=_bearer(TOKEN_C)).status_code
        old = httpx.post(f"{url}/predict", json=window, headers=_bearer(TOKEN_A)).status_code
        if (new, old) == (200, 401):
            break
        time.sleep(0.2)
    assert (new, old) == (200, 401)
    assert httpx.post(f"{url}/predict", json=window, headers=_bearer(TOKEN_B)).status_code == 200
