"""Chooses how many seeded networks the averaged RUL regressor holds, on validation engines only.

Usage::

    python benchmarks/select_network_members.py --subset FD001 --seeds 1 2 3

Builds the pipeline's training set (as ``select_rul_ensemble.py`` does), trains the boosting
member once per seed and five Keras networks per seed (seeds ``seed + 1000 k``), and scores the
average of the boosting member (weight 0.5) and the mean of the first 1, 3 or 5 networks
(weight 0.5) on the validation split: every row, and each engine cut at 20 seeded cycles. No
test engine is scored. Prints each count's mean and spread over the seeds.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.select_rul_ensemble import (  # noqa: E402
    build_data,
    member_data,
    score,
    selection_parser,
    truncation_rows,
)

COUNTS = (1, 3, 5)


def main() -> None:
    """Command-line entry point."""
    from pdm_core.models.training import (
        EnsembleParams,
        train_rul_regressor_keras,
        train_rul_regressor_sklearn,
    )

    args = selection_parser(__doc__).parse_args()
    data, _ = build_data(args.data, args.subset, age=True)
    truth = np.minimum(data.validation.rul, 125.0)
    rows = truncation_rows(data.validation.keys, args.cuts)
    defaults = EnsembleParams()
    sub = member_data(data, defaults.member_stats)
    results: dict[int, list[dict[str, float]]] = {}
    for seed in args.seeds:
        shared = replace(defaults, seed=seed).shared()
        boosting = train_rul_regressor_sklearn(sub, shared).predict(sub.validation.X)
        networks = [
            train_rul_regressor_keras(sub, replace(shared, seed=seed + 1000 * k)).predict(
                sub.validation.X
            )
            for k in range(max(COUNTS))
        ]
        for count in COUNTS:
            mean = np.mean(networks[:count], axis=0)
            results.setdefault(count, []).append(score(truth, 0.5 * boosting + 0.5 * mean, rows))
        print(f"seed {seed}: " + ", ".join(
            f"{n} network(s) val RMSE {results[n][-1]['val_rmse']:.2f}" for n in COUNTS
        ), flush=True)  # fmt: skip

    print("\n| networks | val RMSE (all rows) | val RMSE (cut engines) | val NASA (cut, per 100) |")
    print("|---|---|---|---|")
    for count in COUNTS:
        runs = results[count]
        cells = []
        for metric in ("val_rmse", "trunc_rmse", "trunc_nasa"):
            values = [r[metric] for r in runs]
            cells.append(f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}")
        print(f"| {count} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
