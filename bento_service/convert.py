"""Between the service's JSON windows and the canonical telemetry frame the features read.

:func:`frame_from_windows` turns validated request windows into canonical rows (the schema of
:mod:`pdm_core.schema`); :func:`window_from_frame` does the reverse, for clients, tests, the
benchmark and the self-test example stored with the model.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bento_service.schemas import MachineWindow, WindowContract
from pdm_core import schema


def frame_from_windows(windows: list[MachineWindow], contract: WindowContract) -> pd.DataFrame:
    """Canonical telemetry rows of validated windows (machines in request order).

    Windows ordered by timestamp get cycles 1..n: only the order of readings matters to the
    window features.
    """
    machine: list[str] = []
    cycles: list[np.ndarray] = []
    columns: dict[str, list[Any]] = {s: [] for s in contract.sensors}
    columns.update({s: [] for s in contract.settings})
    regimes: list[str] = []
    tsm: list[float] = []
    categories: dict[str, list[str]] = {c: [] for c in contract.categoricals}
    for window in windows:
        readings = window.readings
        n = len(readings)
        machine.extend([window.machine_id] * n)
        if all(r.cycle is not None for r in readings):
            cycles.append(np.fromiter((r.cycle for r in readings), np.int64, n))
        else:
            cycles.append(np.arange(1, n + 1, dtype=np.int64))
        for sensor in contract.sensors:
            columns[sensor].extend([r.sensors[sensor] for r in readings])
        for setting in contract.settings:
            columns[setting].extend([r.settings[setting] for r in readings])
        if contract.needs_regime:
            regimes.extend([str(r.regime) for r in readings])
        if contract.needs_time_since_maintenance:
            tsm.extend([float(r.time_since_maintenance) for r in readings])  # type: ignore[arg-type]
        for column in contract.categoricals:
            categories[column].extend([r.categories[column] for r in readings])
    frame = pd.DataFrame(
        {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}
    )
    frame.insert(0, schema.CYCLE, np.concatenate(cycles) if cycles else np.zeros(0, np.int64))
    frame.insert(0, schema.MACHINE, machine)
    if contract.needs_regime:
        frame[schema.REGIME] = regimes
    if contract.needs_time_since_maintenance:
        frame[schema.TIME_SINCE_MAINTENANCE] = np.asarray(tsm, dtype=np.float64)
    for column, levels in categories.items():
        frame[column] = levels
    return frame


def window_from_frame(readings: pd.DataFrame, contract: WindowContract) -> dict[str, Any]:
    """The JSON request body (``MachineWindow``) of one machine's canonical rows.

    Args:
        readings: Canonical rows of one machine, oldest first.
        contract: What the served model needs (which columns to send).

    Returns:
        A dict ready for ``json.dumps``.
    """
    machines = pd.unique(readings[schema.MACHINE].astype(str))
    if len(machines) != 1:
        raise ValueError(f"expected one machine's readings, got {len(machines)} machines")
    sensors = [s for s in (*contract.sensors, *contract.ignored_sensors) if s in readings]
    out: list[dict[str, Any]] = []
    for row in readings.to_dict("records"):
        reading: dict[str, Any] = {
            "cycle": int(row[schema.CYCLE]),
            "sensors": {s: float(row[s]) for s in sensors},
        }
        if contract.settings:
            reading["settings"] = {s: float(row[s]) for s in contract.settings}
        if contract.needs_regime:
            reading["regime"] = str(row[schema.REGIME])
        if contract.needs_time_since_maintenance:
            value = float(row[schema.TIME_SINCE_MAINTENANCE])
            reading["time_since_maintenance"] = None if math.isnan(value) else value
        if contract.categoricals:
            reading["categories"] = {c: str(row[c]) for c in contract.categoricals}
        out.append(reading)
    return {"machine_id": str(machines[0]), "readings": out}
