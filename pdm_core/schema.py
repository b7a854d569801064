"""The canonical telemetry table every data source is converted into.

One row per (machine, time step), sorted by ``machine_id`` then ``cycle``. Columns:

* ``machine_id`` (str): machine, engine or unit identifier.
* ``cycle`` (int64): time index, strictly increasing within a machine. Sources with only a
  timestamp get the 1-based rank of the timestamp within the machine.
* ``timestamp`` (datetime64[ns]): wall-clock time, ``NaT`` where the source has none.
* ``regime`` (str): operating regime / condition; ``"all"`` when the source has none.
* setting columns (float64): operating settings, named in :class:`DatasetInfo.settings`.
* sensor columns (float64): measurements, named in :class:`DatasetInfo.sensors`.
* categorical columns (str): named in :class:`DatasetInfo.categoricals`.
* ``time_since_maintenance`` (float64): steps since the last maintenance, NaN if unknown.
* ``rul`` (float64): remaining useful life in steps, NaN if unknown.
* ``failure_within_h`` (int8): 1 when a failure happens within the horizon H, else 0.
* ``failure_mode`` (str): failure mode of the degradation under way, ``"unknown"`` if unknown.
* ``source_split`` (str): ``"train"``/``"test"`` when the source fixes the split (C-MAPSS
  ships separate test files), ``""`` otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas stays out of the service's workers (cold start)
    import pandas as pd

MACHINE = "machine_id"
CYCLE = "cycle"
TIMESTAMP = "timestamp"
REGIME = "regime"
TIME_SINCE_MAINTENANCE = "time_since_maintenance"
RUL = "rul"
LABEL = "failure_within_h"
FAILURE_MODE = "failure_mode"
SOURCE_SPLIT = "source_split"
RISK_LEVELS: tuple[str, ...] = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
"""The risk levels a fleet model gives, lowest first."""

KEY_COLUMNS: tuple[str, ...] = (MACHINE, CYCLE)
LABEL_COLUMNS: tuple[str, ...] = (RUL, LABEL, FAILURE_MODE)
LEADING_COLUMNS: tuple[str, ...] = (*KEY_COLUMNS, TIMESTAMP, REGIME)
"""The canonical frame's columns before the measurements: which reading, when, in what regime."""
TRAILING_COLUMNS: tuple[str, ...] = (TIME_SINCE_MAINTENANCE, *LABEL_COLUMNS)
"""The canonical frame's columns after the measurements: maintenance state and labels."""
NON_MEASUREMENT_COLUMNS: tuple[str, ...] = (*LEADING_COLUMNS, *TRAILING_COLUMNS, SOURCE_SPLIT)
"""Every canonical column that is not a measurement (no sensor may take one of these names)."""
NO_REGIME = "all"
UNKNOWN_MODE = "unknown"

REJECT_COLUMNS: tuple[str, ...] = ("source", "line", "column", "value", "reason")
"""Columns of a rejected-rows frame: file name, 1-based line (row number for Parquet),
offending column (``""`` for whole-line problems), raw value and a readable reason."""


SCORE_COLUMNS: tuple[str, ...] = (
    "failure_probability",
    "risk_level",
    "rul",
    "rul_lower",
    "rul_upper",
    "anomaly_score",
    "anomaly_alert",
)
"""What the fleet model answers for a reading: the service, live scoring and fleet health."""


@dataclass(frozen=True)
class DatasetInfo:
    """Describes a canonical telemetry frame: which columns play which role.

    Attributes:
        name: Human-readable source name, e.g. ``"simulator"`` or ``"cmapss/FD001"``.
        sensors: Sensor measurement columns (float64).
        settings: Operating-setting columns (float64); may be empty.
        categoricals: Categorical feature columns (str); may be empty.
        ordered: True when rows of a machine form a time series (rolling windows make sense).
        has_rul: True when the ``rul`` label is known.
        horizon: Horizon H (steps) behind ``failure_within_h``; None when the label came from
            the user's own label column.
        regime_rounding: For sources whose regime is derived from settings, the number of
            decimals each setting is rounded to (same order as ``settings``); empty otherwise.
        derived: ``(name, expression)`` of each sensor computed from other sensors
            (:mod:`pdm_core.derived`), in declaration order; those names end ``sensors``.
        extra: Free-form, JSON-serialisable details (file names, subset, seed, ...).
    """

    name: str
    sensors: tuple[str, ...]
    settings: tuple[str, ...] = ()
    categoricals: tuple[str, ...] = ()
    ordered: bool = True
    has_rul: bool = True
    horizon: int | None = None
    regime_rounding: tuple[int, ...] = ()
    derived: tuple[tuple[str, str], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetInfo:
        """Builds a DatasetInfo from :meth:`to_dict` output."""
        fields = dict(data)
        for key in ("sensors", "settings", "categoricals", "regime_rounding"):
            fields[key] = tuple(fields.get(key, ()))
        fields["derived"] = tuple((str(n), str(e)) for n, e in fields.get("derived", ()))
        return cls(**fields)

    @property
    def value_columns(self) -> tuple[str, ...]:
        """Numeric columns carried from the source (settings then sensors)."""
        return (*self.settings, *self.sensors)


@dataclass
class LoadResult:
    """What a loader returns.

    Attributes:
        frame: Canonical telemetry frame (see module docstring).
        info: Column roles of ``frame``.
        rejects: Rejected rows, columns :data:`REJECT_COLUMNS`; empty when none.
        rows_read: Data rows read from the source before rejection.
    """

    frame: pd.DataFrame
    info: DatasetInfo
    rejects: pd.DataFrame
    rows_read: int

    @property
    def rows_rejected(self) -> int:
        """Number of distinct source rows rejected."""
        if self.rejects.empty:
            return 0
        return int(self.rejects[["source", "line"]].drop_duplicates().shape[0])


def empty_rejects() -> pd.DataFrame:
    """Returns an empty rejected-rows frame with the standard columns."""
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype="object") for c in REJECT_COLUMNS}).astype(
        {"line": "int64"}
    )


def regime_from_settings(settings: pd.DataFrame, decimals: tuple[int, ...]) -> pd.Series:
    """Derives an operating-regime label by rounding operating settings.

    C-MAPSS FD002/FD004 run at six operating conditions; their settings scatter by a few
    thousandths around six set points, so rounding recovers the condition exactly.

    Args:
        settings: Frame whose columns are the settings, in the order of ``decimals``.
        decimals: Decimals to round each setting to.

    Returns:
        String labels such as ``"42_0.84_100"``, one per row.
    """
    if settings.shape[1] != len(decimals):
        raise ValueError(
            f"regime rounding has {len(decimals)} entries for {settings.shape[1]} settings"
        )
    import pandas as pd

    labels = regime_labels(settings.to_numpy(dtype="float64"), decimals)
    return pd.Series(labels, index=settings.index, dtype=object)


def regime_labels(values: np.ndarray, decimals: tuple[int, ...]) -> np.ndarray:
    """The labels of :func:`regime_from_settings` for an array (rows x settings)."""
    if values.shape[1] != len(decimals):
        raise ValueError(
            f"regime rounding has {len(decimals)} entries for {values.shape[1]} settings"
        )
    parts = []
    for column, ndigits in enumerate(decimals):
        # + 0.0 turns -0.0 into 0.0 so that both print the same.
        rounded = values[:, column].round(ndigits) + 0.0
        parts.append([f"{v:.{ndigits}f}" for v in rounded])
    return np.array(["_".join(p) for p in zip(*parts, strict=True)], dtype=object)
