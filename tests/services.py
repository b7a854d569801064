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
    message = f"{name} not found on PATH (.ci/run installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


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
