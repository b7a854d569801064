"""Assembles the labelled training set from features, labels and the split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pdm_core import schema
from pdm_core.split import EMBARGO, SPLITS, split_of_rows

SPLIT = "split"


@dataclass
class TrainingSetSummary:
    """What went into the training set and what was left out (nothing vanishes silently).

    Attributes:
        rows_in: Feature rows offered.
        warmup_rows: Rows left out because the machine had fewer than ``window_length``
            readings so far (partial windows; the service refuses such windows too).
        embargo_rows: Rows left out between time splits (labels look into the next split).
        unassigned_rows: Rows outside every split segment.
        rows: Rows per split.
        positives: Rows with ``failure_within_h == 1`` per split.
        machines: Machines per split.
    """

    rows_in: int
    warmup_rows: int
    embargo_rows: int
    unassigned_rows: int
    rows: dict[str, int] = field(default_factory=dict)
    positives: dict[str, int] = field(default_factory=dict)
    machines: dict[str, int] = field(default_factory=dict)

    @property
    def rows_out(self) -> int:
        """Rows kept."""
        return sum(self.rows.values())


def build_training_set(
    features: pd.DataFrame,
    telemetry: pd.DataFrame,
    segments: pd.DataFrame,
    window_length: int,
) -> tuple[pd.DataFrame, TrainingSetSummary]:
    """Joins features with labels and splits, leaving out warm-up and embargo rows.

    Args:
        features: Output of :func:`pdm_core.features.compute_features` (sorted by key).
        telemetry: Canonical telemetry with the label columns, same rows as ``features``.
        segments: Split segments from :func:`pdm_core.split.assign_splits`.
        window_length: Readings a machine needs for full feature windows.

    Returns:
        ``(training_set, summary)``. The training set has machine_id, cycle, split, the
        feature columns, regime and the label columns.
    """
    telemetry = telemetry.sort_values([schema.MACHINE, schema.CYCLE], kind="stable")
    telemetry = telemetry.reset_index(drop=True)
    if len(features) != len(telemetry) or not np.array_equal(
        features[schema.CYCLE].to_numpy(), telemetry[schema.CYCLE].to_numpy()
    ):
        raise ValueError("features and telemetry do not cover the same readings")
    position = telemetry.groupby(schema.MACHINE, sort=False, observed=True).cumcount().to_numpy()
    warmup = position < window_length - 1
    split = split_of_rows(telemetry, segments)
    embargo = split == EMBARGO
    unassigned = split == ""
    keep = ~warmup & np.isin(split, SPLITS)

    feature_columns = [c for c in features.columns if c not in (schema.MACHINE, schema.CYCLE)]
    out = features.loc[keep, [schema.MACHINE, schema.CYCLE]].copy()
    out[schema.MACHINE] = out[schema.MACHINE].astype(str)
    out.insert(2, SPLIT, split[keep])
    kept_features = features.loc[keep, feature_columns]
    out = pd.concat([out, kept_features], axis=1)
    for column in (schema.REGIME, *schema.LABEL_COLUMNS):
        values = telemetry.loc[keep, column]
        out[column] = (
            values.astype(str) if column in (schema.REGIME, schema.FAILURE_MODE) else values
        )
    out = out.reset_index(drop=True)

    in_split = np.isin(split, SPLITS)
    summary = TrainingSetSummary(
        rows_in=len(features),
        warmup_rows=int((warmup & in_split).sum()),
        embargo_rows=int(embargo.sum()),
        unassigned_rows=int(unassigned.sum()),
    )
    for name in SPLITS:
        part = out[out[SPLIT] == name]
        summary.rows[name] = len(part)
        summary.positives[name] = int(part[schema.LABEL].sum())
        summary.machines[name] = int(part[schema.MACHINE].nunique())
    accounted = summary.rows_out + summary.warmup_rows + summary.embargo_rows
    if accounted + summary.unassigned_rows != summary.rows_in:  # pragma: no cover - invariant
        raise AssertionError("training set row accounting does not add up")
    return out, summary
