"""What the README walkthrough's main commands must have printed and left behind.

``tests/test_readme.py`` runs the README's blocks in a fresh clone; for the blocks named in
:data:`CHECKS` it then asserts the story, not only the exit status:

- ``make demo`` (the simulator, default ``PDM_HOME``): every asset materialised, no failed
  check, the warehouse, the MLflow database and the Dagster runs persisted in ``PDM_HOME``;
- ``make drift-demo`` (the real Dagster daemon on the same ``PDM_HOME``): the stationary batches
  trigger nothing, the drifted batch triggers exactly one retrain with a deterministic run key,
  the promotion gate decides, and the sensor's next tick (which sees the retrained champion's
  own drift report on the same batch) requests no second retrain;
- ``make rehearse-serve``: every check of the rehearsed pod passed and no staging was left.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from pdm_core.registry import FLEET_MODEL
from pdm_resources.mlflow_tracking import MlflowTracking


def check_demo(output: str, home: Path) -> None:
    """``make demo`` on the simulator materialised every asset and persisted its state."""
    from pdm_core.names import PER_BATCH_ASSETS
    from pdm_platform.definitions import defs

    total = len(list(defs.resolve_all_asset_keys())) - len(PER_BATCH_ASSETS)
    assert f"{total}/{total} materialised" in output, output[-3000:]
    assert re.search(r"Checks:\s+\d+ passed, 0 failed", output), output[-3000:]
    assert (home / "warehouse.duckdb").exists()
    assert (home / "mlflow" / "mlflow.db").exists()
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        missing = [
            key.to_user_string()
            for key in defs.resolve_all_asset_keys()
            if key.to_user_string() not in PER_BATCH_ASSETS
            and instance.get_latest_materialization_event(key) is None
        ]
    assert not missing, f"not materialised in {home}: {missing}"


def check_drift_demo(output: str, home: Path) -> None:
    """``make drift-demo`` told the whole drift story, and the instance agrees."""
    ingested = re.findall(
        r"(feed-\d+)\.parquet: ingested \(run \w+\); drift share ([\d.]+)", output
    )
    shares = [float(share) for _, share in ingested]
    assert len(shares) == 3, output[-4000:]
    assert all(share < 0.3 for share in shares[:2]) and shares[2] >= 0.3, shares
    assert "requested by the sensor" in output
    decision = re.search(r"promotion decision: (promote|reject|tie)", output)
    assert decision, output[-4000:]
    # The sensor's first tick after the retrain ended (which sees the retrained champion's own
    # drift report on the same batch, or has seen it already) requests nothing.
    after = re.search(r"5\) the drift sensor after the retrain: (\w+) - (.*)", output)
    assert after, output[-4000:]
    assert after.group(1) == "SKIPPED", after.group(0)

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        retrains = instance.get_runs(dg.RunsFilter(job_name="retrain"))
        assert len(retrains) == 1  # the stationary batches triggered nothing, nor did step 5
        assert retrains[0].tags["pdm/trigger"] == "drift"
        assert retrains[0].tags["dagster/run_key"].startswith("retrain-")
        ingests = instance.get_runs(dg.RunsFilter(job_name="ingest_telemetry"))
        assert len(ingests) == 3 and all(r.status.value == "SUCCESS" for r in ingests)

    client = MlflowTracking(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}").client()
    versions = client.search_model_versions(f"name='{FLEET_MODEL}'")
    assert len(versions) == 2  # the demo's champion and the retrained candidate
    champion = client.get_model_version_by_alias(FLEET_MODEL, "champion")
    assert str(champion.version) == ("2" if decision.group(1) == "promote" else "1")


def check_rehearsal(output: str, home: Path) -> None:
    """``make rehearse-serve`` ran every check on the rehearsed pod, and each passed."""
    lines = [line for line in output.splitlines() if line.startswith(("ok ", "FAIL"))]
    assert len(lines) == 7 and all(line.startswith("ok ") for line in lines), output[-4000:]
    assert "rehearsal passed" in output
    assert not list(home.glob("rehearsal-*")), "a passed rehearsal leaves no staging behind"


#: Checks by a block's exact first line; each gets the block's output and the clone's PDM_HOME.
CHECKS: dict[str, Callable[[str, Path], None]] = {
    "make demo": check_demo,
    "make drift-demo": check_drift_demo,
    "make rehearse-serve": check_rehearsal,
}


def check_for(first_line: str) -> Callable[[str, Path], None] | None:
    """The check of a block whose first line is ``first_line`` (comments ignored), if any."""
    return CHECKS.get(first_line.split("#", 1)[0].strip())
