"""The fleet metrics exporter (``pdm_platform.fleet_metrics``) over a small warehouse."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
from prometheus_client import CollectorRegistry, generate_latest

from pdm_platform.fleet_metrics import FleetCollector
from pdm_resources.warehouse import LocalWarehouse


def reader(path: Path) -> LocalWarehouse:
    return LocalWarehouse(database=str(path), read_only=True)


def scrape(path: Path) -> str:
    registry = CollectorRegistry()
    registry.register(FleetCollector(reader(path)))  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def small_warehouse(path: Path) -> None:
    health = pd.DataFrame(
        {"machine_id": ["a", "b", "c"], "risk_level": ["LOW", "CRITICAL", "LOW"],
         "silent": [False, False, True]}
    )  # fmt: skip
    alerts = pd.DataFrame({"kind": ["high_risk", "high_risk", "silent_machine"]})
    batches = pd.DataFrame(
        {
            "batch_id": ["b1", "b2", "b3"],
            "landed_at": pd.to_datetime(["2026-01-01 00:00:00", None, "2026-01-01 00:10:00"]),
            "stored_at": pd.to_datetime(
                ["2026-01-01 00:00:12", "2026-01-01 00:05:00", "2026-01-01 00:10:40"]
            ),
        }
    )
    with duckdb.connect(str(path)) as db:
        db.execute("create schema pdm")
        for name, frame in (("fleet_health", health), ("alerts", alerts),
                            ("scored_batches", batches)):  # fmt: skip
            db.register("frame", frame)
            db.execute(f"create table pdm.{name} as select * from frame")
            db.unregister("frame")


def test_figures_come_from_the_tables(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    small_warehouse(path)
    figures = reader(path).fleet_figures()
    assert figures.levels == {"LOW": 2, "MEDIUM": 0, "HIGH": 0, "CRITICAL": 1}
    assert figures.silent == 1
    assert figures.alerts == {"high_risk": 2, "silent_machine": 1}
    assert figures.latencies == [12.0, 40.0]  # the batch without a landing time is left out
    text = scrape(path)
    assert "pdm_warehouse_up 1.0" in text
    assert 'pdm_fleet_machines{risk_level="MEDIUM"} 0.0' in text
    assert 'pdm_alerts_raised_total{kind="high_risk"} 2.0' in text
    assert 'pdm_landing_to_score_seconds_bucket{le="15.0"} 1.0' in text
    assert 'pdm_landing_to_score_seconds_bucket{le="60.0"} 2.0' in text
    assert "pdm_landing_to_score_seconds_sum 52.0" in text
    assert "pdm_last_landing_to_score_seconds 40.0" in text


def test_an_empty_warehouse_reports_zeros(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    text = scrape(path)
    assert "pdm_warehouse_up 1.0" in text
    assert 'pdm_fleet_machines{risk_level="LOW"} 0.0' in text
    assert "pdm_landing_to_score_seconds_count 0.0" in text
    assert "pdm_last_landing_to_score_seconds" not in text


def test_a_missing_or_locked_warehouse_says_so_and_nothing_else(tmp_path: Path) -> None:
    missing = scrape(tmp_path / "nothing-here.duckdb")
    assert "pdm_warehouse_up 0.0" in missing and "pdm_fleet_machines" not in missing
    path = tmp_path / "warehouse.duckdb"
    small_warehouse(path)
    holder = subprocess.Popen(  # a run holding the write lock
        [sys.executable, "-c",
         f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('open', flush=True); "
         "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        locked = scrape(path)
    finally:
        holder.kill()
        holder.wait()
    assert "pdm_warehouse_up 0.0" in locked and "pdm_fleet_machines" not in locked
    time.sleep(0.1)
    assert "pdm_warehouse_up 1.0" in scrape(path)  # readable again once the run is gone
