"""Live scoring of landed readings (``pdm_core.live_scoring``) against the service's answers.

A batch holds a few readings per machine; their windows reach back into earlier batches. Each
scored reading must get exactly what the service answers for the same readings sent as one
``/predict`` window, and every reading that is not scored must come back with its reason.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bento_service.schemas import MachineWindow
from bento_service.scoring import ServedModel
from pdm_core import schema
from pdm_core.live_scoring import RISK_HISTORY_COLUMNS, score_batch
from tests.service_fixtures import ServedFleet, build_served_fleet

NOW = pd.Timestamp("2027-01-01T00:00:00")
TOLERANCE = pd.Timedelta(minutes=10)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> ServedFleet:
    return build_served_fleet(tmp_path_factory.mktemp("live") / "bundle")


@pytest.fixture(scope="module")
def served(fleet: ServedFleet) -> ServedModel:
    return ServedModel.from_bundle(fleet.bundle_dir, name="pdm-fleet-model", version="7")


def as_window(readings: pd.DataFrame, state) -> MachineWindow:  # type: ignore[no-untyped-def]
    """The readings as the JSON body of ``/predict`` would carry them."""
    machine = str(readings[schema.MACHINE].iloc[0])
    rows = [
        {
            "cycle": int(row[schema.CYCLE]),
            "sensors": {s: float(row[s]) for s in state.input_sensors},
            "regime": str(row[schema.REGIME]),
            **(
                {"time_since_maintenance": float(row[schema.TIME_SINCE_MAINTENANCE])}
                if state.use_time_since_maintenance
                else {}
            ),
        }
        for _, row in readings.iterrows()
    ]
    return MachineWindow(machine_id=machine, readings=rows)


def split_batches(telemetry: pd.DataFrame, machines: list[str], cut: int, size: int):  # type: ignore[no-untyped-def]
    """Readings up to ``cut`` as history, the next ``size`` cycles as the new batch."""
    mine = telemetry[telemetry[schema.MACHINE].astype(str).isin(machines)]
    history = mine[mine[schema.CYCLE] <= cut]
    batch = mine[(mine[schema.CYCLE] > cut) & (mine[schema.CYCLE] <= cut + size)]
    return history.reset_index(drop=True), batch.reset_index(drop=True)


def score(fleet: ServedFleet, batch: pd.DataFrame, history: pd.DataFrame, **overrides):  # type: ignore[no-untyped-def]
    arguments = dict(
        batch_id="batch-1",
        model_name="pdm-fleet-model",
        model_version="7",
        newest_before=pd.Series(dtype="int64"),
        now=NOW,
        future_tolerance=TOLERANCE,
    )
    arguments.update(overrides)
    return score_batch(fleet.model, batch, history, **arguments)


def test_windows_spanning_batches_score_like_the_service(
    fleet: ServedFleet, served: ServedModel
) -> None:
    machines = sorted(fleet.telemetry[schema.MACHINE].astype(str).unique())[:3]
    history, batch = split_batches(fleet.telemetry, machines, cut=300, size=4)
    result = score(fleet, batch, history)

    assert list(result.rows.columns) == list(RISK_HISTORY_COLUMNS)
    assert len(result.rows) == len(batch) == 12
    assert result.skipped.empty
    length = fleet.state.window_length
    everything = pd.concat([history, batch])
    for row in result.rows.itertuples(index=False):
        machine, cycle = row.machine_id, row.cycle
        mine = everything[everything[schema.MACHINE].astype(str) == machine]
        window = mine[mine[schema.CYCLE] <= cycle].sort_values(schema.CYCLE).tail(length)
        answer = served.predict([as_window(window, fleet.state)])[0]
        # Calibrated probabilities from float32 tree sums (the service's runtime): the
        # service tests' parity bound.
        assert row.failure_probability == pytest.approx(answer.failure_probability, abs=1e-5)
        assert row.risk_level == answer.risk_level
        assert row.rul == pytest.approx(answer.rul, abs=1e-4)
        assert row.rul_lower == pytest.approx(answer.rul_lower, abs=1e-4)
        assert row.rul_upper == pytest.approx(answer.rul_upper, abs=1e-4)
        assert row.rul_lower <= row.rul <= row.rul_upper
        assert row.anomaly_score == pytest.approx(answer.anomaly_score, abs=1e-6)
        assert bool(row.anomaly_alert) == answer.anomaly_alert
        gated = fleet.model.alert_rule.raises(answer.risk_level, answer.rul)
        assert bool(row.alert) == (gated or answer.anomaly_alert)
        assert row.model_version == "7"
        assert row.batch_id == "batch-1"


def test_a_new_machine_is_scored_from_its_window_length_th_reading(fleet: ServedFleet) -> None:
    machine = str(fleet.telemetry[schema.MACHINE].iloc[0])
    length = fleet.state.window_length
    history, batch = split_batches(fleet.telemetry, [machine], cut=0, size=length + 2)
    result = score(fleet, batch, history)

    short = result.skipped[result.skipped["reason"] == "window_too_short"]
    assert list(short[schema.CYCLE]) == list(batch[schema.CYCLE][: length - 1])
    assert list(result.rows[schema.CYCLE]) == list(batch[schema.CYCLE][length - 1 :])
    assert len(result.rows) + len(result.skipped) == len(batch)


def test_late_and_future_readings_are_refused_with_their_reason(fleet: ServedFleet) -> None:
    machines = sorted(fleet.telemetry[schema.MACHINE].astype(str).unique())[:2]
    history, batch = split_batches(fleet.telemetry, machines, cut=300, size=3)
    batch[schema.TIMESTAMP] = pd.Timestamp("2026-06-01")
    late_machine, future_machine = machines
    newest = pd.Series({late_machine: 302})
    future = batch[schema.MACHINE].astype(str) == future_machine
    batch.loc[future & (batch[schema.CYCLE] == 303), schema.TIMESTAMP] = NOW + pd.Timedelta("1h")
    result = score(fleet, batch, history, newest_before=newest)

    reasons = result.skipped.set_index([schema.MACHINE, schema.CYCLE])["reason"].to_dict()
    assert reasons == {
        (late_machine, 301): "late",
        (late_machine, 302): "late",
        (future_machine, 303): "future_timestamp",
    }
    assert result.skipped_by_reason()["late"] == 2
    scored = set(zip(result.rows[schema.MACHINE], result.rows[schema.CYCLE], strict=True))
    assert scored == {(late_machine, 303), (future_machine, 301), (future_machine, 302)}


def test_a_missing_sensor_value_spoils_only_the_windows_that_hold_it(fleet: ServedFleet) -> None:
    machine = str(fleet.telemetry[schema.MACHINE].iloc[0])
    length = fleet.state.window_length
    history, batch = split_batches(fleet.telemetry, [machine], cut=300, size=length + 3)
    sensor = fleet.state.sensors[0]
    batch.loc[1, sensor] = np.nan  # the batch's second reading
    result = score(fleet, batch, history)

    spoiled = result.skipped[result.skipped["reason"] == "unscorable_values"]
    cycles = list(batch[schema.CYCLE])
    # The gap is inside the windows of the readings from it up to length - 1 later.
    assert list(spoiled[schema.CYCLE]) == cycles[1 : 1 + length]
    assert list(result.rows[schema.CYCLE]) == [cycles[0], *cycles[1 + length :]]
    assert np.isfinite(result.rows["failure_probability"].astype(float)).all()


def test_an_empty_batch_scores_nothing_and_skips_nothing(fleet: ServedFleet) -> None:
    _, batch = split_batches(fleet.telemetry, ["no-such-machine"], cut=0, size=5)
    result = score(fleet, batch, batch)
    assert result.rows.empty and result.skipped.empty
    assert list(result.rows.columns) == list(RISK_HISTORY_COLUMNS)
