"""Which landed telemetry joins the source's data for (re)training.

Only labelled landed readings can train a model; unlabelled ones (labels arrive later, from
maintenance records) are counted and left for drift monitoring. A landed reading whose
(machine, cycle) the source already holds is counted and skipped: the source wins.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from pdm_core import schema


@dataclass(frozen=True)
class WindowStats:
    """Counts of what happened to the landed readings offered for training."""

    landed_rows: int = 0
    used: int = 0
    unlabelled: int = 0
    incomplete: int = 0
    overlapping_source: int = 0

    def to_dict(self) -> dict[str, int]:
        """As a plain dict (Dagster metadata)."""
        return asdict(self)


def combine_with_landed(
    base: pd.DataFrame, landed: pd.DataFrame, info: schema.DatasetInfo
) -> tuple[pd.DataFrame, WindowStats]:
    """Appends the usable landed readings to the source's canonical frame.

    Args:
        base: The source's canonical telemetry.
        landed: Rows of ``pdm.landed_telemetry`` (any extra columns are ignored).
        info: Column roles of ``base``.

    Returns:
        The combined frame (same columns and dtypes as ``base``, sorted by machine and cycle)
        and counts of used and skipped landed rows.
    """
    if landed.empty:
        return base, WindowStats()
    labelled = landed[schema.LABEL].notna().to_numpy()
    complete = np.ones(len(landed), dtype=bool)
    for column in (schema.TIME_SINCE_MAINTENANCE, schema.RUL):
        if base[column].notna().all():
            complete &= landed[column].notna().to_numpy()
    base_keys = pd.MultiIndex.from_arrays(
        [base[schema.MACHINE].astype(str), base[schema.CYCLE].astype(np.int64)]
    )
    landed_keys = pd.MultiIndex.from_arrays(
        [landed[schema.MACHINE].astype(str), landed[schema.CYCLE].astype(np.int64)]
    )
    overlapping = landed_keys.isin(base_keys)
    use = labelled & complete & ~overlapping
    rows = landed[use]
    extra = pd.DataFrame(
        {
            column: rows[column] if column in rows.columns else pd.Series(dtype=object)
            for column in base.columns
            if column != schema.SOURCE_SPLIT
        }
    )
    extra[schema.LABEL] = extra[schema.LABEL].astype(np.int8)
    extra[schema.SOURCE_SPLIT] = ""
    combined = pd.concat([_as_plain(base), _as_plain(extra[base.columns])], ignore_index=True)
    combined = combined.sort_values([schema.MACHINE, schema.CYCLE], kind="stable")
    for column in base.columns:
        if isinstance(base[column].dtype, pd.CategoricalDtype):
            combined[column] = combined[column].astype("category")
        elif column != schema.MACHINE or base[column].dtype != object:
            combined[column] = combined[column].astype(base[column].dtype)
    stats = WindowStats(
        landed_rows=len(landed),
        used=int(use.sum()),
        unlabelled=int((~labelled).sum()),
        incomplete=int((labelled & ~complete).sum()),
        overlapping_source=int((labelled & complete & overlapping).sum()),
    )
    return combined.reset_index(drop=True), stats


def _as_plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Categoricals as strings, so frames with different categories concatenate."""
    return frame.assign(
        **{
            c: frame[c].astype(str)
            for c in frame.columns
            if isinstance(frame[c].dtype, pd.CategoricalDtype)
        }
    )
