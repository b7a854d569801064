"""``fleet-mqtt-bridge``: runs :class:`pdm_platform.mqtt_bridge.MqttBridge` until stopped.

Examples::

    fleet-mqtt-bridge --host broker.local --topic 'pdm/telemetry/#'
    PDM_MQTT_PASSWORD=secret fleet-mqtt-bridge --username bridge --batch-size 1000
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from pdm_platform.mqtt_bridge import PASSWORD_ENV, BridgeConfig, MqttBridge

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="fleet-mqtt-bridge",
        description="MQTT telemetry into the landing zone as Parquet micro-batches.",
    )
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--topic", default="pdm/telemetry/#")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument(
        "--client-id",
        default="pdm-landing-bridge",
        help="fixed id of the persistent session (one bridge per id)",
    )
    parser.add_argument(
        "--username", help=f"broker user; the password is read from ${PASSWORD_ENV}"
    )
    parser.add_argument(
        "--landing-dir",
        type=Path,
        help="incoming directory (default $PDM_LANDING_DIR/incoming, "
        "else $PDM_HOME/landing/incoming)",
    )
    parser.add_argument(
        "--quarantine-dir",
        type=Path,
        help="rejected messages (default next to incoming: .../quarantine)",
    )
    parser.add_argument("--batch-size", type=int, default=500, help="readings per file at most")
    parser.add_argument(
        "--flush-seconds",
        type=float,
        default=5.0,
        help="write buffered readings at least this often",
    )
    parser.add_argument(
        "--max-unacked",
        type=int,
        default=20,
        help="flush when this many messages await acknowledgement (keep at or "
        "below the broker's in-flight limit)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=0.0,
        help="stop after this many seconds (0: run until SIGTERM/SIGINT)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every message")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fleet-mqtt-bridge``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("paho").setLevel(logging.WARNING)
    if args.landing_dir is None or args.quarantine_dir is None:
        from pdm_core import paths

        root = paths.landing_dir()
        args.landing_dir = args.landing_dir or root / "incoming"
        args.quarantine_dir = args.quarantine_dir or root / "quarantine"
    try:
        config = BridgeConfig(
            landing_dir=args.landing_dir,
            quarantine_dir=args.quarantine_dir,
            host=args.host,
            port=args.port,
            topic=args.topic,
            qos=args.qos,
            client_id=args.client_id,
            batch_size=args.batch_size,
            flush_seconds=args.flush_seconds,
            max_unacked=args.max_unacked,
            username=args.username,
            password=os.environ.get(PASSWORD_ENV) if args.username else None,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    bridge = MqttBridge(config)

    def request_stop(signum: int, frame: Any) -> None:
        bridge.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log.info("bridging %s:%s %r -> %s", config.host, config.port, config.topic, config.landing_dir)
    stats = bridge.run(max_seconds=args.max_seconds)
    print(stats.summary(), flush=True)
    return 1 if bridge.pending_readings else 0


if __name__ == "__main__":
    sys.exit(main())
