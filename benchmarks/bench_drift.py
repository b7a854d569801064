"""Drift detection of the monitor with the default thresholds, on simulator feed streams.

Usage (what ``make bench-drift`` runs)::

    python benchmarks/bench_drift.py --update BENCHMARKS.md

The champion's drift reference is built as the pipeline builds it for the default source,
with the pipeline's own pure functions: ``simulate(SimulatorConfig())`` (40 machines x 2000
readings, seed 42), ``assign_splits`` with the default ``SplitConfig``, ``fit_feature_state``
on the train rows with the default ``FeatureConfig``, ``compute_features`` +
``build_training_set``, then ``reference_sample``. Every batch of the feed
(:mod:`pdm_core.feed`, default ``FeedConfig``: 40 machines x 50 readings, continuing after
step 2000) is judged as the ``drift_report`` asset judges one landed batch
(``current_features`` + ``ks_drift`` with ``DriftPolicy().settings()``), and the drift shares
go through the drift sensor's rule ``decide_retrain`` in order, on a simulated clock.

Streams:

* stationary: ``--stationary`` batches of the feed without drift: batches at or over the
  threshold, retrain triggers, and the per-feature KS statistic D (the margin below the
  default effect size 0.2);
* drifted, one stream per ``--seeds`` value (the feed's seed): ``--drift-from`` clean
  batches, then ``--drifted`` drifted ones; is the FIRST drifted batch detected?
* timing: one drift evaluation against bare ``scipy.stats.ks_2samp`` on the same columns.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import scipy
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_features import cpu_model  # noqa: E402 (same folder: run as a script)

from benchmarks.report_block import write_block  # noqa: E402
from pdm_core.drift import DriftSettings, ks_drift  # noqa: E402
from pdm_core.drift_inputs import (  # noqa: E402
    current_features,
    monitored_features,
    reference_sample,
)
from pdm_core.features import (  # noqa: E402
    FeatureConfig,
    FeatureState,
    compute_features,
    fit_feature_state,
)
from pdm_core.feed import FeedConfig, feed_batches  # noqa: E402
from pdm_core.retraining import DriftVerdict, decide_retrain  # noqa: E402
from pdm_core.simulator import DriftSpec, SimulatorConfig, dataset_info, simulate  # noqa: E402
from pdm_core.split import TRAIN, SplitConfig, assign_splits, split_of_rows  # noqa: E402
from pdm_core.training_set import build_training_set  # noqa: E402
from pdm_resources.drift_policy import DriftPolicy  # noqa: E402

BLOCK = "drift"
HEADING = "## Drift detection"
INTRO = """\
`make bench-drift` builds the champion's drift reference exactly as the pipeline does for the
default simulator source and judges simulator feed batches (40 machines x 50 readings each) as
the `drift_report` asset judges one landed batch, with the default `DriftPolicy()` thresholds
(BH-corrected KS, alpha 0.05, effect size D >= 0.2, drift share >= 0.3, 60 min cooldown). The
drift shares go through the drift sensor's rule `decide_retrain` in order on a simulated
clock. With 5 monitored features, a share >= 0.3 means at least 2 drifted features."""

BIAS_SENSORS = ("vibration", "temperature")
SCENARIOS: tuple[tuple[str, dict], ...] = (
    ("bias +0.5 sd on vibration, temperature", {"bias_sd": dict.fromkeys(BIAS_SENSORS, 0.5)}),
    ("new operating regime (overload)", {"drift": DriftSpec(new_regime=True)}),
    ("bias +0.25 sd on vibration, temperature", {"bias_sd": dict.fromkeys(BIAS_SENSORS, 0.25)}),
    ("noise x1.5 on every sensor", {"drift": DriftSpec(noise_scale=1.5)}),
)
"""Drifted streams: name and the ``FeedConfig`` fields that inject the drift."""


@dataclass
class Champion:
    """The champion's feature definition and drift reference, as the pipeline builds them."""

    state: FeatureState
    reference: pd.DataFrame
    columns: list[str]
    train_rows: int
    seconds: float


@dataclass
class Stream:
    """Drift results of one stream of batches, in order."""

    shares: list[float] = field(default_factory=list)
    verdicts: list[DriftVerdict] = field(default_factory=list)
    statistics: list[np.ndarray] = field(default_factory=list)
    drifted: list[list[str]] = field(default_factory=list)
    unseen: list[float] = field(default_factory=list)
    triggers: list[int] = field(default_factory=list)


def build_champion() -> Champion:
    """The drift reference of a champion trained on the default simulator source."""
    started = time.perf_counter()
    config = SimulatorConfig()
    raw = simulate(config)
    info = dataset_info(config)
    segments = assign_splits(raw, info, SplitConfig())
    train_mask = split_of_rows(raw, segments) == TRAIN
    state = fit_feature_state(raw, info, FeatureConfig(), train_mask=train_mask)
    features = compute_features(raw, state)
    training_set, _ = build_training_set(features, raw, segments, state.window_length)
    reference = reference_sample(training_set, state)
    return Champion(
        state=state,
        reference=reference,
        columns=monitored_features(state),
        train_rows=int((training_set["split"] == TRAIN).sum()),
        seconds=time.perf_counter() - started,
    )


def judge(
    champion: Champion,
    config: FeedConfig,
    n_batches: int,
    settings: DriftSettings,
    policy: DriftPolicy,
    minutes_per_batch: float,
) -> Stream:
    """Judges batches 0 .. n_batches - 1 of the feed; the sensor's rule runs on each share."""
    stream = Stream()
    last_triggered: float | None = None
    for number, batch in feed_batches(config, 0, n_batches):
        current = current_features(batch, champion.state)
        result = ks_drift(champion.reference, current, champion.columns, settings)
        stream.shares.append(result.drift_share)
        stream.statistics.append(result.table["statistic"].to_numpy(dtype=np.float64))
        stream.drifted.append(result.drifted_features)
        stream.unseen.append(float(1.0 - current["regime_known"].mean()))
        now = number * minutes_per_batch * 60.0
        verdict = DriftVerdict(
            result.dataset_drift, result.drift_share, policy.threshold, result.n_checked
        )
        stream.verdicts.append(verdict)
        decision = decide_retrain(verdict, now, last_triggered, policy.cooldown_minutes)
        if decision.retrain:
            last_triggered = now
            stream.triggers.append(number)
    return stream


def count_triggers(
    verdicts: list[DriftVerdict], policy: DriftPolicy, minutes_per_batch: float
) -> int:
    """Retrain triggers of ``decide_retrain`` over a sequence of verdicts on another clock."""
    last: float | None = None
    count = 0
    for number, verdict in enumerate(verdicts):
        now = number * minutes_per_batch * 60.0
        decision = decide_retrain(verdict, now, last, policy.cooldown_minutes)
        if decision.retrain:
            last, count = now, count + 1
    return count


def timed_pair(
    first: Callable[[], object], second: Callable[[], object], repeats: int
) -> tuple[list[float], list[float]]:
    """Wall times of ``repeats`` runs of each function, alternating (one warm-up run each).

    Alternating makes a slow spell of the shared machine hit both alike.
    """
    first(), second()
    gc.collect()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((first, times[0]), (second, times[1])):
            started = time.perf_counter()
            fn()
            out.append(time.perf_counter() - started)
    return times


def short(feature: str) -> str:
    """``vibration__z`` -> ``vibration``."""
    return feature.removesuffix("__z")


def stationary_section(
    stream: Stream, champion: Champion, policy: DriftPolicy, args: argparse.Namespace
) -> list[str]:
    d = np.vstack(stream.statistics)  # batches x features
    shares = np.array(stream.shares)
    flagged = int((shares >= policy.threshold).sum())
    one_feature = int(np.array([len(f) >= 1 for f in stream.drifted]).sum())
    alt_minutes = 10.0
    lines = [
        f"**Stationary stream** (feed seed {args.stationary_seed}, batches 0-{args.stationary - 1},"
        f" no drift; clock {args.minutes_per_batch:g} min per batch = 50 readings x 10 min, so "
        f"the {policy.cooldown_minutes:g} min cooldown never binds):",
        "",
        "| what | value |",
        "|---|---|",
        f"| batches judged | {len(shares)} |",
        f"| batches with drift share >= {policy.threshold:g} | **{flagged}** |",
        f"| retrain triggers (`decide_retrain`, {args.minutes_per_batch:g} min per batch) | "
        f"**{len(stream.triggers)}**"
        + (f" (batches {stream.triggers[:10]})" if stream.triggers else "")
        + " |",
        f"| retrain triggers if a batch landed every {alt_minutes:g} min (cooldown binds) | "
        f"{count_triggers(stream.verdicts, policy, alt_minutes)} |",
        f"| batches with at least one drifted feature | {one_feature} |",
        f"| drift share: median / max | {np.median(shares):.2f} / {shares.max():.2f} |",
        f"| KS D, all {d.size} feature-batches: median / p99 / max | "
        f"{np.median(d):.3f} / {np.percentile(d, 99):.3f} / **{d.max():.3f}** "
        f"(effect size gate {policy.min_effect_size:g}) |",
        "",
        "| feature | median D | p99 D | max D | batches drifted |",
        "|---|---|---|---|---|",
    ]
    for j, feature in enumerate(champion.columns):
        times = sum(feature in f for f in stream.drifted)
        lines.append(
            f"| {short(feature)} | {np.median(d[:, j]):.3f} | {np.percentile(d[:, j], 99):.3f} | "
            f"{d[:, j].max():.3f} | {times} |"
        )
    return lines


def scenario_section(
    results: dict[str, dict[int, Stream]], champion: Champion, policy: DriftPolicy, k: int
) -> list[str]:
    lines = [
        f"**Drifted streams** (batches 0-{k - 1} clean, drift from batch {k}; one stream per "
        "feed seed):",
        "",
        "| drift | seeds | first drifted batch detected | drift share of first drifted batch:"
        " median (min-max) | drifted batches detected | clean batches flagged | first trigger"
        " (batches after onset) |",
        "|---|---|---|---|---|---|---|",
    ]
    d_lines = [
        "",
        "KS D of each feature in the first drifted batch, median over seeds (drifted in how many):",
        "",
        "| drift | " + " | ".join(short(c) for c in champion.columns) + " | unseen-regime rows |",
        "|---|" + "---|" * (len(champion.columns) + 1),
    ]
    for name, by_seed in results.items():
        first = [s.shares[k] for s in by_seed.values()]
        detected = sum(x >= policy.threshold for x in first)
        drifted_all = [x for s in by_seed.values() for x in s.shares[k:]]
        clean_all = [x for s in by_seed.values() for x in s.shares[:k]]
        delays = [
            str(min(t for t in s.triggers if t >= k) - k) if any(t >= k for t in s.triggers)
            else "none"
            for s in by_seed.values()
        ]  # fmt: skip
        lines.append(
            f"| {name} | {len(by_seed)} | **{detected} of {len(first)}** | "
            f"{np.median(first):.2f} ({min(first):.2f}-{max(first):.2f}) | "
            f"{sum(x >= policy.threshold for x in drifted_all)} of {len(drifted_all)} | "
            f"{sum(x >= policy.threshold for x in clean_all)} of {len(clean_all)} | "
            f"{', '.join(delays)} |"
        )
        d = np.vstack([s.statistics[k] for s in by_seed.values()])
        cells = []
        for j, feature in enumerate(champion.columns):
            times = sum(feature in s.drifted[k] for s in by_seed.values())
            cells.append(f"{np.median(d[:, j]):.3f} ({times})")
        unseen = np.median([s.unseen[k] for s in by_seed.values()])
        d_lines.append(f"| {name} | " + " | ".join(cells) + f" | {unseen:.1%} |")
    return lines + d_lines


def run(args: argparse.Namespace) -> str:
    """Runs the benchmark and returns the markdown section (between the markers)."""
    began = time.perf_counter()
    policy = DriftPolicy()
    settings = policy.settings()
    champion = build_champion()
    print(
        f"champion reference: {len(champion.reference)} of {champion.train_rows} train rows, "
        f"columns {champion.columns} ({champion.seconds:.1f} s)",
        flush=True,
    )

    stationary = judge(
        champion, FeedConfig(seed=args.stationary_seed), args.stationary, settings, policy,
        args.minutes_per_batch,
    )  # fmt: skip
    print(
        f"stationary: {sum(x >= policy.threshold for x in stationary.shares)} of "
        f"{args.stationary} batches over the threshold, triggers {stationary.triggers}",
        flush=True,
    )

    k = args.drift_from
    results: dict[str, dict[int, Stream]] = {}
    for name, fields in SCENARIOS:
        results[name] = {}
        for seed in args.seeds:
            config = FeedConfig(seed=seed, drift_from_batch=k, **fields)
            results[name][seed] = judge(
                champion, config, k + args.drifted, settings, policy, args.minutes_per_batch
            )
        first = [round(s.shares[k], 2) for s in results[name].values()]
        print(f"{name}: first drifted batch shares {first}", flush=True)

    batch = next(feed_batches(FeedConfig(seed=args.stationary_seed), 0, 1))[1]
    current = current_features(batch, champion.state)
    pairs = [
        (champion.reference[c].to_numpy(dtype=np.float64), current[c].to_numpy(dtype=np.float64))
        for c in champion.columns
    ]
    monitor, baseline = timed_pair(
        lambda: ks_drift(
            champion.reference, current_features(batch, champion.state), champion.columns,
            settings,
        ),
        lambda: [stats.ks_2samp(a, b) for a, b in pairs],
        args.timing_repeats,
    )  # fmt: skip
    monitor_ms, baseline_ms = statistics.median(monitor) * 1e3, statistics.median(baseline) * 1e3
    print(f"timing: monitor {monitor_ms:.2f} ms, bare ks_2samp {baseline_ms:.2f} ms", flush=True)
    total = time.perf_counter() - began

    command = (
        f"python benchmarks/bench_drift.py --stationary {args.stationary} "
        f"--seeds {' '.join(map(str, args.seeds))} --drift-from {k} --drifted {args.drifted} "
        f"--minutes-per-batch {args.minutes_per_batch:g} --timing-repeats {args.timing_repeats}"
    )
    affinity = len(os.sched_getaffinity(0))
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}` (`make bench-drift`);"
        f" whole run {total:.0f} s.",
        "",
        f"- Machine: nproc {affinity} of {os.cpu_count()} cores ({cpu_model()}), {ram:.0f} GiB, "
        f"Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
        f"scipy {scipy.__version__}",
        f"- Reference: {len(champion.reference):,} sampled of {champion.train_rows:,} train rows "
        f"of `simulate(SimulatorConfig())`; monitored columns "
        f"{', '.join(f'`{c}`' for c in champion.columns)}",
        f"- Settings: `DriftPolicy()` defaults: threshold {policy.threshold:g}, alpha "
        f"{policy.alpha:g} ({policy.correction}), effect size {policy.min_effect_size:g}, "
        f"min samples {policy.min_samples}, cooldown {policy.cooldown_minutes:g} min, "
        f"{policy.recent_batches} batch per report",
        "",
        *stationary_section(stationary, champion, policy, args),
        "",
        *scenario_section(results, champion, policy, k),
        "",
        f"**Timing** of one drift evaluation ({len(batch):,} readings against "
        f"{len(champion.reference):,} reference rows, {len(champion.columns)} columns; median of "
        f"{args.timing_repeats}, the two alternating):",
        "",
        "| what | median ms | ratio |",
        "|---|---|---|",
        f"| bare `scipy.stats.ks_2samp` on the same columns (baseline) | {baseline_ms:.2f} "
        "| 1.0x |",
        f"| `current_features` + `ks_drift` (the monitor) | {monitor_ms:.2f} | "
        f"{monitor_ms / baseline_ms:.2f}x |",
    ]
    return "\n".join(lines)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stationary", type=int, default=200, help="clean batches to judge")
    parser.add_argument("--stationary-seed", type=int, default=42, help="feed seed, stationary")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5],
                        help="feed seeds of the drifted streams")  # fmt: skip
    parser.add_argument("--drift-from", type=int, default=5, help="first drifted batch")
    parser.add_argument("--drifted", type=int, default=5, help="drifted batches per stream")
    parser.add_argument(
        "--minutes-per-batch", type=float, default=500.0,
        help="simulated clock for decide_retrain (50 readings x 10 min)",
    )  # fmt: skip
    parser.add_argument("--timing-repeats", type=int, default=50)
    parser.add_argument("--update", type=Path, help="write the section into this markdown file")
    args = parser.parse_args()
    if args.stationary < 1 or args.drift_from < 0 or args.drifted < 1:
        parser.error("--stationary and --drifted must be >= 1, --drift-from >= 0")
    report = run(args)
    print(report)
    if args.update:
        write_block(args.update, BLOCK, report, heading=f"{HEADING}\n\n{INTRO}")
        print(f"updated {args.update}")


if __name__ == "__main__":
    main()
