"""Simulated fleets made ready for training, shared by the model and service tests."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from pdm_core.derived import evaluate, parse_derived
from pdm_core.features import FeatureState, compute_features, fit_feature_state
from pdm_core.models.data import ModelData, model_data
from pdm_core.simulator import SimulatorConfig, dataset_info, simulate
from pdm_core.split import assign_splits, split_of_rows
from pdm_core.training_set import build_training_set


@dataclass
class Fleet:
    """Telemetry, its fitted feature state, feature rows, training table and model data."""

    telemetry: pd.DataFrame
    state: FeatureState
    features: pd.DataFrame
    table: pd.DataFrame
    data: ModelData


def simulated_fleet(config: SimulatorConfig, derived: tuple[tuple[str, str], ...] = ()) -> Fleet:
    """Simulates a fleet and runs the pipeline's data steps on it (no Dagster).

    ``derived`` adds sensors computed from others, as a mapping's ``derived_columns`` does.
    """
    telemetry = simulate(config)
    info = dataset_info(config)
    if derived:
        columns = {s: telemetry[s].to_numpy() for s in info.sensors}
        telemetry = telemetry.assign(**evaluate(parse_derived(derived, info.sensors), columns))
        names = tuple(name for name, _ in derived)
        info = replace(info, sensors=(*info.sensors, *names), derived=derived)
    segments = assign_splits(telemetry, info)
    train = split_of_rows(telemetry, segments) == "train"
    state = fit_feature_state(telemetry, info, train_mask=train)
    features = compute_features(telemetry, state)
    table, _ = build_training_set(features, telemetry, segments, state.window_length)
    return Fleet(telemetry, state, features, table, model_data(table, state.feature_names))
