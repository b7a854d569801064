"""The drift story for a person (``make drift-demo``), with the real Dagster daemon.

1. Makes sure a champion exists (runs the ``make demo`` pipeline when none does).
2. Starts ``dagster-daemon`` on the same ``$PDM_HOME``, so the landing-zone and drift sensors run
   exactly as under ``make ui``.
3. Lands stationary simulator batches: each is ingested, the drift report stays below the
   threshold, nothing retrains.
4. Lands a batch with a bias on two sensors: the drift report crosses the threshold, the drift
   sensor requests the ``retrain`` job, and the promotion gate decides whether the retrained
   model replaces the champion.

Every step is printed; afterwards ``make ui`` shows the runs, the sensor ticks and the reports.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pdm_assets.metadata import metadata_value
from pdm_core import paths
from pdm_platform.instance import ensure_instance

RUN_DONE = ("SUCCESS", "FAILURE", "CANCELED")
DRIFT_SENSOR = "drift_retrain_sensor"


def _say(text: str) -> None:
    print(f"[drift-demo {time.strftime('%H:%M:%S')}] {text}", flush=True)


def wait_until(what: str, probe: Callable[[], Any], timeout: float, every: float = 2.0) -> Any:
    """Polls ``probe`` until it returns something truthy; raises TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


class DemoClock:
    """What the demo observes in the Dagster instance (runs, materialisations)."""

    def __init__(self, instance: Any) -> None:
        self.instance = instance

    def run_for_partition(self, batch: str) -> Any:
        """The finished ingestion run of a batch, if any."""
        import dagster as dg

        runs = self.instance.get_runs(dg.RunsFilter(tags={"dagster/partition": batch}), limit=1)
        return runs[0] if runs and runs[0].status.value in RUN_DONE else None

    def drift_report_after(self, run_id: str) -> Any:
        """The drift report materialised by run ``run_id``."""
        import dagster as dg

        record = self.instance.get_latest_materialization_event(dg.AssetKey("drift_report"))
        if record and record.run_id == run_id:
            return record.asset_materialization.metadata
        return None

    def retrain_runs(self, since: float) -> list[Any]:
        """Retrain runs created after ``since`` (epoch seconds)."""
        import datetime as dt

        import dagster as dg

        after = dt.datetime.fromtimestamp(since, tz=dt.UTC)
        return list(self.instance.get_runs(dg.RunsFilter(job_name="retrain", created_after=after)))

    def sensor_tick_after(self, sensor: str, since: float) -> Any:
        """The first finished tick of ``sensor`` that started after ``since`` (epoch seconds)."""
        from dagster._core.definitions.run_request import InstigatorType
        from dagster._core.scheduler.instigation import TickStatus

        done = [TickStatus.SKIPPED, TickStatus.SUCCESS, TickStatus.FAILURE]
        for state in self.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            if state.instigator_name == sensor:
                ticks = self.instance.get_ticks(
                    state.instigator_origin_id, state.selector_id, after=since, statuses=done
                )
                return min(ticks, key=lambda tick: tick.timestamp) if ticks else None
        return None

    def run_end(self, run_id: str) -> float:
        """When a finished run ended (epoch seconds; now if the storage has no end time)."""
        record = self.instance.get_run_record_by_id(run_id)
        return (record.end_time if record else None) or time.time()

    def run(self, run_id: str) -> Any:
        """A run by id."""
        return self.instance.get_run_by_id(run_id)

    def candidate_of(self, run_id: str) -> dict[str, Any]:
        """The promotion decision recorded by ``fleet_model_candidate`` in a run."""
        import dagster as dg

        record = self.instance.get_latest_materialization_event(
            dg.AssetKey("fleet_model_candidate")
        )
        if record is None or record.run_id != run_id:
            return {}
        md = record.asset_materialization.metadata
        keys = ("decision", "reason", "registered_model", "champion_version")
        return {k: metadata_value(md, k) for k in keys}


def start_daemon(log: Path, ui_port: int | None = None) -> subprocess.Popen:
    """Starts ``dagster-daemon run`` (or ``dagster dev``: webserver + daemon on ``ui_port``).

    Output goes to ``log``; the process gets its own session so that
    :func:`stop_process_group` stops its code servers too.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "dagster-daemon"), "run", "-m", "pdm_platform.definitions"]
    if ui_port is not None:
        command = [str(bin_dir / "dagster"), "dev", "-m", "pdm_platform.definitions",
                   "-h", "127.0.0.1", "-p", str(ui_port)]  # fmt: skip
    handle = open(log, "ab")  # noqa: SIM115 - kept open for the daemon's lifetime
    return subprocess.Popen(
        command, stdout=handle, stderr=subprocess.STDOUT, env=os.environ.copy(),
        start_new_session=True,
    )  # fmt: skip


def ui_answers(port: int) -> bool:
    """True when the Dagster webserver on 127.0.0.1:``port`` answers ``/server_info``."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def stop_process_group(process: subprocess.Popen, grace: float = 30.0) -> None:
    """Stops a process started in its own session and everything it forked.

    Used for the daemon (and its code server) here, and for the servers the tests start.

    Args:
        process: A process started with ``start_new_session=True``.
        grace: Seconds between SIGTERM and SIGKILL.
    """
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def land(feed_config: Any, count: int) -> list[tuple[str, str]]:
    """Writes ``count`` feed batches into the landing zone; returns (file, batch id) pairs."""
    from pdm_core.feed import run_feed
    from pdm_core.landing import batch_id
    from pdm_resources.landing_zone import LocalLandingZone

    zone = LocalLandingZone.from_env()
    written = run_feed(feed_config, zone.incoming, Path(zone.root), count, progress=False)
    return [(p.name, batch_id(p.name, p.read_bytes())) for p in written]


def follow_batch(clock: DemoClock, name: str, batch: str, timeout: float) -> dict:
    """Waits for a batch's ingestion run and prints its drift report."""
    run = wait_until(
        f"the ingestion run of {name}", lambda: clock.run_for_partition(batch), timeout
    )
    if run.status.value != "SUCCESS":
        raise RuntimeError(f"ingestion of {name} ended {run.status.value}: run {run.run_id}")
    md = wait_until("its drift report", lambda: clock.drift_report_after(run.run_id), 30)
    share, threshold = metadata_value(md, "drift_share"), metadata_value(md, "threshold")
    _say(
        f"  {name}: ingested (run {run.run_id[:8]}); drift share {share:.2f} "
        f"({metadata_value(md, 'n_drifted')}/{metadata_value(md, 'n_checked')} features, threshold "
        f"{threshold:.2f}) vs champion v{metadata_value(md, 'champion_version')}"
    )
    return {"run": run, "drift_share": share, "threshold": threshold}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stationary", type=int, default=2, help="stationary batches first")
    parser.add_argument(
        "--bias", action="append", default=None, metavar="SENSOR=SD",
        help="bias of the drifted batch in sd units (default vibration=0.5 temperature=0.5)",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=900, help="seconds per wait")
    parser.add_argument(
        "--ui-port", type=int, default=None,
        help="run `dagster dev` (webserver + daemon) on this port instead of dagster-daemon "
        "alone, to watch in the browser while the demo runs",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the drift story; returns 0 when drift triggered a retrain that completed."""
    args = parse_args(argv)
    ensure_instance()
    os.environ.setdefault("BENTOML_HOME", str(paths.bentoml_home()))
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    # A short cooldown, so that running the demo twice shows a second retrain.
    os.environ.setdefault("PDM_RETRAIN_COOLDOWN_MINUTES", "2")
    import dagster as dg

    from pdm_core.feed import FeedConfig
    from pdm_resources.telemetry_source import TelemetrySource

    source = TelemetrySource.from_env()
    if source.source != "simulator":
        _say(f"the drift demo lands simulator batches; PDM_SOURCE is {source.source!r}")
        return 2
    bias = {}
    for item in args.bias or ["vibration=0.5", "temperature=0.5"]:
        sensor, _, sd = item.partition("=")
        bias[sensor] = float(sd)
    base = {"n_machines": source.sim_machines, "seed": source.sim_seed,
            "horizon": source.horizon, "start_step": source.sim_steps}  # fmt: skip

    with dg.DagsterInstance.get() as instance:
        clock = DemoClock(instance)
        if instance.get_latest_materialization_event(dg.AssetKey("champion_model")) is None:
            _say("no champion yet: running the make demo pipeline first")
            from pdm_platform import demo

            if demo.main() != 0:
                return 1
        log = paths.pdm_home() / "logs" / "drift-demo-daemon.log"
        what = "dagster dev" if args.ui_port else "dagster-daemon"
        _say(f"starting {what} (log: {log})")
        daemon = start_daemon(log, args.ui_port)
        try:
            if args.ui_port:
                wait_until("the Dagster UI", lambda: ui_answers(args.ui_port), 120, every=1.0)
                _say(f"Dagster UI answering on http://127.0.0.1:{args.ui_port}")
            _say(f"1) landing {args.stationary} stationary batch(es)")
            for name, batch in land(FeedConfig(**base), args.stationary):
                follow_batch(clock, name, batch, args.timeout)
            started = time.time()
            _say(f"2) landing one drifted batch (bias in sd units: {bias})")
            drifted = FeedConfig(**base, bias_sd=bias)
            (name, batch), = land(drifted, 1)  # fmt: skip
            seen = follow_batch(clock, name, batch, args.timeout)
            if seen["drift_share"] < seen["threshold"]:
                _say("drift stayed below the threshold: no retraining expected")
                return 1
            return _retrain_after_drift(clock, started, args.timeout)
        finally:
            stop_process_group(daemon)


def _retrain_after_drift(clock: DemoClock, started: float, timeout: float) -> int:
    """Follows the retrain the drift sensor requests, its promotion decision and the next tick."""
    _say("3) waiting for the drift sensor to request the retrain job")
    retrain = wait_until("a drift-triggered retrain run",
                         lambda: clock.retrain_runs(started), timeout)[0]  # fmt: skip
    _say(
        f"  retrain run {retrain.run_id[:8]} requested by the sensor "
        f"(run key {retrain.tags.get('dagster/run_key', '?')})"
    )
    done = wait_until("the retrain run to finish",
                      lambda: clock.run(retrain.run_id).status.value in RUN_DONE
                      and clock.run(retrain.run_id), timeout)  # fmt: skip
    _say(f"  retrain run ended {done.status.value} in {time.time() - started:.0f}s "
         "after the drifted batch landed")  # fmt: skip
    decision = clock.candidate_of(retrain.run_id)
    _say(f"4) promotion decision: {decision.get('decision')} - {decision.get('reason')}")
    _say(f"  registered {decision.get('registered_model')}; previous champion "
         f"v{decision.get('champion_version')}")  # fmt: skip
    if decision.get("decision") == "reject":
        _say("  the retrained model was not better: the champion stays (the blocking "
             "check not_worse_than_champion stopped the run before promotion)")  # fmt: skip
    ended = clock.run_end(retrain.run_id)
    tick = wait_until("the drift sensor's next tick",
                      lambda: clock.sensor_tick_after(DRIFT_SENSOR, ended),
                      timeout)  # fmt: skip
    outcome = tick.skip_reason if tick.status.value == "SKIPPED" else (
        f"requested {len(tick.run_ids)} run(s)")  # fmt: skip
    _say(f"5) the drift sensor after the retrain: {tick.status.value} - {outcome}")
    _say("browse the runs, sensor ticks and reports with: make ui")
    return 0 if decision.get("decision") else 1


if __name__ == "__main__":
    sys.exit(main())
