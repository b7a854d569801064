"""Live scoring: every newly landed reading is scored on its own window, as the service would.

A landed batch rarely holds a whole window per machine (a batch may carry one reading per
machine), so each reading's window is built from the batch plus the machine's preceding
readings in the warehouse. The features come from :func:`pdm_core.features.compute_features`,
the same definition training and the service use; a reading is scored only when its machine
has at least ``window_length`` readings up to it, because the service refuses shorter windows
(``window_too_short``) and a score from a made-up history would be a guess.

Readings that cannot be scored are returned with their reason, never dropped in silence:

* ``window_too_short``: fewer than ``window_length`` readings of the machine so far;
* ``late``: the machine already has a later reading in a batch that landed before this one,
  so the reading arrived out of order (its window would rewrite history already scored);
* ``future_timestamp``: stamped further ahead of the ingestion time than allowed;
* ``unscorable_values``: the model's inputs are missing or not finite for that window.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pdm_core import schema
from pdm_core.alerts import Alert, RiskAlertRule, risk_alerts

if TYPE_CHECKING:
    import pandas as pd

    from pdm_core.features import FeatureState
    from pdm_core.models.bundle import FleetModel

RISK_HISTORY_COLUMNS: tuple[str, ...] = (
    "batch_id",
    schema.MACHINE,
    schema.CYCLE,
    schema.TIMESTAMP,
    *schema.SCORE_COLUMNS,
    "alert",
    "model_name",
    "model_version",
    "scored_at",
)
"""One row of ``pdm.risk_history``: which model version gave which score to which reading."""
SKIP_COLUMNS: tuple[str, ...] = (schema.MACHINE, schema.CYCLE, "reason", "detail")
SKIP_REASONS: tuple[str, ...] = (
    "window_too_short",
    "late",
    "future_timestamp",
    "unscorable_values",
)


@dataclass(frozen=True)
class LiveScores:
    """The outcome of scoring one batch.

    Attributes:
        rows: One row per scored reading, columns :data:`RISK_HISTORY_COLUMNS`.
        skipped: One row per reading that was not scored, columns :data:`SKIP_COLUMNS`.
        rule: The rule that flagged ``alert`` on the rows (the model's own).
    """

    rows: pd.DataFrame
    skipped: pd.DataFrame
    rule: RiskAlertRule

    def alerting_rows(self) -> list[dict]:
        """The scored readings flagged ``alert`` (the only ones that can raise an alert)."""
        return self.rows[self.rows["alert"].astype(bool)].to_dict("records")

    def alerts(self, today: str) -> list[Alert]:
        """The high-risk and anomaly alerts the flagged readings raise (one per event)."""
        return risk_alerts(self.alerting_rows(), today, self.rule)

    def skipped_by_reason(self) -> dict[str, int]:
        """Count of skipped readings per reason (every reason listed, zeros included)."""
        counts = self.skipped["reason"].value_counts()
        return {reason: int(counts.get(reason, 0)) for reason in SKIP_REASONS}


def _skips(
    frame: pd.DataFrame, mask: np.ndarray, reason: str,
    detail: Callable[[pd.DataFrame], pd.Series | str],
) -> pd.DataFrame | None:  # fmt: skip
    """The ``mask`` rows of ``frame`` as skipped readings, None when there are none."""
    import pandas as pd

    if not mask.any():
        return None
    rows = frame[mask]
    said = detail(rows)
    return pd.DataFrame(
        {
            schema.MACHINE: rows[schema.MACHINE].astype(str).to_numpy(),
            schema.CYCLE: rows[schema.CYCLE].to_numpy(dtype=np.int64),
            "reason": reason,
            "detail": said if isinstance(said, str) else said.to_numpy(),
        },
        columns=list(SKIP_COLUMNS),
    )


def late_readings(batch: pd.DataFrame, newest_before: pd.Series) -> np.ndarray:
    """Mask of readings at or before their machine's newest cycle in earlier batches.

    Args:
        batch: The batch's readings.
        newest_before: Newest cycle per machine (index ``machine_id``) over the batches that
            landed before this one.
    """
    newest = batch[schema.MACHINE].astype(str).map(newest_before.astype("float64"))
    return (batch[schema.CYCLE].to_numpy(dtype=np.float64) <= newest.to_numpy()) & newest.notna()


def future_readings(batch: pd.DataFrame, now: pd.Timestamp, tolerance: pd.Timedelta) -> np.ndarray:
    """Mask of readings stamped more than ``tolerance`` after ``now`` (missing stamps pass)."""
    if schema.TIMESTAMP not in batch.columns:
        return np.zeros(len(batch), dtype=bool)
    stamps = _naive_utc(batch[schema.TIMESTAMP])
    limit = (now.tz_convert("UTC").tz_localize(None) if now.tzinfo else now) + tolerance
    return stamps > limit.to_datetime64()  # NaT compares False: a missing stamp passes


def _naive_utc(stamps: pd.Series) -> np.ndarray:
    """Timestamps as naive UTC ``datetime64[ns]`` (aware ones converted, NaT kept)."""
    import pandas as pd

    if stamps.dtype == "datetime64[ns]":  # as stored: no parsing needed
        return stamps.to_numpy()
    parsed = pd.to_datetime(stamps)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.to_numpy(dtype="datetime64[ns]")


def window_input(batch: pd.DataFrame, history: pd.DataFrame, window_length: int) -> pd.DataFrame:
    """The batch's readings with, per machine, the readings that precede them.

    Args:
        batch: Readings to score.
        history: Earlier readings of the same machines (other batches); any number of rows,
            only the ``window_length - 1`` before each machine's first new cycle are kept.
        window_length: The model's longest feature window.

    Returns:
        Canonical rows sorted by machine and cycle, with a boolean column ``_new`` that marks
        the batch's own readings and ``_position`` that counts each machine's readings from 1.
    """
    import pandas as pd

    # Plain arrays: at live rates the frame bookkeeping, not the model, is what costs.
    names, codes = np.unique(batch[schema.MACHINE].astype(str).to_numpy(), return_inverse=True)
    cycles = batch[schema.CYCLE].to_numpy(dtype=np.int64)
    first_new = np.full(len(names), np.iinfo(np.int64).max)
    np.minimum.at(first_new, codes, cycles)
    rows, past_codes, past_cycles = _earlier_rows(history, names, first_new)
    counts = np.bincount(past_codes, minlength=len(names))
    # Rank of each earlier row from its machine's newest (1 = newest): keep window_length - 1.
    from_end = np.cumsum(counts)[past_codes] - np.arange(len(past_codes))
    keep = from_end <= max(window_length - 1, 0)
    kept = history.iloc[rows[keep]]
    kept_codes = past_codes[keep]
    dropped = counts - np.bincount(kept_codes, minlength=len(names))
    columns = [c for c in batch.columns if c in kept.columns or kept.empty]
    all_codes = np.concatenate([kept_codes, codes])
    order = np.lexsort((np.concatenate([past_cycles[keep], cycles]), all_codes))
    frame = pd.concat([kept[columns], batch[columns]], ignore_index=True)
    frame = frame.take(order).reset_index(drop=True)
    frame["_new"] = np.concatenate([np.zeros(len(kept), bool), np.ones(len(batch), bool)])[order]
    # _position: the reading's rank among all the machine's readings (older ones included).
    sizes = np.bincount(all_codes, minlength=len(names))
    ordered_codes = all_codes[order]
    rank = np.arange(len(order)) - (np.cumsum(sizes) - sizes)[ordered_codes]
    frame["_position"] = rank + 1 + dropped[ordered_codes]
    return frame


def _earlier_rows(
    history: pd.DataFrame, names: np.ndarray, first_new: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The earlier readings a batch's windows reach back to, in (machine, cycle) order.

    Returns positions in ``history``, machine codes (index into ``names``) and cycles of the
    rows of the batch's machines that come before each machine's first new cycle.
    """
    empty = np.zeros(0, dtype=np.int64)
    if history.empty or not len(names):
        return empty, empty, empty
    machines = history[schema.MACHINE].astype(str).to_numpy()
    at = np.minimum(np.searchsorted(names, machines), len(names) - 1)
    cycles = history[schema.CYCLE].to_numpy(dtype=np.int64)
    rows = np.flatnonzero((names[at] == machines) & (cycles < first_new[at]))
    order = np.lexsort((cycles[rows], at[rows]))
    rows = rows[order]
    return rows, at[rows].astype(np.int64), cycles[rows]


def score_batch(
    model: FleetModel,
    batch: pd.DataFrame,
    history: pd.DataFrame,
    *,
    batch_id: str,
    model_name: str,
    model_version: str,
    newest_before: pd.Series,
    now: pd.Timestamp,
    future_tolerance: pd.Timedelta,
) -> LiveScores:
    """Scores every reading of ``batch`` that can be scored; says why for every other one.

    Args:
        model: The champion.
        batch: The batch's stored readings (canonical columns).
        history: The same machines' readings from other batches.
        batch_id: Partition key written into every row.
        model_name: Registered model name written into every row.
        model_version: Champion version written into every row.
        newest_before: Newest cycle per machine over batches that landed before this one.
        now: Scoring time (also the reference for ``future_timestamp``).
        future_tolerance: How far ahead of ``now`` a timestamp may be.
    """
    import pandas as pd

    state = model.feature_state
    late = late_readings(batch, newest_before)
    future = future_readings(batch, now, future_tolerance) & ~late
    frame = window_input(batch[~(late | future)], history, state.window_length)
    spoiled = spoiled_windows(frame, _numeric_inputs(state), state.window_length)
    new = frame["_new"].to_numpy(dtype=bool)
    short = frame["_position"].to_numpy() < state.window_length
    need = f"the model needs {state.window_length}"
    skipped = [
        _skips(batch, late, "late", lambda _: "a later reading of this machine landed earlier"),
        _skips(batch, future, "future_timestamp",
               lambda _: f"more than {future_tolerance} after {now}"),
        _skips(frame, new & short, "window_too_short",
               lambda rows: rows["_position"].map(lambda n: f"{int(n)} reading(s) so far, {need}")),
        _skips(frame, new & ~short & spoiled, "unscorable_values",
               lambda _: "a model input in its window is missing"),
    ]  # fmt: skip
    scorable = new & ~short & ~spoiled
    rows = pd.DataFrame(columns=list(RISK_HISTORY_COLUMNS))
    if scorable.any():
        with single_blas_thread():
            scored = _score_rows(model, frame, scorable)
        rows = scored.assign(
            batch_id=batch_id, model_name=model_name, model_version=str(model_version),
            scored_at=now,
        )[list(RISK_HISTORY_COLUMNS)]  # fmt: skip
    found = [part for part in skipped if part is not None]
    skipped_rows = (
        pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=list(SKIP_COLUMNS))
    )
    return LiveScores(rows=rows, skipped=skipped_rows, rule=model.alert_rule)


@contextmanager
def single_blas_thread() -> Iterator[None]:
    """Holds BLAS and OpenMP pools to one thread while a batch is scored.

    Scoring is a chain of small matrix products over a batch's few thousand rows: one process
    scores as fast on one thread as on two (about 80,000 readings/s here either way), but two
    processes that score at once (two ingestion runs, or ``machine_risk`` beside
    ``drift_report`` under the multiprocess executor) each start a thread per core and then
    wait on each other: 6x slower together than one alone, measured on this 2-core machine
    (``make bench-live``).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _numeric_inputs(state: FeatureState) -> list[str]:
    tsm = [schema.TIME_SINCE_MAINTENANCE] if state.use_time_since_maintenance else []
    return list(state.input_sensors) + tsm


def spoiled_windows(frame: pd.DataFrame, numeric: list[str], window_length: int) -> np.ndarray:
    """Mask of readings whose window holds a missing or non-finite model input.

    A bad value spoils the windows that contain it (its own and the next
    ``window_length - 1`` of its machine) and only those.
    """
    import pandas as pd

    values = frame[numeric].to_numpy(dtype=np.float64)
    bad = pd.Series(~np.isfinite(values).all(axis=1), index=frame.index, dtype=np.int64)
    # Bad values among the machine's last window_length readings: a running count minus the
    # count window_length readings earlier (both per machine, rows in reading order).
    machine = frame[schema.MACHINE].to_numpy()
    so_far = bad.groupby(machine, sort=False).cumsum()
    before = so_far.groupby(machine, sort=False).shift(window_length, fill_value=0)
    return (so_far - before).to_numpy() > 0


def _score_rows(model: FleetModel, frame: pd.DataFrame, scorable: np.ndarray) -> pd.DataFrame:
    """Keys, timestamp, scores and alert flag of the ``scorable`` rows of ``frame``."""
    import pandas as pd

    from pdm_core.features import compute_features

    state = model.feature_state
    numeric = _numeric_inputs(state)
    filled = frame.drop(columns=["_new", "_position"])
    values = filled[numeric].to_numpy(dtype=np.float64)
    # Filled values only reach windows that spoiled_windows has already excluded. A typical
    # value, not 0: a derived sensor computed from the fill must stay finite (no x / 0).
    finite = np.isfinite(values)
    if not finite.all():
        with warnings.catch_warnings():  # a column with no finite value: filled with 1
            warnings.simplefilter("ignore", RuntimeWarning)
            typical = np.nanmedian(np.where(finite, values, np.nan), axis=0)
        filled[numeric] = np.where(finite, values, np.nan_to_num(typical, nan=1.0))
    features = compute_features(filled, state)
    if not _same_keys(features, filled):  # compute_features orders by (machine, cycle)
        keys = pd.MultiIndex.from_frame(filled[[schema.MACHINE, schema.CYCLE]])
        features = features.set_index([schema.MACHINE, schema.CYCLE]).reindex(keys).reset_index()
    chosen = features[model.features].to_numpy(dtype=np.float32)[scorable]
    scored = model.score(chosen)
    rows = pd.DataFrame(
        {
            schema.MACHINE: filled[schema.MACHINE].astype(str).to_numpy()[scorable],
            schema.CYCLE: filled[schema.CYCLE].to_numpy(dtype=np.int64)[scorable],
            schema.TIMESTAMP: _timestamps(frame)[scorable],
            **{c: scored[c] for c in schema.SCORE_COLUMNS},
        }
    )
    high = model.alert_rule.mask(rows["risk_level"].to_numpy(), rows["rul"].to_numpy())
    rows["alert"] = high | rows["anomaly_alert"].to_numpy(dtype=bool)
    return rows


def _same_keys(features: pd.DataFrame, frame: pd.DataFrame) -> bool:
    """Whether ``features`` rows are ``frame``'s rows in the same order."""
    return bool(
        np.array_equal(features[schema.CYCLE].to_numpy(), frame[schema.CYCLE].to_numpy())
        and np.array_equal(
            features[schema.MACHINE].astype(str).to_numpy(),
            frame[schema.MACHINE].astype(str).to_numpy(),
        )
    )


def _timestamps(frame: pd.DataFrame) -> np.ndarray:
    if schema.TIMESTAMP not in frame.columns:
        return np.full(len(frame), np.datetime64("NaT"), dtype="datetime64[ns]")
    return _naive_utc(frame[schema.TIMESTAMP])
