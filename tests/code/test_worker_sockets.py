"""Each BentoML HTTP worker gets a listening socket of its own (``SO_REUSEPORT``)."""

from __future__ import annotations

import shlex
import socket
import sys

import pytest
from bentoml.serving import create_watcher
from circus.sockets import CircusSocket

from bento_service import worker_sockets
from bento_service.worker_sockets import (
    API_SERVER_SOCKET,
    give_workers_own_sockets,
    name_socket_in_command,
    socket_reference,
)
from tests.services import free_port

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT spreading is Linux's")


def bentoml_watcher(workers: int, reference: str = socket_reference()):
    """The watcher BentoML 1.4's ``serve_http`` builds for the API server (same argument order)."""
    args = ["-m", "_bentoml_impl.worker.service", "/srv/my bento", "--fd", reference,
            "--service-name", "pdm-risk-service", "--worker-id", "$(CIRCUS.WID)",
            "--args", '{"a": "b c"}']  # fmt: skip
    return create_watcher(name="service", args=args, numprocesses=workers)


def api_socket(port: int, **kwargs) -> CircusSocket:
    return CircusSocket(name=API_SERVER_SOCKET, host="127.0.0.1", port=port, **kwargs)


def command_line(watcher) -> list[str]:
    return [*shlex.split(watcher.cmd), *watcher.args]


def test_the_socket_reference_moves_into_the_command_and_the_command_line_is_unchanged() -> None:
    watcher = bentoml_watcher(2)
    before = command_line(watcher)
    assert name_socket_in_command(watcher)
    assert socket_reference() in watcher.cmd  # what circus looks for
    assert socket_reference() not in watcher.args
    assert command_line(watcher) == before


def test_a_watcher_without_the_reference_is_left_alone() -> None:
    watcher = bentoml_watcher(2, reference="$(circus.sockets.other)")
    before = (watcher.cmd, list(watcher.args))
    assert not name_socket_in_command(watcher)
    assert (watcher.cmd, watcher.args) == before


def test_every_worker_can_bind_its_own_socket_on_the_one_port() -> None:
    port = free_port()
    shared = api_socket(port)
    watcher = bentoml_watcher(2)
    (replacement,) = give_workers_own_sockets([watcher], [shared])
    assert replacement is not shared and shared.fileno() == -1  # the template is closed
    assert replacement.so_reuseport and (replacement.host, replacement.port) == ("127.0.0.1", port)
    # What circus does for each process it spawns: bind a fresh socket from the config.
    first = CircusSocket.load_from_config(replacement._cfg)
    second = CircusSocket.load_from_config(replacement._cfg)
    try:
        first.bind_and_listen()
        second.bind_and_listen()
        assert first.getsockname() == second.getsockname() == ("127.0.0.1", port)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        first.close()
        second.close()
        replacement.close()


@pytest.mark.parametrize("holder", ["another server", "another fleet-serve"])
def test_an_address_in_use_fails_once_naming_it(holder: str) -> None:
    """Also against SO_REUSEPORT sockets, which the workers' own sockets would join."""
    with socket.socket() as taken:
        if holder == "another fleet-serve":
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        shared = api_socket(port)
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            give_workers_own_sockets([bentoml_watcher(2)], [shared])
        shared.close()


@pytest.mark.parametrize(
    "case",
    ["one worker", "port 0", "unix socket", "another socket", "no user"],
)
def test_one_shared_socket_is_kept_where_per_worker_sockets_do_not_apply(case, tmp_path) -> None:
    workers = 1 if case == "one worker" else 2
    if case == "port 0":
        target = api_socket(0)
    elif case == "unix socket":
        target = CircusSocket(name=API_SERVER_SOCKET, path=str(tmp_path / "api.sock"))
    elif case == "another socket":
        target = CircusSocket(name="runner", host="127.0.0.1", port=free_port())
    else:
        target = api_socket(free_port())
    watchers = [] if case == "no user" else [bentoml_watcher(workers)]
    before = [(w.cmd, list(w.args)) for w in watchers]
    try:
        assert give_workers_own_sockets(watchers, [target]) == [target]
        assert not target.so_reuseport and target.fileno() != -1
        assert [(w.cmd, w.args) for w in watchers] == before
    finally:
        target.close()


def test_install_makes_bentoml_s_arbiter_factory_get_per_worker_sockets() -> None:
    from bentoml._internal.utils import circus

    original, seen = circus.create_standalone_arbiter, {}

    def factory(watchers, **kwargs):  # stands in for BentoML's arbiter factory
        seen.update(watchers=watchers, **kwargs)
        return "arbiter"

    circus.create_standalone_arbiter = factory
    try:
        assert worker_sockets.install()
        assert worker_sockets.install()  # idempotent: wrapped once
        assert circus.create_standalone_arbiter.__wrapped__ is factory
        watcher, shared = bentoml_watcher(2), api_socket(free_port())
        assert circus.create_standalone_arbiter([watcher], sockets=[shared], threaded=False) == (
            "arbiter"
        )
        (given,) = seen["sockets"]
        assert given.so_reuseport and socket_reference() in seen["watchers"][0].cmd
        assert seen["threaded"] is False
        given.close()
    finally:
        circus.create_standalone_arbiter = original
