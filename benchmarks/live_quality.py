"""Warning quality of a stream of alerts against the failures that followed: pure functions.

An alert is a (machine, cycle) pair. A failure is a machine's reading whose remaining life is
0 and whose lifecycle really ended in failure (the simulator's ground truth). Judged over the
readings that were scored:

* a failure is *eligible* when its whole horizon (the ``horizon`` readings before it) lies in
  the scored span of its machine, and *warned* when an alert falls in that horizon; the lead
  is failure cycle minus the first such alert's cycle;
* an alert is *true* when a failure of its machine follows within ``horizon`` readings,
  *false* when none does and the span shows it, and *censored* when the span ends first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pdm_core import schema


@dataclass(frozen=True)
class WarningQuality:
    """What a stream of alerts achieved."""

    failures: int
    warned: int
    median_lead: float | None
    alerts: int
    true_alerts: int
    false_alerts: int
    censored_alerts: int
    readings: int

    @property
    def warned_share(self) -> float | None:
        return self.warned / self.failures if self.failures else None

    @property
    def precision(self) -> float | None:
        judged = self.true_alerts + self.false_alerts
        return self.true_alerts / judged if judged else None

    @property
    def false_per_1000(self) -> float:
        return 1000.0 * self.false_alerts / self.readings if self.readings else 0.0


def failures_of(truth: pd.DataFrame) -> pd.DataFrame:
    """(machine, cycle) of each failure reading: remaining life 0 and labelled as a failure."""
    hit = (truth[schema.RUL] == 0) & (truth[schema.LABEL] == 1)
    return truth.loc[hit, [schema.MACHINE, schema.CYCLE]].astype({schema.MACHINE: str})


def warning_quality(
    alerts: pd.DataFrame, failures: pd.DataFrame, scored: pd.DataFrame, horizon: int
) -> WarningQuality:
    """Judges ``alerts`` against ``failures`` over the ``scored`` readings.

    Args:
        alerts: ``machine_id``, ``cycle`` of each alert raised.
        failures: ``machine_id``, ``cycle`` of each failure (:func:`failures_of`).
        scored: ``machine_id``, ``cycle`` of every reading that was judged.
        horizon: Readings before a failure in which a warning counts (the label's horizon;
            a longer look-back shows how many warnings come earlier than that).
    """
    span = (
        scored.astype({schema.MACHINE: str})
        .groupby(schema.MACHINE)[schema.CYCLE]
        .agg(["min", "max"])
    )
    fail_cycles = {
        m: np.sort(g[schema.CYCLE].to_numpy())
        for m, g in failures.astype({schema.MACHINE: str}).groupby(schema.MACHINE)
    }
    alert_cycles = {
        m: np.sort(g[schema.CYCLE].to_numpy())
        for m, g in alerts.astype({schema.MACHINE: str}).groupby(schema.MACHINE)
    }
    eligible, leads = 0, []
    for machine, cycles in fail_cycles.items():
        if machine not in span.index:
            continue
        first, last = span.loc[machine, "min"], span.loc[machine, "max"]
        mine = alert_cycles.get(machine, np.array([], dtype=np.int64))
        for failure in cycles:
            if failure - horizon < first or failure > last:
                continue
            eligible += 1
            inside = mine[(mine >= failure - horizon) & (mine <= failure)]
            if len(inside):
                leads.append(int(failure - inside[0]))
    true = false = censored = 0
    for machine, cycles in alert_cycles.items():
        fails = fail_cycles.get(machine, np.array([], dtype=np.int64))
        last = span.loc[machine, "max"] if machine in span.index else -1
        for cycle in cycles:
            if ((fails >= cycle) & (fails <= cycle + horizon)).any():
                true += 1
            elif cycle + horizon > last:
                censored += 1
            else:
                false += 1
    return WarningQuality(
        failures=eligible,
        warned=len(leads),
        median_lead=float(np.median(leads)) if leads else None,
        alerts=int(sum(len(c) for c in alert_cycles.values())),
        true_alerts=true,
        false_alerts=false,
        censored_alerts=censored,
        readings=len(scored),
    )


@dataclass(frozen=True)
class ThresholdRule:
    """The trivial baseline: alert when any sensor passes its own fixed threshold.

    Each sensor's threshold is a quantile of its healthy readings on the side where
    readings before a failure lie (a higher or a lower quantile), one quantile for all.
    """

    thresholds: dict[str, float]
    upper: dict[str, bool]
    quantile: float

    def fires(self, readings: pd.DataFrame) -> np.ndarray:
        """Mask of the readings on which the rule raises an alert."""
        hit = np.zeros(len(readings), dtype=bool)
        for sensor, threshold in self.thresholds.items():
            values = readings[sensor].to_numpy(dtype=np.float64)
            hit |= values > threshold if self.upper[sensor] else values < threshold
        return hit


def fit_threshold_rule(
    training: pd.DataFrame,
    sensors: list[str],
    quantiles: tuple[float, ...] = (0.95, 0.975, 0.99, 0.995, 0.999),
) -> ThresholdRule:
    """The quantile whose rule best separates the labelled training readings (F1 per reading)."""
    healthy = training[training[schema.LABEL] == 0]
    failing = training[training[schema.LABEL] == 1]
    upper = {s: bool(failing[s].median() >= healthy[s].median()) for s in sensors}
    label = training[schema.LABEL].to_numpy() == 1
    best: tuple[float, ThresholdRule] | None = None
    for q in quantiles:
        thresholds = {s: float(healthy[s].quantile(q if upper[s] else 1.0 - q)) for s in sensors}
        rule = ThresholdRule(thresholds=thresholds, upper=upper, quantile=q)
        fired = rule.fires(training)
        tp = int((fired & label).sum())
        f1 = 2 * tp / (int(fired.sum()) + int(label.sum())) if tp else 0.0
        if best is None or f1 > best[0]:
            best = (f1, rule)
    assert best is not None
    return best[1]


def daily_alerts(readings: pd.DataFrame, fired: np.ndarray, level: str = "HIGH") -> pd.DataFrame:
    """One alert per machine and day for the readings where ``fired``, as the alert sink keeps.

    The same rule as :func:`pdm_core.alerts.risk_alerts` (one alert per machine, level and
    day, the first reading of the day), so the baseline's alerts are counted like the model's.
    """
    hit = readings.loc[fired, [schema.MACHINE, schema.CYCLE, schema.TIMESTAMP]].copy()
    hit[schema.MACHINE] = hit[schema.MACHINE].astype(str)
    hit["day"] = pd.to_datetime(hit[schema.TIMESTAMP]).dt.date
    hit["risk_level"] = level
    first = hit.sort_values(schema.CYCLE).drop_duplicates([schema.MACHINE, "day", "risk_level"])
    return first[[schema.MACHINE, schema.CYCLE]].reset_index(drop=True)
