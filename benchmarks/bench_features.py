"""Feature and simulator throughput, against a plain pandas baseline measured in the same run.

Usage (what ``make bench`` runs)::

    python benchmarks/bench_features.py --update BENCHMARKS.md

The pandas baseline (:mod:`tests.features_reference`) computes the same feature columns
with ``groupby().rolling()``; the two outputs are compared value by value before any figure is
reported. Medians over repeated runs; the ratio is median baseline time / median fast time.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.report_block import write_block  # noqa: E402
from pdm_core.features import compute_features, fit_feature_state  # noqa: E402
from pdm_core.simulator import SimulatorConfig, dataset_info, simulate  # noqa: E402
from tests.features_reference import reference_features  # noqa: E402

BLOCK = "features"


def timed(fn: Callable[[], object], repeats: int) -> tuple[list[float], object]:
    """Runs ``fn`` ``repeats`` times; returns the wall times and the last result."""
    times, result = [], None
    for _ in range(repeats):
        result = None
        gc.collect()
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return times, result


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, if readable."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(machines: int, steps: int, fast_repeats: int, ref_repeats: int) -> str:
    """Runs the benchmark and returns the markdown report."""
    rows = machines * steps
    config = SimulatorConfig(n_machines=machines, n_steps=steps, seed=42)
    sim_times, frame = timed(lambda: simulate(config), fast_repeats)
    assert isinstance(frame, pd.DataFrame)
    state = fit_feature_state(frame, dataset_info(config))
    n_features = len(state.feature_names)
    print(f"simulated {rows:,} rows; {n_features} features per row", flush=True)

    fast_times, fast = timed(lambda: compute_features(frame, state), fast_repeats)
    print(f"fast path: {[round(t, 2) for t in fast_times]} s", flush=True)
    ref_times, ref = timed(lambda: reference_features(frame, state), ref_repeats)
    print(f"pandas baseline: {[round(t, 2) for t in ref_times]} s", flush=True)
    assert isinstance(fast, pd.DataFrame) and isinstance(ref, pd.DataFrame)
    diff = np.abs(fast[state.feature_names].to_numpy() - ref[state.feature_names].to_numpy())
    max_diff = float(np.nanmax(diff))
    if not np.isfinite(diff).all() or max_diff > 1e-6:
        raise SystemExit(f"outputs disagree: max abs difference {max_diff}")
    del fast, ref, diff
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

    sim_med = statistics.median(sim_times)
    fast_med = statistics.median(fast_times)
    ref_med = statistics.median(ref_times)
    command = (
        f"python benchmarks/bench_features.py --machines {machines} --steps {steps} "
        f"--repeats {fast_repeats} --baseline-repeats {ref_repeats}"
    )
    return "\n".join(
        [
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}` (`make bench`).",
            "",
            f"- Machine: {os.cpu_count()} cores ({cpu_model()}), "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1024**3:.0f} GiB, "
            f"Python {platform.python_version()}, numpy {np.__version__}, "
            f"pandas {pd.__version__}",
            f"- Data: simulator, {machines} machines x {steps:,} readings = {rows:,} rows, "
            f"{len(state.sensors)} sensors, windows {list(state.windows)}, "
            f"{n_features} feature columns per row",
            f"- Outputs agree: max abs difference {max_diff:.1e} over all "
            f"{rows * n_features:,} values",
            f"- Peak RSS of the benchmark process: {peak_gib:.1f} GiB",
            "",
            "| what | runs | median s | rows/s (median) | ratio |",
            "|---|---|---|---|---|",
            f"| features, pandas `groupby().rolling()` baseline | {ref_repeats} | "
            f"{ref_med:.2f} | {rows / ref_med:,.0f} | 1.0x |",
            f"| features, `pdm_core.features.compute_features` | {fast_repeats} | "
            f"{fast_med:.2f} | {rows / fast_med:,.0f} | **{ref_med / fast_med:.1f}x** |",
            f"| simulator, `pdm_core.simulator.simulate` | {fast_repeats} | {sim_med:.2f} | "
            f"{rows / sim_med:,.0f} | - |",
            "",
            f"All runs, seconds: fast {[round(t, 2) for t in fast_times]}, "
            f"baseline {[round(t, 2) for t in ref_times]}, "
            f"simulator {[round(t, 2) for t in sim_times]}.",
        ]
    )


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50_000, help="readings per machine")
    parser.add_argument("--repeats", type=int, default=5, help="runs of the fast path")
    parser.add_argument("--baseline-repeats", type=int, default=3, help="runs of pandas")
    parser.add_argument("--update", type=Path, help="write the report into this markdown file")
    args = parser.parse_args()
    report = run(args.machines, args.steps, args.repeats, args.baseline_repeats)
    print(report)
    if args.update:
        write_block(args.update, BLOCK, report, heading="## Feature throughput")
        print(f"updated {args.update}")


if __name__ == "__main__":
    main()
