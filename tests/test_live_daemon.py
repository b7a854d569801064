"""Live alerts with the real Dagster daemon on the default fleet (issue: live fleet scoring).

A fresh ``PDM_HOME`` gets ``make demo``'s pipeline on the default simulator fleet (40 machines x
2,000 readings), then ``dagster-daemon`` runs while two stationary feed batches land; the
landing sensor launches their ingestion runs, which score every reading and raise the alerts.
Judged against the simulator's ground truth (it lands with the readings): no high-risk alert
for a healthy machine, and a failure in those batches alerted on before it
(:func:`tests.walkthrough_checks.check_live_alerts`).

The README's walkthrough runs on a 16-machine fleet to stay fast; its champion is weaker and
is not held to this (on it, M000 was alerted at 83 readings from failure once).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.walkthrough_checks import check_live_alerts

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
