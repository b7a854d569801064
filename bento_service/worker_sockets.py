"""A listening socket per BentoML HTTP worker, so the kernel spreads connections evenly.

BentoML 1.4 binds one listening socket in its supervisor (a circus arbiter) and every worker
accepts from it. Under uvloop the worker that wakes first accepts a whole burst of new
connections, so a client that opens its connections together (a load balancer, a fleet
gateway, ``wrk``) can end up with every connection on one worker while the others idle
(bentoml/BentoML#5426, open; the per-worker-socket fix, bentoml/BentoML#5557, was closed
unmerged).

Circus itself can give each process its own ``SO_REUSEPORT`` socket, bound to the same
address: it does so for a socket marked ``so_reuseport`` when the watcher's *command* names
the socket. BentoML names it only in the arguments. :func:`install` wraps BentoML's arbiter
factory so that, just before the arbiter starts, the API server socket is marked
``so_reuseport`` and its ``--fd`` reference moves from the arguments into the command. Linux
then hands each new connection to one worker's socket by a hash of its addresses.

Costs, as with any ``SO_REUSEPORT`` server: a connection hashed to a worker that is still
starting waits for that worker, and connections queued on a worker's socket when it dies are
reset. Only TCP sockets with a fixed port, more than one worker and Linux are changed.

This module must not import Dagster: it runs in the serving process.
"""

from __future__ import annotations

import functools
import logging
import shlex
import socket
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from circus.sockets import CircusSocket
    from circus.watcher import Watcher

LOGGER = "bentoml.pdm_service.sockets"
"""Under BentoML's configured handlers; fetched when used, since BentoML's CLI configures
logging after :func:`install` (``dictConfig`` disables loggers that exist by then)."""

API_SERVER_SOCKET = "_bento_api_server"
"""Name BentoML 1.4 gives the HTTP API server's socket (``_bentoml_impl.server.serving``)."""

_INSTALLED = "_pdm_per_worker_sockets"


def socket_reference(name: str = API_SERVER_SOCKET) -> str:
    """The circus variable a watcher's command line uses for socket ``name``'s descriptor."""
    return f"$(circus.sockets.{name})"


def per_worker_socket(template: CircusSocket) -> CircusSocket:
    """A copy of ``template`` that circus binds once per worker process with ``SO_REUSEPORT``.

    Args:
        template: The shared socket BentoML created (not yet bound).

    Returns:
        An unbound socket with the same name, address, family and backlog, marked
        ``so_reuseport``; circus binds a fresh one from its config for every process it spawns.

    Raises:
        OSError: Something already holds the address (another server, including another
            ``fleet-serve``), naming it; or the system refuses ``SO_REUSEPORT``.
    """
    from circus.sockets import CircusSocket

    family = "AF_INET6" if template.family.name == "AF_INET6" else "AF_INET"
    config = {
        "name": template.name,
        "host": template.host,
        "port": str(template.port),
        "family": family,
        "backlog": str(template.backlog),
        "so_reuseport": "true",
    }
    # Fail here, once and clearly, if anything holds the address. The probe has no
    # SO_REUSEPORT, so it also fails against another server's per-worker sockets, which
    # the workers' own sockets would otherwise join (splitting the connections between two
    # servers, for example a second `make serve`).
    with socket.socket(template.family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((template.host, template.port))
        except OSError as error:
            raise OSError(
                error.errno, f"cannot listen on {template.location}: {error.strerror or error}"
            ) from error
    shared = CircusSocket.load_from_config(config)
    if not shared.so_reuseport:
        shared.close()
        raise OSError(f"socket {template.name!r}: this system refused SO_REUSEPORT")
    template.close()
    return shared


def name_socket_in_command(watcher: Watcher, name: str = API_SERVER_SOCKET) -> bool:
    """Moves the arguments up to the socket reference into the watcher's command.

    Circus binds a per-process socket only when ``watcher.cmd`` contains its reference; the
    process's command line (command split, then arguments) is unchanged.

    Returns:
        Whether the watcher's arguments held the reference (and so were changed).
    """
    reference = socket_reference(name)
    args = watcher.args
    if not isinstance(args, list) or reference not in args:
        return False
    cut = args.index(reference) + 1
    watcher.cmd = shlex.join([*shlex.split(watcher.cmd), *args[:cut]])
    watcher.args = args[cut:]
    return True


def _eligible(sock: CircusSocket, name: str) -> bool:
    return sock.name == name and not sock.is_unix and bool(sock.port) and not sock.so_reuseport


def give_workers_own_sockets(
    watchers: Sequence[Watcher], sockets: list[CircusSocket], name: str = API_SERVER_SOCKET
) -> list[CircusSocket]:
    """Rewrites BentoML's arbiter inputs so every worker of socket ``name`` binds its own.

    Leaves everything unchanged (and says why at DEBUG) unless the socket is TCP with a fixed
    port and one watcher runs more than one process from it.

    Args:
        watchers: The arbiter's watchers; the one using the socket is changed in place.
        sockets: The arbiter's sockets.
        name: The socket to split.

    Returns:
        The sockets to give the arbiter.
    """
    targets = [s for s in sockets if _eligible(s, name)]
    users = [w for w in watchers if socket_reference(name) in (w.args or [])]
    if len(targets) != 1 or len(users) != 1 or users[0].numprocesses < 2:
        log = logging.getLogger(LOGGER)
        log.debug("one shared socket kept: sockets %s, watchers %s", targets, users)
        return sockets
    replacement = per_worker_socket(targets[0])
    name_socket_in_command(users[0], name)
    logging.getLogger(LOGGER).info(
        "each of the %d workers binds its own socket on %s (SO_REUSEPORT)",
        users[0].numprocesses,
        replacement.location,
    )
    return [replacement if s is targets[0] else s for s in sockets]


def _wrap(create: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(create)
    def create_arbiter(watchers: list[Watcher], **kwargs: Any) -> Any:
        if kwargs.get("sockets"):
            kwargs["sockets"] = give_workers_own_sockets(watchers, list(kwargs["sockets"]))
        return create(watchers, **kwargs)

    setattr(create_arbiter, _INSTALLED, True)
    return create_arbiter


def install() -> bool:
    """Makes ``bentoml serve`` in this process give each HTTP worker its own socket.

    Call before BentoML's ``serve_http`` runs (the launcher in :mod:`bento_service.serve`
    does). Idempotent.

    Returns:
        Whether the per-worker sockets are in effect (False off Linux).
    """
    if sys.platform != "linux":  # elsewhere SO_REUSEPORT does not spread connections
        return False
    from bentoml._internal.utils import circus

    if not getattr(circus.create_standalone_arbiter, _INSTALLED, False):
        circus.create_standalone_arbiter = _wrap(circus.create_standalone_arbiter)
    return True
