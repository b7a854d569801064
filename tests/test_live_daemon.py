"""Live alerts with the real Dagster daemon on the default fleet (issue: live fleet scoring).

A fresh ``PDM_HOME`` gets ``make demo``'s pipeline on the default simulator fleet (40 machines x
2,000 readings), then ``dagster-daemon`` runs while two stationary feed batches land; the
landing sensor launches their ingestion runs, which score every reading and raise the alerts.
Judged against the simulator's ground truth (it lands with the readings): no high-risk alert
for a healthy machine, and a failure in those batches alerted on before it
(:func:`check_live_alerts`).

The README's walkthrough runs on a 16-machine fleet to stay fast; its champion is weaker and
is not held to this (on it, M000 was alerted at 83 readings from failure once).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
STATIONARY = ["feed-000000", "feed-000001"]
SCRIPT = """
import dagster as dg

from pdm_core import paths
from pdm_core.feed import FeedConfig
from pdm_platform import demo
from pdm_platform.drift_demo import DemoClock, follow_batch, land, start_daemon
from pdm_platform.drift_demo import stop_process_group

assert demo.main() == 0
with dg.DagsterInstance.get() as instance:
    clock = DemoClock(instance)
    daemon = start_daemon(paths.pdm_home() / "logs" / "daemon.log")
    try:
        for name, batch in land(FeedConfig(), 2):
            seen = follow_batch(clock, name, batch, 600)
            assert seen["run"].status.value == "SUCCESS", seen
    finally:
        stop_process_group(daemon)
"""


def check_live_alerts(warehouse: Path, stationary: list[str]) -> None:
    """High-risk alerts that the daemon's ingestion runs raised on the stationary batches.

    The simulator's ground truth lands with the readings, so each alert is judged against the
    true remaining life of the reading that raised it: a machine is healthy there when its
    component has more than two label horizons (60 readings) to live. No such alert may exist,
    and at least one failure in those batches must have a HIGH or CRITICAL alert in the
    horizon before its failure reading.
    """
    import duckdb

    from pdm_core.feed import FeedConfig

    horizon = FeedConfig().horizon
    with duckdb.connect(str(warehouse), read_only=True) as db:
        db.execute(
            "create temp table truth as select * from pdm.landed_telemetry "
            "where regexp_extract(batch_id, '^(feed-[0-9]+)', 1) in (select unnest(?))",
            [stationary],
        )
        alerts = db.execute(
            "select t.machine_id, t.cycle, t.rul from pdm.alerts a join truth t "
            "on t.machine_id = a.details ->> 'machine_id' "
            "and t.cycle = (a.details ->> 'cycle')::bigint where a.kind = 'high_risk'"
        ).fetchall()
        warned = db.execute(
            "select f.machine_id, f.cycle from truth f where f.rul = 0 "
            "and f.failure_within_h = 1 and exists (select 1 from truth t "
            "join pdm.alerts a on a.kind = 'high_risk' "
            "and t.machine_id = a.details ->> 'machine_id' "
            "and t.cycle = (a.details ->> 'cycle')::bigint "
            "where t.machine_id = f.machine_id and t.cycle between f.cycle - ? and f.cycle - 1)",
            [horizon],
        ).fetchall()
    assert alerts, f"no high-risk alert from the stationary batches {stationary}"
    healthy = [(machine, cycle, rul) for machine, cycle, rul in alerts if rul > 2 * horizon]
    assert not healthy, (
        f"high-risk alerts for healthy machines (machine, cycle, true RUL): {healthy}"
    )
    assert warned, f"no failure in {stationary} was alerted on in the {horizon} readings before it"


def test_stationary_batches_alert_before_failures_and_never_on_healthy_machines(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PDM_", "DAGSTER_"))}
    env.update(
        PDM_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster"),
        BENTOML_HOME=str(home / "bentoml"),
        BENTOML_DO_NOT_TRACK="True",
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1500)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    check_live_alerts(home / "warehouse.duckdb", STATIONARY)
