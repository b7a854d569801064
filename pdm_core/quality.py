"""Data-quality measurements behind the asset checks (pure functions, one property each)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pdm_core import schema

REQUIRED_COLUMNS = schema.NON_MEASUREMENT_COLUMNS


def schema_problems(frame: pd.DataFrame, info: schema.DatasetInfo) -> list[str]:
    """Lists missing columns and wrong dtypes of a canonical telemetry frame."""
    problems = []
    expected = [*REQUIRED_COLUMNS, *info.settings, *info.sensors, *info.categoricals]
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        problems.append(f"missing columns: {missing}")
    for column in (*info.settings, *info.sensors, schema.RUL, schema.TIME_SINCE_MAINTENANCE):
        if column in frame.columns and not pd.api.types.is_float_dtype(frame[column]):
            problems.append(f"column '{column}' is {frame[column].dtype}, expected float64")
    for column in (schema.CYCLE, schema.LABEL):
        if column in frame.columns and not pd.api.types.is_integer_dtype(frame[column]):
            problems.append(f"column '{column}' is {frame[column].dtype}, expected an integer")
    return problems


def null_counts(frame: pd.DataFrame, columns: list[str] | tuple[str, ...]) -> dict[str, int]:
    """Counts nulls (and non-finite numbers) per column, only for columns that have any."""
    counts = {}
    for column in columns:
        series = frame[column]
        bad = series.isna()
        if pd.api.types.is_float_dtype(series):
            bad |= ~np.isfinite(series.to_numpy(dtype=np.float64, na_value=np.nan))
        if int(bad.sum()):
            counts[column] = int(bad.sum())
    return counts


def range_violations(frame: pd.DataFrame, ranges: dict[str, tuple[float, float]]) -> dict[str, int]:
    """Counts values outside ``[low, high]`` per column, only for columns that have any."""
    counts = {}
    for column, (low, high) in ranges.items():
        values = frame[column].to_numpy(dtype=np.float64)
        outside = int(((values < low) | (values > high)).sum())
        if outside:
            counts[column] = outside
    return counts


def time_order_violations(frame: pd.DataFrame) -> int:
    """Counts rows whose cycle does not increase strictly within their machine."""
    machines = frame[schema.MACHINE].astype(str).to_numpy()
    cycles = frame[schema.CYCLE].to_numpy(dtype=np.int64)
    same = machines[1:] == machines[:-1]
    bad = same & (np.diff(cycles) <= 0)
    # A machine appearing in two separate runs of rows is also out of order.
    starts = np.r_[True, ~same]
    runs = pd.Series(machines[starts]).duplicated().sum()
    return int(bad.sum() + runs)


def label_prevalence(frame: pd.DataFrame) -> float:
    """Share of readings with ``failure_within_h == 1``."""
    if frame.empty:
        return 0.0
    return float(frame[schema.LABEL].to_numpy().mean())


def declared_ranges(info: schema.DatasetInfo) -> dict[str, tuple[float, float]]:
    """Plausible sensor ranges for a dataset.

    The simulator declares physical ranges; C-MAPSS sensors are physical magnitudes
    (temperatures in Rankine, pressures, speeds), so never negative; other sources declare none
    and get only the finiteness rule of :func:`null_counts`.
    """
    declared = info.extra.get("sensor_ranges")
    if declared:
        return {name: (float(lo), float(hi)) for name, (lo, hi) in declared.items()}
    if info.name.startswith("cmapss/"):
        return {name: (0.0, float("inf")) for name in info.sensors}
    return {}
