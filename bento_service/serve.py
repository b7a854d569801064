"""``fleet-serve``: ``bentoml serve`` with a listening socket per HTTP worker.

Takes exactly the arguments of ``bentoml serve`` (``fleet-serve pdm-risk-service:latest
--port 3001``) and runs BentoML's own command after :func:`worker_sockets.install`, so that
Linux spreads new connections over the workers instead of the first worker to wake taking a
whole burst (see :mod:`bento_service.worker_sockets`). ``PDM_SERVE_SHARED_SOCKET=1`` keeps
BentoML's single shared socket.

Each server also gets its own Prometheus directory (a temporary one, removed at exit).
BentoML keeps the worker processes' metrics in ``$BENTOML_HOME/prometheus_multiproc_dir`` and
empties it whenever a server starts, so a second server started with the same BentoML home
(another ``make serve``, a benchmark's second arrangement) would otherwise wipe the first
one's counters and histograms from its ``/metrics``.

This module must not import Dagster: it runs in the serving process.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence

from bento_service import worker_sockets
from bento_service.settings import serve_settings


def main(argv: Sequence[str] | None = None) -> None:
    """Runs ``bentoml serve`` with ``argv`` (default: this process's arguments)."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml_cli.cli import cli

    if not serve_settings().shared_socket:  # also: a bad PDM_SERVE_* value stops it here
        worker_sockets.install()
    args = list(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="pdm-serve-metrics-") as metrics:
        BentoMLContainer.prometheus_multiproc_dir.set(metrics)
        cli.main(["serve", *args], prog_name="fleet-serve")


if __name__ == "__main__":
    main()
