"""A small simulated fleet, its features and training set, shared by the model tests."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest

from pdm_core.features import FeatureState, compute_features, fit_feature_state
from pdm_core.models.data import ModelData, model_data
from pdm_core.simulator import SimulatorConfig, dataset_info, simulate
from pdm_core.split import assign_splits, split_of_rows
from pdm_core.training_set import build_training_set


@dataclass
class Fleet:
    telemetry: pd.DataFrame
    state: FeatureState
    table: pd.DataFrame
    data: ModelData


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    config = SimulatorConfig(n_machines=24, n_steps=1500, seed=11)
    telemetry = simulate(config)
    info = dataset_info(config)
    segments = assign_splits(telemetry, info)
    train = split_of_rows(telemetry, segments) == "train"
    state = fit_feature_state(telemetry, info, train_mask=train)
    table, _ = build_training_set(
        compute_features(telemetry, state), telemetry, segments, state.window_length
    )
    return Fleet(telemetry, state, table, model_data(table, state.feature_names))
