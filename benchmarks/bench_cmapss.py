"""Model quality on real NASA C-MAPSS through the pipeline's own assets, over several seeds.

Usage::

    python benchmarks/bench_cmapss.py --subset FD001 --seeds 42 1 2 3 4 --update BENCHMARKS.md

Each seed materialises the whole asset graph (``dg.materialize`` with the C-MAPSS source and a
fresh temporary PDM_HOME), then reads the test metrics of every candidate from
``model_evaluation`` (RUL at each test engine's last cycle, truth capped like the target at
125) and each training step's duration from the Dagster instance.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.report_block import write_block  # noqa: E402
from pdm_assets.models import CANDIDATES, TrainingSettings  # noqa: E402

TRAINING_STEPS = CANDIDATES  # one training step per candidate asset
DEFAULT_SEED = int(TrainingSettings.model_fields["seed"].default)  # what `make demo` uses


def run_seed(data_dir: Path, subset: str, seed: int) -> tuple[dict, dict[str, float], float]:
    """Materialises the graph for one seed; returns evaluation, step seconds, wall seconds."""
    home = Path(tempfile.mkdtemp(prefix=f"pdm-bench-{subset}-{seed}-"))
    os.environ["PDM_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    import dagster as dg

    from pdm_assets.jobs import PIPELINE_SELECTION
    from pdm_platform import definitions
    from pdm_resources.environment import build_resources
    from pdm_resources.telemetry_source import TelemetrySource

    resources = build_resources("local")
    resources["telemetry_source"] = TelemetrySource(
        source="cmapss", cmapss_dir=str(data_dir), cmapss_subset=subset
    )
    assets = list(definitions.defs.assets or [])
    config = {"ops": {name: {"config": {"seed": seed}} for name in TRAINING_STEPS}}
    started = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            assets, selection=PIPELINE_SELECTION, resources=resources, instance=instance,
            run_config=config,
        )  # fmt: skip
        wall = time.perf_counter() - started
        steps = {
            s.step_key: (s.end_time or 0) - (s.start_time or 0)
            for s in instance.get_run_step_stats(result.run_id)
        }
    return result.output_for_node("model_evaluation"), steps, wall


def _default_seed_line(evaluation: dict) -> str:
    """The default seed's figures alone: what the README's walkthrough prints."""
    parts = []
    for name in ("rul_regressor_ensemble", "rul_regressor_sklearn", "rul_regressor_keras"):
        test = evaluation.get(name, {}).get("test", {})
        if "rmse" in test:
            parts.append(
                f"{name} RMSE {test['rmse']:.2f} / NASA {test['nasa_score']:.0f} / 90 % interval "
                f"coverage {test.get('interval_coverage', float('nan')):.2f} "
                f"({test.get('scored_rows', float('nan')):.0f} test engines)"
            )
    return (
        f"Default seed {DEFAULT_SEED} alone (the README's walkthrough): " + "; ".join(parts) + "."
    )


def summarise(values: list[float]) -> str:
    """``mean ± sd``."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cmapss")
    parser.add_argument("--subset", default="FD001")
    parser.add_argument("--seeds", type=int, nargs="+", default=[DEFAULT_SEED, 1, 2, 3, 4])
    parser.add_argument("--update", type=Path)
    args = parser.parse_args()

    rows: dict[str, dict[str, list[float]]] = {}
    times: dict[str, list[float]] = {}
    walls = []
    by_seed: dict[int, dict] = {}
    for seed in args.seeds:
        evaluation, steps, wall = run_seed(args.data, args.subset, seed)
        by_seed[seed] = evaluation
        walls.append(wall)
        for name, result in evaluation.items():
            for metric, value in result.get("test", {}).items():
                rows.setdefault(name, {}).setdefault(metric, []).append(value)
        for step in TRAINING_STEPS:
            times.setdefault(step, []).append(steps.get(step, float("nan")))
        print(f"seed {seed}: wall {wall:.0f}s", {n: r["test"] for n, r in evaluation.items()})

    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python benchmarks/bench_cmapss.py"
        f" --subset {args.subset} --seeds {' '.join(map(str, args.seeds))}` on {os.cpu_count()}"
        " CPU cores (no GPU). Whole asset graph per seed, default hyperparameters. RUL scored at"
        " each test engine's last cycle against the true RUL capped at 125 (the target's cap).",
        "",
    ]
    tables = (
        (("rul_regressor_keras", "rul_regressor_sklearn", "rul_regressor_ensemble"),
         (("rmse", "test RMSE"), ("nasa_score", "test NASA score"), ("mae", "test MAE"),
          ("interval_coverage", "90 % interval coverage"),
          ("interval_mean_width", "interval width"))),
        (("risk_classifier_keras", "risk_classifier_sklearn"),
         (("pr_auc", "test PR-AUC"), ("roc_auc", "test ROC-AUC"), ("f1", "test F1"))),
    )  # fmt: skip
    for names, columns in tables:
        lines += [
            "| candidate | " + " | ".join(t for _, t in columns) + " | train seconds |",
            "|---|" + "---|" * (len(columns) + 1),
        ]
        for name in (n for n in names if n in rows):
            cells = " | ".join(summarise(rows[name].get(m, [float("nan")])) for m, _ in columns)
            lines.append(f"| {name} | {cells} | {summarise(times[name])} |")
        lines.append("")
    if DEFAULT_SEED in by_seed:
        lines += [_default_seed_line(by_seed[DEFAULT_SEED]), ""]
    lines += [
        f"Whole graph per seed (load, features, {len(TRAINING_STEPS)} candidates, evaluation, "
        f"promotion, fleet health): {summarise(walls)} s. Means ± sample standard deviation over "
        f"{len(args.seeds)} seeds.",
    ]
    report = "\n".join(lines)
    print(report)
    if args.update:
        write_block(
            args.update, f"cmapss:{args.subset}", report,
            heading=f"## Model quality on NASA C-MAPSS {args.subset}",
        )  # fmt: skip


if __name__ == "__main__":
    main()
