"""Chooses the averaged RUL regressor's settings on C-MAPSS **validation** engines only.

Usage::

    python benchmarks/select_rul_ensemble.py --subset FD001 --seeds 1 2 3

Builds the training set exactly as the pipeline does (loader, split, feature state fitted on
the train engines, trailing-window features, warm-up rows left out), trains the two members
(scikit-learn HistGradientBoosting and the Keras MLP, the project's own trainers) for every
setting in a small grid and scores each averaging weight on the validation split. The test
engines are never scored: the script builds no test metric at all.

Two validation metrics are printed:

* ``val_rmse``: every validation row against the capped RUL (what the pipeline's promotion
  step ranks candidates by);
* ``trunc_rmse`` / ``trunc_nasa``: a last-cycle-like protocol. Features are trailing-window
  (causal), so a validation row at cycle ``t`` is exactly the last-cycle row of that engine
  cut at ``t``. Each validation engine is cut at ``--cuts`` seeded random cycles (uniform over
  its rows with full windows, as test engines are cut at random), scored there against the
  RUL capped at the cap; the NASA score is rescaled to 100 engines (the size of the FD001 test
  set) so it reads on the target's scale.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Weight of the network in the average (0: boosting alone, 1: network alone)."""


def build_data(directory: Path, subset: str, age: bool):  # type: ignore[no-untyped-def]
    """The pipeline's model matrices for C-MAPSS, with or without the cycle-count age."""
    from pdm_core import schema
    from pdm_core.features import compute_features, fit_feature_state
    from pdm_core.loaders import load_cmapss
    from pdm_core.models.data import model_data
    from pdm_core.split import TRAIN, assign_splits, split_of_rows
    from pdm_core.training_set import build_training_set

    loaded = load_cmapss(directory, subset, cycles_as_age=age)
    frame, info = loaded.frame, loaded.info
    segments = assign_splits(frame, info)
    train_mask = split_of_rows(frame, segments) == TRAIN
    state = fit_feature_state(frame, info, train_mask=train_mask)
    features = compute_features(frame, state)
    table, _ = build_training_set(features, frame, segments, state.window_length)
    assert schema.TIME_SINCE_MAINTENANCE in state.feature_names or not age
    return model_data(table, state.feature_names), state


def truncation_rows(keys, cuts: int, seed: int = 0) -> np.ndarray:  # type: ignore[no-untyped-def]
    """``cuts`` seeded random rows per validation engine (each a possible last cycle)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _, index in keys.groupby("machine_id", sort=True).indices.items():
        rows.append(rng.choice(index, size=cuts, replace=True))
    return np.concatenate(rows)


def score(truth: np.ndarray, pred: np.ndarray, rows: np.ndarray) -> dict[str, float]:
    """Validation figures of one prediction vector."""
    from pdm_core import metrics

    whole = metrics.rul_metrics(truth, pred)
    cut = metrics.rul_metrics(truth[rows], pred[rows])
    return {
        "val_rmse": whole["rmse"],
        "trunc_rmse": cut["rmse"],
        "trunc_nasa": cut["nasa_score"] * 100.0 / len(rows),
    }


def selection_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments every validation-only selection script takes."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cmapss")
    parser.add_argument("--subset", default="FD001")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--cuts", type=int, default=20)
    return parser


def member_data(data, stats: tuple[str, ...] | None):  # type: ignore[no-untyped-def]
    """The model data restricted to a member's columns; the test matrices are emptied."""
    from pdm_core.models.ensemble import member_columns

    columns = member_columns(data.features, stats)
    return replace(
        data,
        features=[data.features[i] for i in columns],
        train=replace(data.train, X=data.train.X[:, columns]),
        validation=replace(data.validation, X=data.validation.X[:, columns]),
        test=replace(data.test, X=data.test.X[:, :0]),  # never scored here
    )


def main() -> None:
    """Command-line entry point."""
    from pdm_core.models.training import (
        TrainingParams,
        train_rul_regressor_keras,
        train_rul_regressor_sklearn,
    )

    args = selection_parser(__doc__).parse_args()

    stats_options = {"all": None, "mean+slope": ("mean", "slope")}
    mlps = {
        "64-32/b256/e40": {"hidden": (64, 32), "batch_size": 256, "epochs": 40},
        "128-64/b128/e100": {"hidden": (128, 64), "batch_size": 128, "epochs": 100},
    }
    results: dict[tuple, list[dict]] = {}
    for age in (False, True):
        data, _ = build_data(args.data, args.subset, age)
        truth = np.minimum(data.validation.rul, 125.0)
        rows = truncation_rows(data.validation.keys, args.cuts)
        engines = data.validation.keys["machine_id"].nunique()
        print(f"age={age}: {len(data.train)} train rows, {len(data.validation)} validation rows "
              f"of {engines} engines, {len(rows)} cut points", flush=True)  # fmt: skip
        for stats_name, stats in stats_options.items():
            sub = member_data(data, stats)
            for seed in args.seeds:
                started = time.perf_counter()
                hgb = train_rul_regressor_sklearn(sub, TrainingParams(seed=seed))
                hgb_pred = hgb.predict(sub.validation.X)
                hgb_s = time.perf_counter() - started
                for mlp_name, mlp in mlps.items():
                    started = time.perf_counter()
                    net = train_rul_regressor_keras(sub, TrainingParams(seed=seed, **mlp))
                    net_pred = net.predict(sub.validation.X)
                    seconds = hgb_s + time.perf_counter() - started
                    for w in WEIGHTS:
                        found = score(truth, w * net_pred + (1 - w) * hgb_pred, rows)
                        found["seconds"] = seconds
                        results.setdefault((age, stats_name, mlp_name, w), []).append(found)
                    print(f"  age={age} {stats_name} {mlp_name} seed {seed}: {seconds:.0f}s",
                          flush=True)  # fmt: skip

    print("\n| age | stats | network | w_net | val RMSE | trunc RMSE | trunc NASA/100 | s |")
    print("|---|---|---|---|---|---|---|---|")
    for key in itertools.product((False, True), stats_options, mlps, WEIGHTS):
        if key not in results:
            continue
        runs = results[key]
        cells = [
            f"{statistics.mean(r[m] for r in runs):.2f}"
            for m in ("val_rmse", "trunc_rmse", "trunc_nasa", "seconds")
        ]
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
