"""Live fleet scoring: warning quality, scoring throughput and landing-to-score latency.

Usage (what ``make bench-live`` runs, after ``make demo`` has made a champion)::

    python benchmarks/bench_live.py --update BENCHMARKS.md

* **Warning quality**: the feed's batches (:mod:`pdm_core.feed`, default ``FeedConfig``: 40
  machines x 50 readings per batch, ``--batches`` of them) are scored in landing order by the
  champion with :func:`pdm_core.live_scoring.score_batch`, each batch's windows reaching back
  into the batches before it, as ``machine_risk`` does; alerts are
  :func:`pdm_core.alerts.risk_alerts` under the champion's own rule (HIGH/CRITICAL with the
  predicted RUL inside its gate), kept once per dedup key, as the alert sink keeps them.
  They are judged against the simulator's failures (:mod:`benchmarks.live_quality`). The
  baseline, judged the same way on the same readings: a fixed threshold per sensor on the raw
  readings (one quantile of the healthy training readings, chosen for F1 on the training
  source), one alert per machine and day.
* **Scoring throughput**: readings scored per second by ``score_batch`` over those batches,
  warm (the first pass, which also loads and compiles, is the quality replay above): one
  process, and two processes at once (each replaying the feed, started together), as two
  ingestion runs of two landed batches score side by side on this machine's two cores. Against
  the service's Arrow ``/predict_batch`` in the same run: the same champion served by
  ``fleet-serve`` (two workers) on 127.0.0.1, one batch's windows per call, two calls in
  flight. Each rate is the median of ``--repeats`` rounds, the rounds of the three
  interleaved so that a noisy neighbour slows all three alike.
* **Latency** (``--latency-batches``, 0 to skip): with the real daemon on ``$PDM_HOME`` (as
  ``make drift-demo`` starts it), feed batches are landed one at a time as ``make feed`` lands
  them; for each, the file's write to the landing zone -> the materialisation of
  ``machine_risk`` (risk rows stored and alerts raised), split into the sensor's wait (write ->
  run created), run start (created -> started), steps before scoring (started ->
  ``machine_risk`` step start) and scoring (that step).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_features import cpu_model  # noqa: E402
from benchmarks.live_quality import (  # noqa: E402
    WarningQuality,
    daily_alerts,
    failures_of,
    fit_threshold_rule,
    warning_quality,
)
from benchmarks.report_block import write_block  # noqa: E402
from pdm_core import schema  # noqa: E402
from pdm_core.alerts import ALERT_RUL_SHARE, IMMINENT_RUL_SHARE  # noqa: E402
from sensors_schedules.landing_sensor import LANDING_INTERVAL_SECONDS  # noqa: E402

if TYPE_CHECKING:
    from pdm_core.alerts import RiskAlertRule
    from pdm_core.feed import FeedConfig
    from pdm_core.models.bundle import FleetModel

BLOCK = "live"
HEADING = "## Live fleet scoring"
TOLERANCE = pd.Timedelta(minutes=10)


@dataclass
class Replay:
    """The feed scored batch by batch."""

    rows: pd.DataFrame
    truth: pd.DataFrame
    alerts: pd.DataFrame
    anomaly_alerts: int
    max_rul: float | None
    imminent_rul: float | None
    skipped: dict[str, int]
    readings: int
    seconds: float
    batch_sizes: list[int]


def champion() -> tuple[FleetModel, str, Path]:
    """The registry's champion under ``$PDM_HOME`` (from ``make demo``)."""
    from pdm_core.models.bundle import FleetModel
    from pdm_core.paths import mlflow_tracking_uri
    from pdm_core.registry import download_bundle

    uri = os.environ.get("MLFLOW_TRACKING_URI") or mlflow_tracking_uri()
    try:
        bundle, version = download_bundle(uri)
    except Exception as error:
        raise SystemExit(
            f"no champion in the registry at {uri} ({error}): run make demo first"
        ) from error
    return FleetModel.load(bundle, serving=True), str(version.version), bundle


def replay(model: FleetModel, version: str, batches: int, feed: FeedConfig | None = None) -> Replay:
    """Scores the feed's first ``batches`` batches in order, as ``machine_risk`` would."""
    from pdm_core.feed import FeedConfig, feed_batches
    from pdm_core.live_scoring import SKIP_REASONS, score_batch

    keep = model.feature_state.window_length - 1
    history: pd.DataFrame | None = None
    newest = pd.Series(dtype="int64")
    rows, truths, sizes = [], [], []
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    seconds, total = 0.0, 0
    for number, frame in feed_batches(feed or FeedConfig(), 0, batches):
        readings = frame.drop(columns=list(schema.LABEL_COLUMNS))
        now = pd.Timestamp(frame[schema.TIMESTAMP].max()) + pd.Timedelta(minutes=1)
        started = time.perf_counter()
        earlier = readings.iloc[:0] if history is None else history
        result = score_batch(
            model, readings, earlier, batch_id=f"feed-{number:05d}", model_name="pdm-fleet-model",
            model_version=version, newest_before=newest, now=now, future_tolerance=TOLERANCE,
        )  # fmt: skip
        seconds += time.perf_counter() - started
        total += len(readings)
        sizes.append(len(readings))
        for reason, count in result.skipped_by_reason().items():
            skipped[reason] += count
        rows.append(result.rows)
        truths.append(frame)
        history = pd.concat([history, readings]).groupby(schema.MACHINE, observed=True).tail(keep)
        newest = history.astype({schema.MACHINE: str}).groupby(schema.MACHINE)[schema.CYCLE].max()
    scored = pd.concat(rows, ignore_index=True)
    alerts, anomalies = raised_alerts(scored, model.alert_rule)
    return Replay(
        rows=scored,
        truth=pd.concat(truths, ignore_index=True),
        alerts=alerts,
        anomaly_alerts=anomalies,
        max_rul=model.alert_rule.max_rul,
        imminent_rul=model.alert_rule.imminent_rul,
        skipped=skipped,
        readings=total,
        seconds=seconds,
        batch_sizes=sizes,
    )


def _timed_replay(model: FleetModel, version: str, batches: int) -> tuple[int, float]:
    """Readings scored and seconds spent in ``score_batch`` over one replay of the feed."""
    done = replay(model, version, batches)
    return len(done.rows), done.seconds


def _replay_worker(batches: int, rounds: int, ready: Any, results: Any) -> None:
    """One process of the two-process rate: loads the champion, warms up, then replays the
    feed once per round, each round started together with the other process.

    No thread limits are set here: ``score_batch`` holds its own (see
    :func:`pdm_core.live_scoring.single_blas_thread`), as it does in an ingestion run.
    """
    model, version, _ = champion()
    replay(model, version, 2)
    ready.wait()  # loaded and warm: the rounds may start
    for _ in range(rounds):
        ready.wait()
        results.put(_timed_replay(model, version, batches))


class ScoringRates:
    """The in-run scoring rates, one process and two at once, measured round by round."""

    def __init__(self, batches: int, rounds: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.ready = context.Barrier(3)
        self.results = context.Queue()
        self.workers = [
            context.Process(target=_replay_worker, args=(batches, rounds, self.ready, self.results))
            for _ in range(2)
        ]
        for worker in self.workers:
            worker.start()
        self.started = False
        self.one: list[float] = []
        self.two: list[float] = []

    def round(self, model: FleetModel, version: str, batches: int) -> None:
        """One round: the one-process rate here, then both workers at once."""
        if not self.started:  # both workers loaded and warm, so they do not slow this one
            self.ready.wait(timeout=600)
            self.started = True
        readings, seconds = _timed_replay(model, version, batches)
        self.one.append(readings / seconds)
        self.ready.wait(timeout=600)
        parts = [self.results.get(timeout=600) for _ in self.workers]
        self.two.append(sum(n for n, _ in parts) / max(t for _, t in parts))

    def close(self) -> None:
        for worker in self.workers:
            worker.join(timeout=60)


def raised_alerts(rows: pd.DataFrame, rule: RiskAlertRule) -> tuple[pd.DataFrame, int]:
    """The high-risk alerts (machine, cycle) the scored rows raise under ``rule``, once per
    dedup key as the alert sink keeps them, and the number of anomaly alerts.

    Batches land in time order, so deduplicating over all rows in reading order keeps the
    same first reading per key as raising them batch by batch does.
    """
    from pdm_core.alerts import risk_alerts

    ordered = rows.sort_values([schema.MACHINE, schema.CYCLE], kind="stable")
    found = risk_alerts(ordered.to_dict("records"), "1970-01-01", rule)
    high = [(a.details["machine_id"], a.details["cycle"]) for a in found if a.kind == "high_risk"]
    alerts = pd.DataFrame(high, columns=[schema.MACHINE, schema.CYCLE])
    return alerts, sum(a.kind == "anomaly" for a in found)


def judge(done: Replay, horizon: int) -> tuple[WarningQuality, WarningQuality, Any]:
    """The model's and the threshold baseline's warning quality on the same scored readings.

    ``horizon`` is the window a warning must fall in (pass twice the label's horizon to see
    how many alerts come earlier than the label's horizon).
    """
    from pdm_core.simulator import SENSORS, SimulatorConfig, simulate

    scored = done.rows[[schema.MACHINE, schema.CYCLE]].astype({schema.MACHINE: str})
    failures = failures_of(done.truth)
    model = warning_quality(done.alerts, failures, scored, horizon)
    rule = fit_threshold_rule(simulate(SimulatorConfig()), list(SENSORS))
    keys = [schema.MACHINE, schema.CYCLE]
    truth = done.truth.astype({schema.MACHINE: str}).merge(scored, on=keys)
    baseline = warning_quality(daily_alerts(truth, rule.fires(truth)), failures, scored, horizon)
    return model, baseline, rule


def judge_alerts(done: Replay, alerts: pd.DataFrame, horizon: int) -> WarningQuality:
    """Warning quality of other ``alerts`` on the same scored readings and failures."""
    scored = done.rows[[schema.MACHINE, schema.CYCLE]].astype({schema.MACHINE: str})
    return warning_quality(alerts, failures_of(done.truth), scored, horizon)


class ServiceRate:
    """The service's Arrow ``/predict_batch`` on two workers: ``calls`` calls per round, two
    in flight, each call one batch of ``per_call`` windows."""

    def __init__(
        self, bundle: Path, model: FleetModel, truth: pd.DataFrame, per_call: int, calls: int
    ) -> None:
        from benchmarks.bench_service import start
        from bento_service.arrow_batch import arrow_from_frame
        from bento_service.schemas import WindowContract

        state = model.feature_state
        length = state.window_length
        windows = []
        ordered = truth.sort_values([schema.MACHINE, schema.CYCLE])
        for _, readings in ordered.groupby(schema.MACHINE, observed=True):
            for end in range(length, len(readings) + 1, length):
                window = readings.iloc[end - length : end].copy()
                window[schema.MACHINE] = f"w-{len(windows):05d}"
                windows.append(window)
                if len(windows) == per_call:
                    break
            if len(windows) == per_call:
                break
        self.body = arrow_from_frame(pd.concat(windows), WindowContract.of(state))
        self.per_call, self.calls = per_call, calls
        work = Path(os.environ.get("TMPDIR", "/tmp")) / "pdm-bench-live"
        work.mkdir(parents=True, exist_ok=True)
        env = {
            "PDM_MODEL_DIR": str(bundle),
            "PDM_SERVE_WORKERS": "2",
            "BENTOML_DO_NOT_TRACK": "True",
            "PDM_SERVE_MAX_BATCH": str(max(per_call, 5000)),
        }
        self.process, self.url, _ = start("bentoml", env, work / "service.log")
        self.rates: list[float] = []
        for _ in range(2):  # warm both workers
            self._call(0)

    def _call(self, _: int) -> int:
        import requests

        from bento_service.arrow_batch import ARROW_STREAM

        reply = requests.post(f"{self.url}/predict_batch", data=self.body,
                              headers={"content-type": ARROW_STREAM}, timeout=120)  # fmt: skip
        reply.raise_for_status()
        return self.per_call

    def round(self) -> None:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=2) as pool:
            done = sum(pool.map(self._call, range(self.calls)))
        self.rates.append(done / (time.perf_counter() - started))

    def close(self) -> None:
        from benchmarks.bench_service import stop

        stop(self.process)


def latency(batches: int, timeout: float) -> list[dict[str, float]]:
    """Landing-to-score latency of ``batches`` feed batches with the real daemon."""
    import dagster as dg

    from pdm_core import paths
    from pdm_core.feed import FeedConfig
    from pdm_core.names import MACHINE_RISK
    from pdm_platform.drift_demo import (
        DemoClock,
        land,
        start_daemon,
        stop_process_group,
        wait_until,
    )
    from pdm_platform.instance import ensure_instance

    ensure_instance()
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    log = paths.pdm_home() / "logs" / "bench-live-daemon.log"
    out = []
    with dg.DagsterInstance.get() as instance:
        clock = DemoClock(instance)
        daemon = start_daemon(log)
        try:
            time.sleep(20)  # the daemon's first sensor tick: landing then waits only its interval
            for _ in range(batches):
                landed = time.time()
                ((name, batch),) = land(FeedConfig(), 1)
                path = _landed_path(name)
                written = os.path.getmtime(path) if path else landed
                run = wait_until(f"the ingestion run of {name}",
                                 lambda b=batch: clock.run_for_partition(b), timeout)  # fmt: skip
                if run.status.value != "SUCCESS":
                    raise RuntimeError(f"ingestion of {name} ended {run.status.value}")
                out.append(_run_parts(instance, run.run_id, MACHINE_RISK, written))
                print(f"  {name}: {out[-1]}", flush=True)
        finally:
            stop_process_group(daemon)
    return out


def _landed_path(name: str) -> Path | None:
    from pdm_resources.landing_zone import LocalLandingZone

    zone = LocalLandingZone.from_env()
    for folder in (zone.incoming, Path(zone.root)):
        found = list(Path(folder).rglob(name))
        if found:
            return found[0]
    return None


def _run_parts(instance: Any, run_id: str, step: str, written: float) -> dict[str, float]:
    """Seconds of each part from the file's write to ``step``'s materialisation."""
    import dagster as dg

    record = instance.get_run_record_by_id(run_id)
    created = record.create_timestamp.timestamp()
    started = record.start_time or created
    step_start = next(
        e.timestamp
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
        if e.step_key == step
    )
    stored = next(
        e.timestamp
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        if e.step_key == step
    )
    return {
        "sensor_wait": created - written,
        "run_start": started - created,
        "before_scoring": step_start - started,
        "scoring": stored - step_start,
        "total": stored - written,
        "run_ends": (record.end_time or stored) - written,
    }


def _gate(done: Replay) -> str:
    return "n/a" if done.max_rul is None else f"{done.max_rul:g}"


def _rates(values: list[float]) -> str:
    return "rounds " + ", ".join(f"{v:,.0f}" for v in values)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def quality_rows(name: str, q: WarningQuality) -> str:
    return (
        f"| {name} | {q.failures} | {q.warned} ({_fmt(q.warned_share, 3)}) "
        f"| {_fmt(q.median_lead, 1)} | {q.alerts} "
        f"| {q.true_alerts} / {q.false_alerts} / {q.censored_alerts} "
        f"| {_fmt(q.precision, 3)} | {q.false_per_1000:.2f} |"
    )


def report(args: argparse.Namespace, version: str, done: Replay,
           judged: tuple[WarningQuality, ...], rule: Any, horizon: int,
           rates: ScoringRates, service: list[float] | None,
           parts: list[dict[str, float]]) -> str:  # fmt: skip
    """The markdown block; ``judged``: model and baseline in the horizon, then in twice it."""
    model, ungated, baseline, early, early_baseline = judged
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {cpu_model()} ({os.cpu_count()} cores), "
        f"Python {platform.python_version()}; command: `make bench-live` "
        f"(`python benchmarks/bench_live.py --batches {args.batches} "
        f"--latency-batches {args.latency_batches} --update BENCHMARKS.md`).",
        "",
        f"Champion: pdm-fleet-model v{version} from `make demo`. Feed: {args.batches} batches x "
        f"{done.batch_sizes[0] if done.batch_sizes else 0} readings (default `FeedConfig`), "
        f"{done.readings} readings, {len(done.rows)} scored, skipped {done.skipped}; horizon "
        f"{horizon} readings.",
        "",
        "| alerts from | failures (whole horizon scored) | warned (share) | median lead "
        "(readings) | alerts | true / false / censored | precision | false per 1,000 "
        "machine-readings |",
        "|---|---|---|---|---|---|---|---|",
        quality_rows(
            f"champion v{version} (HIGH/CRITICAL, RUL <= {_gate(done)}, imminent "
            f"<= {_fmt(done.imminent_rul, 0)})",
            model,
        ),
        quality_rows("same scores, level alone (no RUL gate)", ungated),
        quality_rows(f"threshold per sensor (healthy q={rule.quantile})", baseline),
        quality_rows(f"champion, judged in {2 * horizon} readings", early),
        quality_rows(f"threshold rule, judged in {2 * horizon} readings", early_baseline),
        "",
        f"The first three rows are the goal's measure: an alert counts inside the label's horizon "
        f"({horizon} readings). The champion raises a HIGH/CRITICAL alert only when its predicted "
        f"RUL is within {ALERT_RUL_SHARE:.3g} of its horizon, and once more that day when the "
        f"RUL falls within {IMMINENT_RUL_SHARE:.3g} of it (imminent; "
        "`pdm_core.alerts.RiskAlertRule`, shares chosen on another seed's feed by "
        "`benchmarks/select_alert_rule.py`); the second row is the same scores alerting on the "
        "level alone, once per level and day. The last two judge the champion's "
        "and the rule's alerts in twice the horizon: an alert that comes earlier than the "
        "horizon is false in the first rows and true here.",
        "",
        f"Anomaly alerts (not counted above): {done.anomaly_alerts}. Goals: warned share >= 0.9, "
        f"median lead >= {horizon / 2:g} readings (half the horizon), precision >= 0.8.",
        "",
        f"Scoring in the run (`score_batch`, warm, {len(done.rows)} readings per replay), median "
        f"of {len(rates.one)} rounds: one process **{statistics.median(rates.one):,.0f} "
        f"readings/s** ({_rates(rates.one)}); two processes at once, as two ingestion runs "
        f"side by side **{statistics.median(rates.two):,.0f} readings/s** "
        f"({_rates(rates.two)}).",
    ]
    if service:
        served = statistics.median(service)
        lines.append(
            f"The service's Arrow `/predict_batch` in the same rounds (two workers, two calls in "
            f"flight, {args.calls} calls of {args.per_call} windows per round): "
            f"**{served:,.0f} windows/s** ({_rates(service)}); ratio in-run / service, both on "
            f"two processes: **{statistics.median(rates.two) / served:.2f}** (goal >= 1); one "
            f"run's process against the two-worker service: "
            f"{statistics.median(rates.one) / served:.2f}."
        )
    if parts:
        keys = ("sensor_wait", "run_start", "before_scoring", "scoring", "total", "run_ends")
        lines += [
            "",
            f"Latency with the real daemon ({len(parts)} batches landed one at a time; landing "
            f"sensor minimum interval {LANDING_INTERVAL_SECONDS} s, daemon sensor loop 5 s), "
            "seconds, median (min-max):",
            "",
            "| write -> run created | run created -> started | started -> scoring step | "
            "scoring step | write -> risk rows and alerts | write -> run ends (drift report, "
            "fleet health) |",
            "|---|---|---|---|---|---|",
            "| "
            + " | ".join(
                f"{statistics.median(p[k] for p in parts):.1f} "
                f"({min(p[k] for p in parts):.1f}-{max(p[k] for p in parts):.1f})"
                for k in keys
            )
            + " |",
            "",
            "Goal: median write -> risk rows <= 30 s.",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="feed batches to score")
    parser.add_argument("--per-call", type=int, default=2000, help="windows per service call")
    parser.add_argument("--calls", type=int, default=50, help="service calls timed")
    parser.add_argument("--no-service", action="store_true", help="skip the service comparison")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the scoring rates")
    parser.add_argument("--latency-batches", type=int, default=5, help="0 skips the daemon part")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--update", type=Path, help="write the block into this markdown file")
    args = parser.parse_args()
    model, version, bundle = champion()
    from pdm_core.alerts import RiskAlertRule
    from pdm_core.feed import FeedConfig

    horizon = FeedConfig().horizon  # the labels' horizon of the feed and of the demo's source
    print(f"champion v{version}; replaying {args.batches} feed batches", flush=True)
    done = replay(model, version, args.batches)
    quality, baseline, rule = judge(done, horizon)
    ungated = judge_alerts(done, raised_alerts(done.rows, RiskAlertRule())[0], horizon)
    early, early_baseline, _ = judge(done, 2 * horizon)
    print(f"model: {quality}\nbaseline: {baseline}", flush=True)
    rates = ScoringRates(args.batches, args.repeats)
    served = None if args.no_service else ServiceRate(
        bundle, model, done.truth, args.per_call, args.calls
    )  # fmt: skip
    try:
        for _ in range(args.repeats):
            rates.round(model, version, args.batches)
            if served:
                served.round()
    finally:
        rates.close()
        if served:
            served.close()
    service = served.rates if served else None
    print(f"in-run one {rates.one}, two {rates.two}; service {service}", flush=True)
    parts = latency(args.latency_batches, args.timeout) if args.latency_batches else []
    judged = (quality, ungated, baseline, early, early_baseline)
    text = report(args, version, done, judged, rule, horizon,
                  rates, service, parts)  # fmt: skip
    print(text)
    if args.update:
        write_block(args.update, BLOCK, text, HEADING)


if __name__ == "__main__":
    main()
