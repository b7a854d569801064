"""Between the service's JSON windows and the canonical telemetry frame the features read.

:func:`arrays_from_windows` turns validated request windows (``readings`` or ``columns``)
into the arrays the service's feature path reads (each machine's last readings);
:func:`window_from_frame` turns canonical rows (the schema of :mod:`pdm_core.schema`) into a
request body, for clients, tests, the benchmark and the self-test example stored with the
model; :func:`columns_from_window` gives that body's columnar form.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from bento_service.schemas import MachineWindow, WindowContract
from pdm_core import schema
from pdm_core.features import WindowArrays

if TYPE_CHECKING:  # pandas stays out of the service's workers (cold start)
    import pandas as pd


def arrays_from_windows(windows: list[MachineWindow], contract: WindowContract) -> WindowArrays:
    """Each validated window's last ``contract.window_length`` readings, as arrays.

    Only the order of readings matters to the features of a machine's latest reading, and only
    its last ``window_length`` readings enter them, so every window is cut to that length.
    """
    length = contract.window_length
    sensors: list[list[list[float]]] = [[] for _ in contract.sensors]
    settings: list[list[list[float]]] = [[] for _ in contract.settings]
    regimes: list[int] = []  # codes into ``levels``: no per-reading string work later
    levels: dict[str, int] = {}
    tsm: list[float] = []
    categories: dict[str, list[str]] = {c: [] for c in contract.categoricals}
    for window in windows:
        if window.columns is not None:
            columns = window.columns
            for i, sensor in enumerate(contract.sensors):
                sensors[i].append(columns.sensors[sensor][-length:])
            for i, setting in enumerate(contract.settings):
                settings[i].append(columns.settings[setting][-length:])
            if contract.needs_regime:
                regimes += [
                    levels.setdefault(str(label), len(levels))
                    for label in columns.regime[-length:]  # type: ignore[index]
                ]
            if contract.needs_time_since_maintenance:
                tsm.append(float(columns.time_since_maintenance[-1]))  # type: ignore[index,arg-type]
            for column in contract.categoricals:
                categories[column].append(columns.categories[column][-1])
            continue
        readings = window.readings[-length:]  # type: ignore[index]
        for i, sensor in enumerate(contract.sensors):
            sensors[i].append([r.sensors[sensor] for r in readings])
        for i, setting in enumerate(contract.settings):
            settings[i].append([r.settings[setting] for r in readings])
        if contract.needs_regime:
            regimes += [levels.setdefault(str(r.regime), len(levels)) for r in readings]
        if contract.needs_time_since_maintenance:
            tsm.append(float(readings[-1].time_since_maintenance))  # type: ignore[arg-type]
        for column in contract.categoricals:
            categories[column].append(readings[-1].categories[column])
    n = len(windows)
    return WindowArrays(
        sensors=np.array(sensors, dtype=np.float64).reshape(len(contract.sensors), n, length),
        regimes=np.array(regimes, dtype=np.intp).reshape(n, length)
        if contract.needs_regime
        else None,
        settings=np.array(settings, dtype=np.float64).reshape(-1, n, length)
        if contract.settings
        else None,
        time_since_maintenance=np.array(tsm) if contract.needs_time_since_maintenance else None,
        categories={c: np.array(v, dtype=object) for c, v in categories.items()},
        regime_levels=tuple(levels) if contract.needs_regime else None,
    )


def window_from_frame(readings: pd.DataFrame, contract: WindowContract) -> dict[str, Any]:
    """The JSON request body (``MachineWindow``) of one machine's canonical rows.

    Args:
        readings: Canonical rows of one machine, oldest first.
        contract: What the served model needs (which columns to send).

    Returns:
        A dict ready for ``json.dumps``.
    """
    return window_from_records(readings.to_dict("records"), contract)


def window_from_records(records: list[dict[str, Any]], contract: WindowContract) -> dict[str, Any]:
    """:func:`window_from_frame` for canonical rows as records (e.g. read from JSON).

    A missing or NaN ``time_since_maintenance`` is sent as null.
    """
    machines = list(dict.fromkeys(str(r[schema.MACHINE]) for r in records))
    if len(machines) != 1:
        raise ValueError(f"expected one machine's readings, got {len(machines)} machines")
    present = records[0].keys()
    sensors = [s for s in contract.known_sensors if s in present]
    out: list[dict[str, Any]] = []
    for row in records:
        reading: dict[str, Any] = {
            "cycle": int(row[schema.CYCLE]),
            "sensors": {s: float(row[s]) for s in sensors},
        }
        if contract.settings:
            reading["settings"] = {s: float(row[s]) for s in contract.settings}
        if contract.needs_regime:
            reading["regime"] = str(row[schema.REGIME])
        if contract.needs_time_since_maintenance:
            value = row.get(schema.TIME_SINCE_MAINTENANCE)
            value = math.nan if value is None else float(value)
            reading["time_since_maintenance"] = None if math.isnan(value) else value
        if contract.categoricals:
            reading["categories"] = {c: str(row[c]) for c in contract.categoricals}
        out.append(reading)
    return {"machine_id": machines[0], "readings": out}


def columns_from_window(window: dict[str, Any]) -> dict[str, Any]:
    """The columnar request body of a ``readings`` body (as :func:`window_from_frame` gives).

    Args:
        window: ``{"machine_id", "readings": [...]}``.

    Returns:
        ``{"machine_id", "columns": {...}}``, ready for ``json.dumps``.
    """
    readings = window["readings"]
    columns: dict[str, Any] = {}
    for key in ("cycle", "timestamp", "regime", "time_since_maintenance"):
        if any(key in r for r in readings):
            columns[key] = [r.get(key) for r in readings]
    for key in ("sensors", "settings", "categories"):
        names = list(dict.fromkeys(n for r in readings for n in r.get(key, {})))
        if names:
            columns[key] = {n: [r[key].get(n) for r in readings] for n in names}
    return {"machine_id": window["machine_id"], "columns": columns}
