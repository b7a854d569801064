"""Real servers for tests, started on loopback and stopped afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.tooling import unavailable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_binary(name: str) -> str:
    """Path of a server binary; fails under CI (CI=true), skips elsewhere."""
    path = shutil.which(name)
    if path:
        return path
    unavailable(f"{name} not found on PATH (.ci/run installs it)")


def _as_postgres_user(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: drop to the postgres user when root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _run(command: list[str]) -> None:
    done = subprocess.run(_as_postgres_user(command), capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr or done.stdout}")


@contextmanager
def postgres_server(database: str = "pdm") -> Iterator[str]:
    """Starts a throw-away PostgreSQL on 127.0.0.1 and yields its SQLAlchemy URL.

    The cluster lives in its own directory under the system temp dir (owned by the postgres
    user when the tests run as root, since PostgreSQL refuses to run as root).
    """
    require_binary("initdb")
    require_binary("pg_ctl")
    directory = Path(tempfile.mkdtemp(prefix="pdm-pg-"))
    data, sockets, log = directory / "data", directory / "sock", directory / "server.log"
    sockets.mkdir()
    if os.geteuid() == 0:
        for path in (directory, sockets):
            shutil.chown(path, "postgres")
    port = free_port()
    _run(["initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
    _run(["pg_ctl", "-D", str(data), "-o", options, "-l", str(log), "-w", "start"])
    try:
        deadline = time.monotonic() + 30
        while True:
            done = subprocess.run(
                ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c",
                 f"create database {database}"],
                capture_output=True, text=True,
            )  # fmt: skip
            if done.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not come up: {done.stderr}")
            time.sleep(0.3)
        yield f"postgresql://postgres@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run(
            _as_postgres_user(["pg_ctl", "-D", str(data), "-m", "fast", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(directory, ignore_errors=True)


def _mosquitto_binary() -> str:
    """The broker binary: on PATH, else Debian's /usr/sbin (not on a non-root PATH)."""
    if shutil.which("mosquitto") is None and Path("/usr/sbin/mosquitto").is_file():
        return "/usr/sbin/mosquitto"
    return require_binary("mosquitto")


@contextmanager
def mosquitto_server(extra_config: tuple[str, ...] = ()) -> Iterator[tuple[str, int]]:
    """Starts a throw-away Mosquitto broker on 127.0.0.1 and yields ``(host, port)``.

    Anonymous access, no persistence to disk (sessions of persistent clients still live in
    the broker's memory while it runs), log to a file that is printed when the broker fails
    to start or the body raises.

    Args:
        extra_config: More configuration lines (e.g. ``"max_inflight_messages 100"``).
    """
    binary = _mosquitto_binary()
    directory = Path(tempfile.mkdtemp(prefix="pdm-mqtt-"))
    config, log = directory / "mosquitto.conf", directory / "mosquitto.log"
    port = free_port()
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence false",
        f"log_dest file {log}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        *extra_config,
    ]
    config.write_text("\n".join(lines) + "\n")
    if os.geteuid() == 0:  # the broker drops to the mosquitto user when started as root
        for path in (directory, log):
            path.touch(exist_ok=True)
            shutil.chown(path, "mosquitto")
    process = subprocess.Popen(
        [binary, "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )

    def dump() -> str:
        text = log.read_text(errors="replace") if log.exists() else ""
        if process.stdout is not None and process.poll() is not None:
            text += process.stdout.read().decode(errors="replace")
        return text

    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {process.returncode}:\n{dump()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen on {port}:\n{dump()}") from None
                time.sleep(0.05)
        try:
            yield "127.0.0.1", port
        except BaseException:
            print(f"--- mosquitto log ({log}) ---\n{dump()}")
            raise
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def moto_s3_server(*buckets: str) -> Iterator[str]:
    """Starts a moto S3 server on 127.0.0.1 (a free port) and yields its endpoint URL.

    The server runs in a thread of this process but answers real HTTP, so other processes
    (``mlflow server``, the Dagster CLI) can use it too. Dummy AWS credentials and region are
    set in ``os.environ`` while the server runs (the previous values come back afterwards).

    Args:
        buckets: Buckets to create before yielding.
    """
    import boto3
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.delenv("AWS_PROFILE", raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            client = boto3.client("s3", endpoint_url=endpoint)
            for bucket in buckets:
                client.create_bucket(Bucket=bucket)
            yield endpoint
        finally:
            server.stop()


@contextmanager
def dagster_dev_server(env: dict[str, str], log: Path, timeout: float = 240) -> Iterator[str]:
    """Starts ``dagster dev`` (webserver + daemon) on 127.0.0.1 and yields its base URL.

    The process runs in its own session with ``env`` (set ``PDM_HOME`` and ``DAGSTER_HOME``
    there; the instance's ``dagster.yaml`` must exist), writes to ``log`` and is stopped with
    its whole process group (code servers, daemon) afterwards, as ``make drift-demo`` does.

    Args:
        env: Environment of the server.
        log: File that receives the server's output (shown when it does not come up).
        timeout: Seconds to wait for ``/server_info``.
    """
    import sys

    from pdm_platform.drift_demo import stop_process_group, ui_answers

    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [str(Path(sys.executable).parent / "dagster"), "dev",
               "-m", "pdm_platform.definitions", "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while not ui_answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"dagster dev did not answer on port {port}:\n{tail}")
            time.sleep(1)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(process)


@contextmanager
def prometheus_server(jobs: dict[str, str], interval_s: float = 1.0) -> Iterator[str]:
    """Starts Debian's ``prometheus`` on 127.0.0.1 scraping ``jobs`` and yields its base URL.

    Args:
        jobs: Job name -> ``host:port`` of a ``/metrics`` endpoint.
        interval_s: Scrape interval.
    """
    binary = require_binary("prometheus")
    directory = Path(tempfile.mkdtemp(prefix="pdm-prometheus-"))
    config, log = directory / "prometheus.yml", directory / "prometheus.log"
    scrape = "\n".join(
        f"  - job_name: {name}\n    static_configs:\n      - targets: ['{target}']"
        for name, target in jobs.items()
    )
    every = f"{round(interval_s * 1000)}ms"  # Prometheus durations take no fractions
    config.write_text(
        f"global:\n  scrape_interval: {every}\n  evaluation_interval: {every}\n"
        f"scrape_configs:\n{scrape}\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as output:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {log.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError as error:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"prometheus: {log.read_text()[-3000:]}") from error
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)
