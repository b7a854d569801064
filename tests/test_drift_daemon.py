"""End to end with the real Dagster daemon: `make drift-demo`'s story on a fresh PDM_HOME.

The demo runs `dagster dev` (webserver + daemon, as `make ui` does) on a free port.

Stationary batches land and trigger nothing; a drifted batch lands, the landing-zone sensor
ingests it, the drift sensor requests the retrain job, a new model version is registered in
MLflow and the promotion gate decides.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from pdm_resources.mlflow_tracking import MlflowTracking
from tests.services import free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("drift_daemon")]
REPO = Path(__file__).resolve().parents[1]


def test_drifted_batch_triggers_retraining_through_the_daemon(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "PDM_HOME": str(home),
        "BENTOML_HOME": str(home / "bentoml"),
        "PDM_SIM_MACHINES": "16",
        "PDM_SIM_STEPS": "1200",
        # A 16-machine fleet varies more from batch to batch than the default 40.
        "PDM_DRIFT_MIN_EFFECT": "0.35",
    }
    for name in ("DAGSTER_HOME", "MLFLOW_TRACKING_URI", "PDM_LANDING_DIR"):
        env.pop(name, None)
    port = free_port()
    command = [sys.executable, "-m", "pdm_assets.drift_demo", "--stationary", "2",
               "--timeout", "600", "--ui-port", str(port)]  # fmt: skip
    run = subprocess.run(
        command,
        capture_output=True, text=True, cwd=REPO, env=env, timeout=1500,
    )  # fmt: skip
    out = run.stdout
    daemon_log = home / "logs" / "drift-demo-daemon.log"
    detail = out[-4000:] + run.stderr[-3000:]
    if daemon_log.exists():
        detail += "\n--- daemon log ---\n" + daemon_log.read_text()[-4000:]
    assert run.returncode == 0, detail

    assert f"Dagster UI answering on http://127.0.0.1:{port}" in out
    shares = [float(s) for s in re.findall(r"ingested \(run \w+\); drift share ([\d.]+)", out)]
    assert len(shares) == 3, out
    assert all(share < 0.3 for share in shares[:2]) and shares[2] >= 0.3, shares
    assert "requested by the sensor" in out
    decision = re.search(r"promotion decision: (promote|reject|tie)", out)
    assert decision, out

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        retrains = instance.get_runs(dg.RunsFilter(job_name="retrain"))
        assert len(retrains) == 1  # the stationary batches triggered nothing
        assert retrains[0].tags["pdm/trigger"] == "drift"
        assert retrains[0].tags["dagster/run_key"].startswith("retrain-")
        ingests = instance.get_runs(dg.RunsFilter(job_name="ingest_telemetry"))
        assert len(ingests) == 3 and all(r.status.value == "SUCCESS" for r in ingests)

    tracking = MlflowTracking(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    versions = tracking.client().search_model_versions("name='pdm-fleet-model'")
    assert len(versions) == 2  # the demo's champion and the retrained candidate
    champion = tracking.client().get_model_version_by_alias("pdm-fleet-model", "champion")
    expected = "2" if decision.group(1) == "promote" else "1"
    assert str(champion.version) == expected
