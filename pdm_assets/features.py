"""Split, feature definition, features and the labelled training set."""

import hashlib
import time

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from pdm_assets.metadata import check_result, frame_metadata, markdown_table
from pdm_core import schema
from pdm_core.features import FeatureConfig, FeatureState, compute_features, fit_feature_state
from pdm_core.rolling import STATS
from pdm_core.split import (
    SPLITS,
    TRAIN,
    SplitConfig,
    assign_splits,
    leakage_problems,
    plan_split,
)
from pdm_core.training_set import build_training_set
from pdm_core.versioning import frame_version

GROUP = "features"
MIN_TRAIN_POSITIVES = 10


class SplitSettings(dg.Config):
    """How readings are split into train, validation and test (by machine, or by time)."""

    validation_fraction: float = Field(0.15, description="Share of machines for validation.")
    test_fraction: float = Field(0.15, description="Share of machines for test.")
    seed: int = Field(7, description="Seed of the machine shuffle.")
    min_machines: int = Field(5, description="Fewer machines than this: split by time.")


class FeatureSettings(dg.Config):
    """Feature definition settings (shared with the serving path through feature_state)."""

    windows: list[int] = Field([10, 30], description="Trailing window lengths in readings.")
    stats: list[str] = Field(list(STATS), description=f"Window statistics, from {STATS}.")
    normalize: bool = Field(True, description="Normalise sensors per operating regime.")


@dg.asset(
    io_manager_key="warehouse_io_manager",
    group_name=GROUP,
    check_specs=[
        dg.AssetCheckSpec(
            "no_leakage", asset="machine_split", blocking=True,
            description="The split follows the leak-free rules of its shape: whole machines, "
            "time order with a horizon-long embargo, or no identical reading in two splits.",
        ),
    ],
)  # fmt: skip
def machine_split(config: SplitSettings, raw_telemetry: pd.DataFrame, dataset_info: dict):  # type: ignore[no-untyped-def]
    """Split segments: whole machines per split, time ranges with an embargo, or random rows."""
    info = schema.DatasetInfo.from_dict(dataset_info)
    split_config = SplitConfig(**config.model_dump())
    plan = plan_split(raw_telemetry, info, split_config)
    segments = assign_splits(raw_telemetry, info, split_config, plan)
    summary = segments.groupby("split").agg(
        machines=(schema.MACHINE, "nunique"), rows=("rows", "sum")
    )
    problems = leakage_problems(segments, plan, raw_telemetry)
    yield dg.Output(
        segments,
        metadata={
            **frame_metadata(segments, frame_version(segments)),
            "by_split": dg.MetadataValue.md(markdown_table(summary.reset_index())),
            "mode": plan.shape,
            "embargo_readings": plan.embargo,
        },
    )
    yield check_result("no_leakage", not problems, len(problems), 0, problems=problems[:20])


@dg.asset(group_name=GROUP)
def feature_state(
    config: FeatureSettings,
    raw_telemetry: pd.DataFrame,
    dataset_info: dict,
    machine_split: pd.DataFrame,
) -> dg.Output[dict]:
    """The fitted feature definition, from the training machines only.

    Active sensors and per-regime normalisation; the serving path computes features from
    this same state.
    """
    from pdm_core.split import split_of_rows

    info = schema.DatasetInfo.from_dict(dataset_info)
    train_mask = split_of_rows(raw_telemetry, machine_split) == TRAIN
    feature_config = FeatureConfig(
        windows=tuple(config.windows), stats=tuple(config.stats), normalize=config.normalize
    )
    state = fit_feature_state(raw_telemetry, info, feature_config, train_mask=train_mask)
    names = state.feature_names
    return dg.Output(
        state.to_dict(),
        metadata={
            "features": len(names),
            "window_length": state.window_length,
            "sensors": dg.MetadataValue.json(list(state.sensors)),
            "dropped_constant_sensors": dg.MetadataValue.json(list(state.dropped_sensors)),
            "regimes": dg.MetadataValue.json(sorted(state.regime_mean)),
            "interactions": dg.MetadataValue.json([list(p) for p in state.interactions]),
            "fitted_on_rows": int(np.count_nonzero(train_mask)),
            "feature_names": dg.MetadataValue.md("\n".join(f"- `{n}`" for n in names)),
        },
        data_version=dg.DataVersion(hashlib.sha256(state.to_json().encode()).hexdigest()[:16]),
    )


@dg.asset(
    io_manager_key="warehouse_io_manager",
    group_name=GROUP,
    check_specs=[
        dg.AssetCheckSpec(
            "all_values_finite", asset="telemetry_features", blocking=True,
            description="No NaN or infinite feature value.",
        ),
        dg.AssetCheckSpec(
            "one_row_per_reading", asset="telemetry_features", blocking=True,
            description="Exactly one feature row per raw reading.",
        ),
    ],
)  # fmt: skip
def telemetry_features(
    context: dg.AssetExecutionContext, raw_telemetry: pd.DataFrame, feature_state: dict
):  # type: ignore[no-untyped-def]
    """Per-reading features over trailing windows (see pdm_core.features for the list)."""
    state = FeatureState.from_dict(feature_state)
    started = time.perf_counter()
    features = compute_features(raw_telemetry, state)
    seconds = time.perf_counter() - started
    context.log.info(
        f"{len(features)} rows x {len(state.feature_names)} features in {seconds:.2f}s"
    )
    values = features[state.feature_names].to_numpy()
    non_finite = int((~np.isfinite(values)).sum())
    version = frame_version(features)
    yield dg.Output(
        features,
        metadata={
            **frame_metadata(features, version),
            "features": len(state.feature_names),
            "compute_seconds": round(seconds, 3),
            "rows_per_second": round(len(features) / max(seconds, 1e-9)),
        },
        data_version=dg.DataVersion(version),
    )
    yield check_result("all_values_finite", non_finite == 0, non_finite, 0)
    yield check_result(
        "one_row_per_reading", len(features) == len(raw_telemetry), len(features),
        len(raw_telemetry),
    )  # fmt: skip


@dg.asset(
    io_manager_key="warehouse_io_manager",
    group_name=GROUP,
    check_specs=[
        dg.AssetCheckSpec(
            "train_has_failures", asset="training_set", blocking=True,
            description=f"The train split holds at least {MIN_TRAIN_POSITIVES} positive rows "
            "and validation and test at least one each.",
        ),
        dg.AssetCheckSpec(
            "machines_disjoint_across_splits", asset="training_set", blocking=True,
            description="Without time splits, no machine appears in two splits.",
        ),
    ],
)  # fmt: skip
def training_set(
    telemetry_features: pd.DataFrame,
    raw_telemetry: pd.DataFrame,
    machine_split: pd.DataFrame,
    feature_state: dict,
):  # type: ignore[no-untyped-def]
    """Labelled feature rows with their split; warm-up and embargo rows are counted, not kept."""
    state = FeatureState.from_dict(feature_state)
    table, summary = build_training_set(
        telemetry_features, raw_telemetry, machine_split, state.window_length
    )
    version = frame_version(table)
    by_split = pd.DataFrame(
        {
            "split": list(SPLITS),
            "rows": [summary.rows[s] for s in SPLITS],
            "positives": [summary.positives[s] for s in SPLITS],
            "machines": [summary.machines[s] for s in SPLITS],
        }
    )
    yield dg.Output(
        table,
        metadata={
            **frame_metadata(table, version),
            "by_split": dg.MetadataValue.md(markdown_table(by_split)),
            "rows_in": summary.rows_in,
            "warmup_rows_excluded": summary.warmup_rows,
            "embargo_rows_excluded": summary.embargo_rows,
            "unassigned_rows_excluded": summary.unassigned_rows,
        },
        data_version=dg.DataVersion(version),
    )
    positives = summary.positives
    ok = positives[TRAIN] >= MIN_TRAIN_POSITIVES and min(positives.values()) >= 1
    yield check_result(
        "train_has_failures", ok, positives, {"train": MIN_TRAIN_POSITIVES, "other": 1}
    )
    time_split = bool((machine_split.groupby(schema.MACHINE).size() > 1).any())
    shared = int((table.groupby(schema.MACHINE)["split"].nunique() > 1).sum())
    yield check_result(
        "machines_disjoint_across_splits", time_split or shared == 0, shared, 0,
        time_split=time_split,
    )  # fmt: skip
