"""Tests for joining landed telemetry to the source's data for (re)training."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pdm_core import schema
from pdm_core.landing import BATCH_ID
from pdm_core.quality import time_order_violations
from pdm_core.simulator import SENSORS, SimulatorConfig, dataset_info, simulate
from pdm_core.training_window import WindowStats, combine_with_landed

CONFIG = SimulatorConfig(n_machines=3, n_steps=20, seed=11)
INFO = dataset_info(CONFIG)
KEYS = [schema.MACHINE, schema.CYCLE]


def base_frame() -> pd.DataFrame:
    return simulate(CONFIG)


def as_landed(frame: pd.DataFrame, batch: str = "feed-1-000000000000") -> pd.DataFrame:
    """Rows shaped like ``pdm.landed_telemetry``: text columns, float labels, a batch id."""
    rows = frame.drop(columns=[schema.SOURCE_SPLIT], errors="ignore").copy()
    for column in (schema.MACHINE, schema.REGIME, schema.FAILURE_MODE):
        rows[column] = rows[column].astype(str)
    rows[schema.LABEL] = rows[schema.LABEL].astype(np.float64)
    rows.insert(0, BATCH_ID, batch)
    return rows.reset_index(drop=True)


def continuation(n_steps: int = 5) -> pd.DataFrame:
    """Later readings of the same fleet (cycles 21..), as landed rows."""
    later = SimulatorConfig(n_machines=3, n_steps=n_steps, seed=12, first_step=CONFIG.n_steps)
    return as_landed(simulate(later))


def keys_of(frame: pd.DataFrame) -> set[tuple[str, int]]:
    return set(zip(frame[schema.MACHINE].astype(str), frame[schema.CYCLE], strict=True))


def test_empty_landed_returns_base_unchanged() -> None:
    base = base_frame()
    landed = continuation().iloc[0:0]
    combined, stats = combine_with_landed(base, landed, INFO)
    assert combined is base
    assert stats == WindowStats()
    assert stats.to_dict() == {
        "landed_rows": 0,
        "used": 0,
        "unlabelled": 0,
        "incomplete": 0,
        "overlapping_source": 0,
    }


def test_labelled_rows_are_appended_with_canonical_dtypes() -> None:
    base = base_frame()
    landed = continuation()
    combined, stats = combine_with_landed(base, landed, INFO)

    assert stats == WindowStats(landed_rows=15, used=15)
    assert len(combined) == len(base) + 15
    assert list(combined.columns) == list(base.columns)
    assert combined[schema.LABEL].dtype == np.int8
    for column in base.columns:
        if isinstance(base[column].dtype, pd.CategoricalDtype):
            assert isinstance(combined[column].dtype, pd.CategoricalDtype), column
        else:
            assert combined[column].dtype == base[column].dtype, column
    assert set(combined[schema.SOURCE_SPLIT].astype(str)) == {""}
    assert keys_of(landed) <= keys_of(combined)
    assert keys_of(base) <= keys_of(combined)
    # Landed values arrive unchanged.
    merged = combined.assign(**{schema.MACHINE: combined[schema.MACHINE].astype(str)}).merge(
        landed[[*KEYS, *SENSORS, schema.LABEL]], on=KEYS, suffixes=("", "_landed")
    )
    assert len(merged) == 15
    for column in SENSORS:
        np.testing.assert_array_equal(merged[column], merged[f"{column}_landed"])
    np.testing.assert_array_equal(merged[schema.LABEL], merged[f"{schema.LABEL}_landed"])


def test_result_is_sorted_by_machine_and_cycle() -> None:
    base = base_frame()
    landed = continuation().sample(frac=1.0, random_state=3).reset_index(drop=True)
    combined, _ = combine_with_landed(base, landed, INFO)
    assert time_order_violations(combined) == 0
    order = combined[KEYS].assign(**{schema.MACHINE: combined[schema.MACHINE].astype(str)})
    expected = order.sort_values(KEYS).reset_index(drop=True)
    pd.testing.assert_frame_equal(order.reset_index(drop=True), expected)
    assert combined.index.equals(pd.RangeIndex(len(combined)))


def test_new_machine_and_regime_categories_are_added() -> None:
    base = base_frame()
    landed = continuation()
    landed.loc[0:4, schema.MACHINE] = "Z900"
    landed.loc[0:4, schema.CYCLE] = np.arange(1, 6)
    landed.loc[0, schema.REGIME] = "overload"
    combined, stats = combine_with_landed(base, landed, INFO)
    assert stats.used == 15
    assert "Z900" in combined[schema.MACHINE].cat.categories
    assert "overload" in combined[schema.REGIME].cat.categories
    assert (combined[schema.MACHINE] == "Z900").sum() == 5
    assert time_order_violations(combined) == 0


def test_unlabelled_overlapping_and_incomplete_rows_are_counted_not_used() -> None:
    base = base_frame()
    landed = continuation()
    landed.loc[[0, 1, 2], schema.LABEL] = np.nan  # unlabelled: left for drift monitoring
    landed.loc[3, schema.TIME_SINCE_MAINTENANCE] = np.nan  # base always has it: incomplete
    landed.loc[4, schema.RUL] = np.nan  # base always has rul too
    overlap = as_landed(base.iloc[[5, 45]])
    overlap["vibration"] = 999.0  # the source wins over a landed copy of its reading
    landed = pd.concat([landed, overlap], ignore_index=True)

    combined, stats = combine_with_landed(base, landed, INFO)

    assert stats == WindowStats(
        landed_rows=17, used=10, unlabelled=3, incomplete=2, overlapping_source=2
    )
    assert len(combined) == len(base) + 10
    skipped = landed.iloc[[0, 1, 2, 3, 4]]
    assert not keys_of(skipped) & keys_of(combined)
    assert (combined["vibration"] != 999.0).all()
    assert not combined.duplicated(KEYS).any()
    assert time_order_violations(combined) == 0
    assert combined[schema.LABEL].dtype == np.int8
    assert combined[schema.LABEL].isin([0, 1]).all()


def test_all_landed_rows_unusable_leaves_base_rows() -> None:
    base = base_frame()
    landed = continuation()
    landed[schema.LABEL] = np.nan
    combined, stats = combine_with_landed(base, landed, INFO)
    assert stats == WindowStats(landed_rows=15, unlabelled=15)
    assert len(combined) == len(base)
    assert combined[schema.LABEL].dtype == np.int8
    np.testing.assert_array_equal(combined["vibration"], base["vibration"])


def test_missing_time_since_maintenance_is_fine_when_base_lacks_it() -> None:
    base = base_frame()
    base[schema.TIME_SINCE_MAINTENANCE] = np.nan
    landed = continuation()
    landed[schema.TIME_SINCE_MAINTENANCE] = np.nan
    combined, stats = combine_with_landed(base, landed, INFO)
    assert stats.incomplete == 0
    assert stats.used == 15
    assert len(combined) == len(base) + 15


def test_extra_landed_columns_are_ignored() -> None:
    base = base_frame()
    landed = continuation().assign(ingested_at=pd.Timestamp("2026-02-01"))
    combined, stats = combine_with_landed(base, landed, INFO)
    assert stats.used == 15
    assert BATCH_ID not in combined.columns
    assert "ingested_at" not in combined.columns
