"""Evaluation of a component on the untouched test split: metrics and plots."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pdm_core import metrics, schema
from pdm_core.models.data import SplitData
from pdm_core.models.rul_interval import RulInterval, interval_metrics
from pdm_core.models.trained import TrainedModel


def rul_protocol_rows(split: SplitData, last_cycle_only: bool) -> np.ndarray:
    """Rows scored by the RUL protocol: each machine's last cycle (C-MAPSS), or all rows."""
    if not last_cycle_only:
        return np.arange(len(split))
    keys = split.keys.assign(_row=np.arange(len(split)))
    last = keys.loc[keys.groupby(schema.MACHINE, sort=False)[schema.CYCLE].idxmax()]
    return last["_row"].to_numpy()


def evaluate_component(
    model: TrainedModel,
    split: SplitData,
    horizon: int,
    readings_per_day: float,
    last_cycle_only: bool,
) -> tuple[dict[str, float], dict[str, bytes]]:
    """Computes the kind's test metrics (unprefixed names, see :mod:`pdm_core.metrics`) and plots.

    Args:
        model: The component.
        split: Test split matrices.
        horizon: Horizon H of the failure label.
        readings_per_day: Readings per machine-day (for false alarms per machine-day).
        last_cycle_only: Score RUL at each machine's last reading only (C-MAPSS protocol).

    Returns:
        ``(metrics, plots)``; plots are PNG bytes by name.
    """
    from pdm_core.models import plots

    score = model.predict(split.X)
    if model.kind == "risk_classifier":
        threshold = float(model.extra.get("threshold", 0.5))
        result = metrics.classification_metrics(split.label, score, threshold)
        return result, plots.classifier_plots(split.label, score, threshold)
    if model.kind == "rul_regressor":
        cap = float(model.extra["rul_cap"])
        rows = rul_protocol_rows(split, last_cycle_only)
        true = np.minimum(split.rul[rows], cap)
        result = metrics.rul_metrics(true, score[rows])
        result["all_rows_rmse"] = metrics.rul_metrics(np.minimum(split.rul, cap), score)["rmse"]
        result["scored_rows"] = float(len(rows))
        if "rul_interval" in model.extra:
            interval = RulInterval.from_dict(model.extra["rul_interval"])
            result.update(interval_metrics(interval, score[rows], true))
        units = split.keys[schema.MACHINE].to_numpy()[rows]
        return result, plots.rul_plots(true, score[rows], units)
    frame = pd.DataFrame(
        {
            schema.MACHINE: split.keys[schema.MACHINE].to_numpy(),
            schema.CYCLE: split.keys[schema.CYCLE].to_numpy(),
            schema.RUL: split.rul,
            schema.LABEL: split.label,
        }
    )
    threshold = float(model.extra["threshold"])
    result = metrics.anomaly_metrics(frame, score, threshold, horizon, readings_per_day)
    return result, {}
