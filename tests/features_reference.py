"""A plain pandas implementation of the features, for tests and the benchmark baseline.

It is written the obvious way, ``groupby(machine).rolling(w, min_periods=1)``, and shares only
the fitted :class:`~pdm_core.features.FeatureState` (the numbers to normalise with) with the
fast path. Tests require both to agree within 1e-9; ``make bench`` times both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pdm_core import schema
from pdm_core.features import FeatureState, regimes_of


def reference_features(frame: pd.DataFrame, state: FeatureState) -> pd.DataFrame:
    """Computes the same columns as :func:`pdm_core.features.compute_features` with pandas.

    Args:
        frame: Canonical telemetry sorted by (machine_id, cycle).
        state: Fitted feature state.

    Returns:
        Frame with ``machine_id``, ``cycle`` and ``state.feature_names`` columns.
    """
    frame = frame.reset_index(drop=True)
    machine = frame[schema.MACHINE].astype(str)
    regimes = regimes_of(frame, state).astype(str).reset_index(drop=True)
    z = pd.DataFrame(index=frame.index)
    known = regimes.isin(list(state.regime_mean)) if state.config.normalize else None
    for i, sensor in enumerate(state.sensors):
        x = frame[sensor].astype("float64")
        if state.config.normalize:
            mean = regimes.map({r: v[i] for r, v in state.regime_mean.items()})
            std = regimes.map({r: v[i] for r, v in state.regime_std.items()})
            mean = mean.fillna(state.global_mean[i])
            std = std.fillna(state.global_std[i])
            x = (x - mean) / std
        z[f"{sensor}__z"] = x
    out = z.copy()
    z["_machine"] = machine.to_numpy()
    z["_t"] = z.groupby("_machine").cumcount().astype("float64")
    for a, b in state.interactions:
        z[f"_{a}*{b}"] = z[f"{a}__z"] * z[f"{b}__z"]
    grouped = z.groupby("_machine", sort=False)
    position = z["_t"]
    for w in state.windows:
        rolling = grouped.rolling(w, min_periods=1)
        count = np.minimum(position + 1, w)
        per_stat: dict[str, dict[str, pd.Series]] = {s: {} for s in state.config.stats}
        for sensor in state.sensors:
            col = f"{sensor}__z"
            roll = rolling[col]
            if "mean" in per_stat:
                per_stat["mean"][sensor] = _flat(roll.mean())
            if "std" in per_stat:
                per_stat["std"][sensor] = _flat(roll.std()).fillna(0.0)
            if "min" in per_stat:
                per_stat["min"][sensor] = _flat(roll.min())
            if "max" in per_stat:
                per_stat["max"][sensor] = _flat(roll.max())
            if "slope" in per_stat:
                t = z["_t"]
                z["_ty"] = t * z[col]
                z["_tt"] = t * t
                means = z.groupby("_machine", sort=False)[["_t", col, "_ty", "_tt"]]
                m = means.rolling(w, min_periods=1).mean().reset_index(level=0, drop=True)
                m = m.sort_index()
                var_t = m["_tt"] - m["_t"] ** 2
                slope = (m["_ty"] - m["_t"] * m[col]) / var_t
                per_stat["slope"][sensor] = slope.where(count > 1, 0.0)
            if "roc" in per_stat:
                first = grouped[col].transform("first")
                lagged = grouped[col].shift(w - 1)
                start = lagged.where(position >= w - 1, first)
                roc = (z[col] - start) / (count - 1)
                per_stat["roc"][sensor] = roc.where(count > 1, 0.0)
        for stat in state.config.stats:
            for sensor in state.sensors:
                out[f"{sensor}__{stat}_w{w}"] = per_stat[stat][sensor]
        for a, b in state.interactions:
            out[f"{a}__x__{b}_w{w}"] = _flat(rolling[f"_{a}*{b}"].mean())
    if state.use_time_since_maintenance:
        out[schema.TIME_SINCE_MAINTENANCE] = frame[schema.TIME_SINCE_MAINTENANCE].astype(float)
    out["regime_known"] = 1.0 if known is None else known.astype("float64")
    for column, levels in state.categoricals.items():
        for level in levels:
            out[f"{column}={level}"] = (frame[column].astype(str) == level).astype("float64")
    out = out[state.feature_names].astype("float64")
    out.insert(0, schema.CYCLE, frame[schema.CYCLE].to_numpy())
    out.insert(0, schema.MACHINE, frame[schema.MACHINE].to_numpy())
    return out


def _flat(rolled: pd.Series) -> pd.Series:
    """Drops the group level added by groupby().rolling() and restores row order."""
    return rolled.reset_index(level=0, drop=True).sort_index()
