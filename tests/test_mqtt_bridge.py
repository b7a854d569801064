"""The MQTT -> landing-zone bridge: pure parsing, and end to end against a real Mosquitto."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from paho.mqtt import client as mqtt

from pdm_core import schema
from pdm_core.landing import (
    BATCH_ID,
    LandingContract,
    batch_id,
    read_landed_file,
    split_against_existing,
    write_batch,
)
from pdm_platform.mqtt_bridge import (
    BridgeConfig,
    batch_name,
    parse_payload,
    readings_frame,
    reject_record,
)
from tests.services import mosquitto_server

REPO_ROOT = Path(__file__).resolve().parents[1]
CONTRACT = LandingContract(sensors=("vibration", "temperature"))
SENSORS = ("vibration", "temperature")


# --- pure parts ---------------------------------------------------------------------------


def test_parse_single_object() -> None:
    readings, problems = parse_payload(
        b'{"machine_id": 7, "cycle": 3.0, "vibration": 1.5, "failure_within_h": true}'
    )
    assert problems == []
    assert readings == [
        {"machine_id": "7", "cycle": 3, "vibration": 1.5, "failure_within_h": 1},
    ]


def test_parse_list_keeps_good_readings_and_names_bad_ones() -> None:
    payload = json.dumps(
        [
            {"machine_id": "M-1", "cycle": 1, "vibration": 0.1},
            {"machine_id": "M-1", "vibration": 0.2},
            "oops",
            {"machine_id": "M-2", "cycle": "12", "temperature": 70},
            {"machine_id": "", "cycle": 2},
            {"machine_id": "M-3", "cycle": -1},
            {"machine_id": "M-3", "cycle": 4, "vibration": [1, 2]},
        ]
    ).encode()
    readings, problems = parse_payload(payload)
    assert [(r["machine_id"], r["cycle"]) for r in readings] == [("M-1", 1), ("M-2", 12)]
    assert problems == [
        "reading 1: missing cycle",
        "reading 2: a reading must be a JSON object, got str",
        "reading 4: empty machine_id",
        "reading 5: cycle must be a non-negative integer, got -1",
        "reading 6: field 'vibration' holds a list, not a single value",
    ]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json {", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"42", "expected a JSON object or a list of objects, got int"),
        (b'"text"', "expected a JSON object or a list of objects, got str"),
        (b"[]", "an empty list holds no readings"),
        (b'{"cycle": 1, "vibration": 2.0}', "missing or invalid machine_id"),
        (b'{"machine_id": "M-1", "vibration": 2.0}', "missing cycle"),
        (b'{"machine_id": "M-1", "cycle": 1.5}', "cycle must be a non-negative integer"),
        (b'{"machine_id": {"a": 1}, "cycle": 1}', "missing or invalid machine_id"),
    ],
)
def test_parse_rejects_whole_message(payload: bytes, reason: str) -> None:
    readings, problems = parse_payload(payload)
    assert readings == []
    assert len(problems) == 1
    assert problems[0].startswith(reason), problems


def test_readings_frame_mixed_types_round_trip_through_the_landing_contract(
    tmp_path: Path,
) -> None:
    readings, problems = parse_payload(
        json.dumps(
            [
                {"machine_id": 1, "cycle": 1, "vibration": 1, "temperature": 70.5},
                {
                    "machine_id": "M-2",
                    "cycle": 2,
                    "vibration": "0.25",
                    "temperature": 71,
                    "timestamp": "2025-01-02T03:04:05Z",
                    "rul": 10,
                    "failure_mode": "bearing",
                },
                {"machine_id": "M-3", "cycle": 3, "vibration": None, "temperature": 72.0},
            ]
        ).encode()
    )
    assert problems == []
    frame = readings_frame(readings)
    assert list(frame.columns[:2]) == ["machine_id", "cycle"]
    assert frame["cycle"].dtype == np.int64
    assert frame["temperature"].dtype == np.float64
    assert frame["vibration"].tolist()[:2] == ["1", "0.25"]  # mixed numbers and text -> text
    path = write_batch(frame, tmp_path, batch_name(datetime(2025, 1, 2, tzinfo=UTC), 7))
    assert path.name == "mqtt-20250102T000000-000007.parquet"
    landed = read_landed_file(path, CONTRACT, max_rejected_fraction=0.5)
    assert landed.frame[["machine_id", "cycle"]].values.tolist() == [["1", 1], ["M-2", 2]]
    assert landed.frame["vibration"].tolist() == [1.0, 0.25]
    assert landed.frame["rul"].iloc[1] == 10.0
    assert landed.frame["failure_mode"].tolist() == ["unknown", "bearing"]
    assert landed.frame["timestamp"].iloc[1] == pd.Timestamp("2025-01-02 03:04:05")
    assert landed.rejects["column"].tolist() == ["vibration"]  # M-3's missing vibration


def test_reject_record_clips_and_decodes_with_replacement() -> None:
    received = datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC)
    record = reject_record("pdm/telemetry/x", b"\xff" + b"a" * 20_000, "not JSON", received)
    assert record["topic"] == "pdm/telemetry/x"
    assert record["reason"] == "not JSON"
    assert record["received"] == "2025-05-06T07:08:09.000+00:00"
    assert record["payload"].startswith("\ufffdaaa")
    assert record["payload"].endswith("...[clipped]")
    assert len(record["payload"]) < 10_100
    assert record["payload_bytes"] == 20_001
    json.dumps(record)


def test_config_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        BridgeConfig(landing_dir=tmp_path, quarantine_dir=tmp_path, batch_size=0)
    with pytest.raises(ValueError, match="client_id"):
        BridgeConfig(landing_dir=tmp_path, quarantine_dir=tmp_path, client_id="")
    assert "secret" not in repr(BridgeConfig(tmp_path, tmp_path, password="secret"))


# --- against a real broker ----------------------------------------------------------------


@pytest.fixture
def broker() -> Iterator[tuple[str, int]]:
    with mosquitto_server() as address:
        yield address


def wait_for(condition: Callable[[], bool], timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text()[-4000:] if log is not None and log.exists() else ""
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{tail}")
        time.sleep(0.05)


class Bridge:
    """The bridge as a subprocess (``python -m pdm_platform.cli.mqtt_bridge``), stderr to a file."""

    def __init__(self, address: tuple[str, int], root: Path, name: str, *options: str) -> None:
        self.log = root / f"{name}.log"
        self.out = root / f"{name}.out"
        self.landing, self.quarantine = root / "incoming", root / "quarantine"
        command = [
            sys.executable, "-m", "pdm_platform.cli.mqtt_bridge",
            "--host", address[0], "--port", str(address[1]),
            "--landing-dir", str(self.landing), "--quarantine-dir", str(self.quarantine),
            "--client-id", "test-bridge", "--max-seconds", "60", *options,
        ]  # fmt: skip
        env = {**os.environ, "PDM_HOME": str(root / "home")}
        with open(self.log, "wb") as err, open(self.out, "wb") as out:
            self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=err)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_subscribed(self) -> None:
        wait_for(lambda: "subscribed to" in self.log_text(), 20, "the subscription", self.log)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
            pytest.fail(f"the bridge did not stop on {sig}\n{self.log_text()[-4000:]}")


@pytest.fixture
def bridges() -> Iterator[list[Bridge]]:
    started: list[Bridge] = []
    yield started
    for bridge in started:
        if bridge.process.poll() is None:
            bridge.process.kill()
            bridge.process.wait(timeout=5)


class Publisher:
    """A QoS 1 publisher that waits for the broker's acknowledgement of every message."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-publisher")
        self.client.connect(*address)
        self.client.loop_start()

    def publish(self, payload: object, topic: str = "pdm/telemetry/line-1") -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        info = self.client.publish(topic, body, qos=1)
        info.wait_for_publish(timeout=5)
        assert info.is_published(), "the broker did not acknowledge a publish"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_readings(count: int, first: int = 0) -> list[dict[str, object]]:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    rng = np.random.default_rng(first)
    readings = []
    for i in range(first, first + count):
        readings.append(
            {
                "machine_id": f"M-{i % 3}",
                "cycle": i // 3,
                "timestamp": (start + timedelta(minutes=i)).isoformat(),
                "vibration": float(rng.normal(1.0, 0.1)),
                "temperature": float(rng.normal(70.0, 2.0)),
            }
        )
    return readings


def landed_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.parquet")) if directory.exists() else []


def landed_rows(directory: Path) -> int:
    return sum(len(pd.read_parquet(path)) for path in landed_files(directory))


def landed_keys(directory: Path) -> set[tuple[str, int]]:
    keys: set[tuple[str, int]] = set()
    for path in landed_files(directory):
        frame = pd.read_parquet(path, columns=["machine_id", "cycle"])
        keys.update(zip(frame["machine_id"], frame["cycle"].astype(int), strict=True))
    return keys


def ingest(directory: Path) -> tuple[pd.DataFrame, int]:
    """Reads every landed file like ingestion does; returns the distinct readings and repeats."""
    existing = pd.DataFrame()
    repeats = 0
    for path in landed_files(directory):
        data = path.read_bytes()
        landed = read_landed_file(path, CONTRACT, data=data)
        assert landed.rejects.empty, landed.rejects
        frame = landed.frame.assign(**{BATCH_ID: batch_id(path.name, data)})
        new, conflicts, redelivered = split_against_existing(frame, existing, CONTRACT.numeric)
        assert conflicts.empty, conflicts
        repeats += landed.duplicates_in_file + redelivered
        existing = pd.concat([existing, new], ignore_index=True)
    return existing, repeats


def assert_all_once(frame: pd.DataFrame, readings: list[dict[str, object]]) -> None:
    assert not frame.duplicated(["machine_id", "cycle"]).any()
    assert len(frame) == len(readings)
    got = frame.set_index(["machine_id", "cycle"])
    for reading in readings:
        row = got.loc[(reading["machine_id"], reading["cycle"])]
        for sensor in SENSORS:
            assert math.isclose(row[sensor], reading[sensor], rel_tol=0, abs_tol=0)
        expected = pd.Timestamp(reading["timestamp"]).tz_convert(None)
        assert row[schema.TIMESTAMP] == expected


def test_bridge_lands_every_reading_and_quarantines_garbage(
    broker: tuple[str, int], tmp_path: Path, bridges: list[Bridge]
) -> None:
    started = time.monotonic()
    bridge = Bridge(broker, tmp_path, "bridge", "--batch-size", "100", "--flush-seconds", "1")
    bridges.append(bridge)
    bridge.wait_subscribed()
    readings = make_readings(250)
    publisher = Publisher(broker)
    try:
        messages = 0
        for reading in readings[:100]:
            publisher.publish(reading, topic=f"pdm/telemetry/{reading['machine_id']}")
            messages += 1
        publisher.publish(b"this is not JSON {")
        position, size = 100, 1
        while position < len(readings):
            publisher.publish(readings[position : position + size])
            messages += 1
            position, size = position + size, size % 9 + 1
        publisher.publish(readings[42])  # the same reading twice
        publisher.publish({"cycle": 3, "vibration": 1.0})  # no machine id
        publisher.publish({"machine_id": "elsewhere", "cycle": 1}, topic="other/topic")
    finally:
        publisher.close()

    wait_for(lambda: landed_rows(bridge.landing) >= 251, 20, "251 landed rows", bridge.log)
    assert bridge.stop() == 0
    assert landed_rows(bridge.landing) == 251
    files = landed_files(bridge.landing)
    assert len(files) > 1
    assert all(len(pd.read_parquet(path)) <= 100 for path in files)
    assert all(path.name.startswith("mqtt-") for path in files)
    assert not list(bridge.landing.glob(".*"))  # no temporary file left behind

    frame, repeats = ingest(bridge.landing)
    assert repeats == 1
    assert_all_once(frame, readings)

    rejects = [
        json.loads(line)
        for path in bridge.quarantine.glob("mqtt-rejects-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert sorted(r["reason"].split(":")[0] for r in rejects) == [
        "missing or invalid machine_id (text or integer expected)",
        "not JSON",
    ]
    assert {r["payload"] for r in rejects} == {
        "this is not JSON {",
        json.dumps({"cycle": 3, "vibration": 1.0}),
    }
    assert all(r["topic"] == "pdm/telemetry/line-1" for r in rejects)
    summary = bridge.out.read_text().strip().splitlines()[-1]
    assert summary == (
        f"mqtt bridge: {messages + 3} messages, 251 readings, {len(files)} files, 2 rejected"
    )
    log = bridge.log_text()
    assert all(f"wrote {path}" in log for path in files)
    assert time.monotonic() - started < 30


def test_unacknowledged_readings_are_redelivered_after_a_crash(
    broker: tuple[str, int], tmp_path: Path, bridges: list[Bridge]
) -> None:
    started = time.monotonic()
    slow = ("--batch-size", "100000", "--flush-seconds", "600", "--max-unacked", "100000")
    first = Bridge(broker, tmp_path, "first", *slow, "--verbose")
    bridges.append(first)
    first.wait_subscribed()
    before, during = make_readings(40), make_readings(30, first=40)
    publisher = Publisher(broker)
    try:
        for position in range(0, len(before), 5):
            publisher.publish(before[position : position + 5])
        wait_for(lambda: "buffered=40 " in first.log_text(), 10, "40 buffered readings", first.log)
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        assert landed_files(first.landing) == []  # nothing was written, so nothing was acked
        for reading in during:  # queued by the broker in the bridge's session
            publisher.publish(reading)
    finally:
        publisher.close()

    second = Bridge(broker, tmp_path, "second", "--flush-seconds", "0.3")
    bridges.append(second)
    expected = {(r["machine_id"], r["cycle"]) for r in before + during}
    wait_for(lambda: landed_keys(second.landing) >= expected, 20, "every reading", second.log)
    assert second.stop() == 0
    assert "session present: True" in second.log_text()
    frame, _ = ingest(second.landing)
    assert_all_once(frame, before + during)
    assert time.monotonic() - started < 30
