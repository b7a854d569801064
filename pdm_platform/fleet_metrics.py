"""The live fleet's metrics for Prometheus, read from the warehouse at each scrape.

Ingestion runs are short batch processes that Prometheus cannot scrape, so the figures come
from what they leave behind: this small exporter (``make metrics-exporter``; in the cluster
the Deployment in ``deploy/metrics-exporter``) opens the warehouse read-only on every scrape
and turns its tables into metrics. Nothing is kept
between scrapes, so the exporter can restart at any time and never disagrees with the
warehouse; a Pushgateway would need one more component and would keep serving a batch's
figures long after they stopped being true.

Metrics:

* ``pdm_fleet_machines{risk_level}``: machines per risk level in ``pdm.fleet_health`` (the
  newest score of each machine); ``pdm_fleet_silent_machines``: those reporting nothing;
* ``pdm_alerts_raised_total{kind}``: alerts recorded since the start (``pdm.alerts``, or the
  alert objects in production);
* ``pdm_landing_to_score_seconds``: per landed batch, its file's write to its risk rows and
  alerts stored (a histogram over ``pdm.scored_batches``, the batches the landing sensor
  launched), and ``pdm_last_landing_to_score_seconds`` for the newest one;
* ``pdm_warehouse_up``: 0 while the warehouse cannot be read (a run holds its write lock, or
  it does not exist yet); the other metrics are then left out of that scrape.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pdm_resources.warehouse import FleetFigures, Warehouse

LATENCY_BUCKETS = (1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0)
DEFAULT_PORT = 9108


class FleetCollector:
    """A Prometheus collector over a warehouse (opened, read-only, at each scrape)."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def collect(self) -> Iterator[Any]:
        """The metrics of one scrape (``pdm_warehouse_up`` 0 alone when it cannot be read)."""
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("pdm_warehouse_up", "1 when the warehouse could be read")
        try:
            figures = self.warehouse.fleet_figures()
        except Exception:  # locked by a run or not there yet: said by pdm_warehouse_up
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families(figures)


def families(figures: FleetFigures) -> Iterator[Any]:
    """The metric families of the warehouse's figures."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    machines = GaugeMetricFamily(
        "pdm_fleet_machines", "Machines per risk level (newest score)", labels=["risk_level"]
    )
    for level, count in figures.levels.items():
        machines.add_metric([level], count)
    yield machines
    yield GaugeMetricFamily(
        "pdm_fleet_silent_machines", "Machines reporting nothing", value=figures.silent
    )
    alerts = CounterMetricFamily("pdm_alerts_raised", "Alerts recorded", labels=["kind"])
    for kind, count in sorted(figures.alerts.items()):
        alerts.add_metric([kind], count)
    yield alerts
    latencies = figures.latencies
    buckets = [(str(b), sum(v <= b for v in latencies)) for b in LATENCY_BUCKETS]
    buckets.append(("+Inf", len(latencies)))
    yield HistogramMetricFamily(
        "pdm_landing_to_score_seconds",
        "Landed file written -> its risk rows stored, per batch",
        buckets=buckets,
        sum_value=sum(latencies),
    )
    if latencies:
        yield GaugeMetricFamily(
            "pdm_last_landing_to_score_seconds",
            "Landing to score of the newest scored batch",
            value=latencies[-1],
        )


def serve(warehouse: Warehouse, port: int, host: str = "127.0.0.1") -> None:
    """Serves ``/metrics`` for ``warehouse`` until interrupted."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(FleetCollector(warehouse))  # type: ignore[arg-type]
    start_http_server(port, addr=host, registry=registry)
    print(f"fleet metrics of {warehouse.describe()} on http://{host}:{port}/metrics", flush=True)
    while True:
        time.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    """``python -m pdm_platform.fleet_metrics [--port N] [--host H] [--warehouse PATH]``.

    The warehouse follows ``$PDM_ENV`` as the runs' does: the local DuckDB file (read-only),
    or in production the S3 warehouse and the alert objects beside it.
    """
    from pdm_resources.environment import metrics_warehouse
    from pdm_resources.warehouse import LocalWarehouse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (loopback; 0.0.0.0 in a pod)"
    )
    parser.add_argument(
        "--warehouse", type=Path, default=None,
        help="a local DuckDB file (default: $PDM_ENV's warehouse, $PDM_HOME's locally)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    warehouse = (
        LocalWarehouse(database=str(args.warehouse), read_only=True)
        if args.warehouse
        else metrics_warehouse()
    )
    try:
        serve(warehouse, args.port, args.host)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
