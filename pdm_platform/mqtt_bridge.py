"""The MQTT bridge: MQTT telemetry into the landing zone as Parquet micro-batches.

Run as ``fleet-mqtt-bridge`` (:mod:`pdm_platform.cli.mqtt_bridge`).

The bridge subscribes to a topic (default ``pdm/telemetry/#``) and buffers the readings of
each message. A message is JSON: one reading object or a list of them, with the landing
contract's columns (``machine_id``, ``cycle``, the sensors, optionally ``timestamp``,
``regime``, ``time_since_maintenance``, ``rul``, ``failure_within_h``, ``failure_mode``).
The buffer is written with :func:`pdm_core.landing.write_batch` (temporary name, fsync,
rename) as ``mqtt-<UTC yyyymmddTHHMMSS>-<seq>.parquet`` when it holds ``batch_size`` readings,
when ``max_unacked`` messages wait for their acknowledgement, or ``flush_seconds`` after its
first reading, whichever comes first.

Delivery is at least once. The client uses a fixed client id with a persistent session
(MQTT v3.1.1, ``clean_session=False``) and paho's ``manual_ack``: a QoS 1 message is
acknowledged only after the file holding its readings is durably written. If the bridge dies
before that, the broker keeps the message in the session and delivers it again when the
bridge reconnects under the same client id. A reading can therefore land twice; ingestion
removes the repeats (exact duplicates inside a file, and
:func:`pdm_core.landing.split_against_existing` across files), so the warehouse holds it once.

A message that cannot be used (not JSON, not an object or a list of objects, a reading
without ``machine_id`` or ``cycle``) never stops the bridge: it is appended with its reason to
``<quarantine>/mqtt-rejects-<YYYYMMDD>.jsonl`` and then acknowledged.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from paho.mqtt import client as mqtt

from pdm_core import schema
from pdm_core.landing import write_batch

log = logging.getLogger(__name__)

PASSWORD_ENV = "PDM_MQTT_PASSWORD"
"""Environment variable holding the broker password (never a command-line flag)."""
PAYLOAD_CLIP = 10_000
"""Characters of a rejected payload kept in the quarantine file."""
_MAX_CYCLE = 2**62
_TICK = 0.25
"""Longest wait of one network-loop pass, seconds (bounds the reaction to a stop request)."""


@dataclass(frozen=True)
class BridgeConfig:
    """Settings of the bridge.

    Attributes:
        landing_dir: The landing zone's incoming directory (micro-batches go here).
        quarantine_dir: Where rejected messages are appended (``mqtt-rejects-<date>.jsonl``).
        host: Broker host.
        port: Broker port.
        topic: Topic filter subscribed to.
        qos: Subscription QoS (1 for at-least-once; 0 gives at-most-once).
        client_id: Fixed client id: the broker keeps this client's session and unacknowledged
            messages while the bridge is down. Run one bridge per client id.
        batch_size: Readings that trigger a flush.
        flush_seconds: Longest time a buffered reading waits before its file is written.
        max_unacked: Messages awaiting acknowledgement that trigger a flush. The broker stops
            sending after its own in-flight limit of unacknowledged messages (Mosquitto's
            ``max_inflight_messages``, default 20); keep this at or below it, or the bridge
            only advances every ``flush_seconds``.
        username: Broker user name, if the broker wants one.
        password: Broker password (read from ``PDM_MQTT_PASSWORD`` by the CLI).
        keepalive: MQTT keep-alive, seconds.
    """

    landing_dir: Path
    quarantine_dir: Path
    host: str = "localhost"
    port: int = 1883
    topic: str = "pdm/telemetry/#"
    qos: int = 1
    client_id: str = "pdm-landing-bridge"
    batch_size: int = 500
    flush_seconds: float = 5.0
    max_unacked: int = 20
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive: int = 30

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if not self.flush_seconds > 0:
            raise ValueError(f"flush_seconds must be positive, got {self.flush_seconds}")
        if self.max_unacked < 1:
            raise ValueError(f"max_unacked must be at least 1, got {self.max_unacked}")
        if self.qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1, got {self.qos}")
        if not self.client_id:
            raise ValueError("a persistent session needs a non-empty client_id")


@dataclass
class BridgeStats:
    """Counters of one bridge run.

    Attributes:
        messages: Messages received (including rejected and redelivered ones).
        readings: Readings written to landing files.
        files: Landing files written.
        rejected: Records appended to the quarantine file (a whole message, or one reading of
            a list).
    """

    messages: int = 0
    readings: int = 0
    files: int = 0
    rejected: int = 0

    def summary(self) -> str:
        """One line for the end of a run."""
        return (
            f"mqtt bridge: {self.messages} messages, {self.readings} readings, "
            f"{self.files} files, {self.rejected} rejected"
        )


# --- pure parts -------------------------------------------------------------------------


def _cycle(value: Any) -> int | None:
    """A non-negative integer cycle from a JSON value, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 0 <= value < _MAX_CYCLE:
        return value
    return None


def parse_reading(item: Any) -> tuple[dict[str, Any] | None, str | None]:
    """Checks one reading object of a message.

    Args:
        item: A decoded JSON value.

    Returns:
        ``(reading, None)`` with ``machine_id`` as text, ``cycle`` as int and booleans as 0/1;
        or ``(None, reason)``.
    """
    if not isinstance(item, dict):
        return None, f"a reading must be a JSON object, got {type(item).__name__}"
    machine = item.get(schema.MACHINE)
    if machine is None or isinstance(machine, bool) or not isinstance(machine, (str, int)):
        return None, f"missing or invalid {schema.MACHINE} (text or integer expected)"
    machine = str(machine).strip()
    if not machine:
        return None, f"empty {schema.MACHINE}"
    if schema.CYCLE not in item:
        return None, f"missing {schema.CYCLE}"
    cycle = _cycle(item[schema.CYCLE])
    if cycle is None:
        return None, f"{schema.CYCLE} must be a non-negative integer, got {item[schema.CYCLE]!r}"
    reading: dict[str, Any] = {schema.MACHINE: machine, schema.CYCLE: cycle}
    for key, value in item.items():
        if key in reading:
            continue
        if isinstance(value, (dict, list)):
            return None, f"field {key!r} holds a {type(value).__name__}, not a single value"
        reading[key] = int(value) if isinstance(value, bool) else value
    return reading, None


def parse_payload(payload: bytes | bytearray) -> tuple[list[dict[str, Any]], list[str]]:
    """Turns a message payload into readings.

    Args:
        payload: The message body: a JSON object (one reading) or a list of objects.

    Returns:
        ``(readings, problems)``: the good readings, and one reason per unusable part (the
        whole message, or ``"reading <i>: ..."`` for one element of a list). Never raises.
    """
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError
        return [], [f"not JSON: {error}"]
    if isinstance(data, dict):
        reading, problem = parse_reading(data)
        return ([reading], []) if reading is not None else ([], [problem or "bad reading"])
    if not isinstance(data, list):
        return [], [f"expected a JSON object or a list of objects, got {type(data).__name__}"]
    if not data:
        return [], ["an empty list holds no readings"]
    readings, problems = [], []
    for index, item in enumerate(data):
        reading, problem = parse_reading(item)
        if reading is not None:
            readings.append(reading)
        else:
            problems.append(f"reading {index}: {problem}")
    return readings, problems


def readings_frame(readings: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The buffered readings as a frame in the landing contract's columns.

    ``machine_id`` is text and ``cycle`` int64; a column whose values are all numbers is
    float64, any other column text (missing values stay missing), so that mixed types from
    different producers never stop the Parquet writer. Column checks are left to ingestion.

    Args:
        readings: Readings as returned by :func:`parse_payload`.

    Returns:
        One row per reading, in arrival order.
    """
    frame = pd.DataFrame.from_records(list(readings))
    frame[schema.MACHINE] = frame[schema.MACHINE].astype(str)
    frame[schema.CYCLE] = frame[schema.CYCLE].astype("int64")
    for column in frame.columns:
        if column in (schema.MACHINE, schema.CYCLE):
            continue
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values):
            frame[column] = values.astype("float64")
        elif values[values.notna()].map(lambda v: isinstance(v, numbers.Real)).all():
            frame[column] = pd.to_numeric(values, errors="coerce").astype("float64")
        else:
            frame[column] = values.map(lambda v: v if v is None or v != v else str(v))
    keys = [schema.MACHINE, schema.CYCLE]
    return frame[keys + [c for c in frame.columns if c not in keys]]


def reject_record(
    topic: str, payload: bytes | bytearray, reason: str, received: datetime
) -> dict[str, Any]:
    """A quarantine line for an unusable message.

    Args:
        topic: The message's topic.
        payload: Its body (decoded as UTF-8 with replacement, clipped to 10,000 characters).
        reason: Why it was rejected.
        received: When it arrived (UTC).

    Returns:
        ``{"received", "topic", "reason", "payload", "payload_bytes"}``, JSON-serialisable.
    """
    text = payload.decode("utf-8", errors="replace")
    if len(text) > PAYLOAD_CLIP:
        text = text[:PAYLOAD_CLIP] + "...[clipped]"
    return {
        "received": received.astimezone(UTC).isoformat(timespec="milliseconds"),
        "topic": topic,
        "reason": reason,
        "payload": text,
        "payload_bytes": len(payload),
    }


def batch_name(now: datetime, seq: int) -> str:
    """File stem of a micro-batch: ``mqtt-<UTC yyyymmddTHHMMSS>-<seq:06d>`` (sorts in time)."""
    return f"mqtt-{now.astimezone(UTC):%Y%m%dT%H%M%S}-{seq:06d}"


# --- the bridge -------------------------------------------------------------------------


def append_reject(directory: Path, record: dict[str, Any]) -> bool:
    """Appends a reject line (fsynced) to today's quarantine file; False when it could not.

    Never raises: a full disk must not stop the bridge from landing the good readings.
    """
    path = directory / f"mqtt-rejects-{datetime.now(UTC):%Y%m%d}.jsonl"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        log.error("could not quarantine a message (%s): %s", record["reason"], error)
        return False
    log.warning("rejected a message on %s: %s", record["topic"], record["reason"])
    return True


class MqttBridge:
    """Subscribes to the broker and writes micro-batches; see the module docstring.

    Single-threaded: :meth:`run` drives paho's network loop itself, and flushes between
    passes, so acknowledgements are sent from the same thread right after the file is written.
    """

    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        self.stats = BridgeStats()
        self._stopping = False
        self._readings: list[dict[str, Any]] = []
        self._unacked: list[int] = []  # message ids of the current connection, in order
        self._first_buffered: float | None = None
        self._retry_flush_at = 0.0
        self._seq = 0
        self._subscribed = False
        self._backoff = 1.0
        self._client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if config.username:
            self._client.username_pw_set(config.username, config.password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def stop(self) -> None:
        """Asks :meth:`run` to flush, acknowledge and disconnect (safe in a signal handler)."""
        self._stopping = True

    @property
    def pending_readings(self) -> int:
        """Readings received but not yet written to a landing file."""
        return len(self._readings)

    @property
    def subscribed(self) -> bool:
        """True once the broker granted the subscription on the current connection."""
        return self._subscribed

    # paho callbacks (called from inside client.loop(), on this thread)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        broker = f"{self.config.host}:{self.config.port}"
        if reason.is_failure:
            log.error("broker %s refused the connection: %s", broker, reason)
            return
        log.info("connected to %s as %r (session present: %s)",
                 broker, self.config.client_id, flags.session_present)  # fmt: skip
        client.subscribe(self.config.topic, qos=self.config.qos)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        if any(r.is_failure for r in reasons):
            log.error("subscription to %r refused: %s", self.config.topic, reasons)
            return
        self._subscribed = True
        self._backoff = 1.0
        log.info("subscribed to %r (qos %s)", self.config.topic, self.config.qos)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.stats.messages += 1
        received = datetime.now(UTC)
        try:
            readings, problems = parse_payload(message.payload)
        except Exception as error:  # parse_payload never raises; belt and braces
            readings, problems = [], [f"unexpected error: {error!r}"]
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "<topic not UTF-8>"
        for problem in problems:
            self._quarantine(reject_record(topic, message.payload, problem, received))
        if readings:
            if not self._readings:
                self._first_buffered = time.monotonic()
            self._readings.extend(readings)
            if message.qos:
                self._unacked.append(message.mid)
        elif message.qos:
            client.ack(message.mid, message.qos)
        log.debug("message mid=%s topic=%s readings=%d rejected=%d buffered=%d unacked=%d",
                  message.mid, topic, len(readings), len(problems), len(self._readings),
                  len(self._unacked))  # fmt: skip

    def _quarantine(self, record: dict[str, Any]) -> None:
        if append_reject(self.config.quarantine_dir, record):
            self.stats.rejected += 1

    # flushing

    def _flush_due(self, now: float) -> bool:
        if not self._readings or now < self._retry_flush_at:
            return False
        assert self._first_buffered is not None
        return (
            len(self._readings) >= self.config.batch_size
            or len(self._unacked) >= self.config.max_unacked
            or now - self._first_buffered >= self.config.flush_seconds
        )

    def _next_name(self) -> str:
        """A stem free in the landing directory (a restart within a second must not clash)."""
        now = datetime.now(UTC)
        while True:
            name = batch_name(now, self._seq)
            self._seq += 1
            if not (self.config.landing_dir / f"{name}.parquet").exists():
                return name

    def flush(self) -> Path | None:
        """Writes the buffer as one landing file, then acknowledges its messages.

        Returns:
            The file written, or None when the buffer was empty or the write failed (the
            buffer is kept and retried after ``flush_seconds``; nothing is acknowledged).
        """
        if not self._readings:
            return None
        try:
            frame = readings_frame(self._readings)
            path = write_batch(frame, self.config.landing_dir, self._next_name())
        except Exception:
            log.exception(
                "could not write %d readings to %s; retrying in %.1f s",
                len(self._readings),
                self.config.landing_dir,
                self.config.flush_seconds,
            )
            self._retry_flush_at = time.monotonic() + self.config.flush_seconds
            return None
        log.info("wrote %s (%d rows)", path, len(frame))
        self.stats.files += 1
        self.stats.readings += len(frame)
        for mid in self._unacked:
            self._client.ack(mid, self.config.qos)
        self._readings, self._unacked, self._first_buffered = [], [], None
        self._retry_flush_at = 0.0
        return path

    # the loop

    def _connect(self, deadline: float | None) -> bool:
        """Connects (or reconnects), retrying with back-off; False when stopped first."""
        delay = 0.5
        while not self._stopping and (deadline is None or time.monotonic() < deadline):
            try:
                self._client.connect(self.config.host, self.config.port, self.config.keepalive)
                return True
            except OSError as error:
                log.warning(
                    "cannot reach %s:%s (%s); retrying in %.1f s",
                    self.config.host,
                    self.config.port,
                    error,
                    delay,
                )
            self._sleep(delay, deadline)
            delay = min(delay * 2, 30.0)
        return False

    def _sleep(self, seconds: float, deadline: float | None) -> None:
        """Sleeps, still flushing on time and waking early for a stop request."""
        end = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < end:
            if deadline is not None and time.monotonic() >= deadline:
                return
            if self._flush_due(time.monotonic()):
                self.flush()
            time.sleep(0.05)

    def _wait(self, now: float) -> float:
        if not self._readings:
            return _TICK
        assert self._first_buffered is not None
        due = max(self._first_buffered + self.config.flush_seconds, self._retry_flush_at)
        return min(_TICK, max(0.0, due - now))

    def run(self, max_seconds: float = 0.0) -> BridgeStats:
        """Runs until :meth:`stop` (or ``max_seconds`` when positive), then shuts down cleanly.

        Shutting down flushes the buffer, acknowledges its messages and disconnects; the
        broker keeps the session for the next run.

        Returns:
            The run's counters.
        """
        deadline = time.monotonic() + max_seconds if max_seconds > 0 else None
        client = self._client
        try:
            connected = self._connect(deadline)
            while connected and not self._stopping:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                rc = client.loop(timeout=self._wait(now))
                if self._flush_due(time.monotonic()):
                    self.flush()
                if rc != mqtt.MQTT_ERR_SUCCESS and not self._stopping:
                    # Unacknowledged messages of the lost connection are redelivered on the
                    # next one; their readings stay buffered (a repeat is removed downstream).
                    log.warning(
                        "connection lost (%s); reconnecting in %.0f s",
                        mqtt.error_string(rc),
                        self._backoff,
                    )
                    self._unacked.clear()
                    self._subscribed = False
                    self._sleep(self._backoff, deadline)
                    self._backoff = min(self._backoff * 2, 30.0)
                    connected = self._connect(deadline)
        finally:
            self._shutdown()
        return self.stats

    def _shutdown(self) -> None:
        client = self._client
        log.info("stopping: flushing %d buffered readings", len(self._readings))
        self.flush()
        if client.is_connected():
            client.disconnect()
            end = time.monotonic() + 5
            while client.want_write() and time.monotonic() < end:
                if client.loop_write() != mqtt.MQTT_ERR_SUCCESS:
                    break
        if self._readings:
            log.error(
                "stopped with %d readings not written; the broker redelivers their "
                "messages to client id %r",
                len(self._readings),
                self.config.client_id,
            )
