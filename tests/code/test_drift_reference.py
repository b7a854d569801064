"""The drift reference of a champion saved before bundles stored one."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from pdm_assets.drift import reference_from_training_set
from pdm_core.drift_inputs import monitored_features
from pdm_core.features import FeatureConfig, fit_feature_state
from pdm_core.simulator import SimulatorConfig, dataset_info, simulate


def test_reference_comes_from_the_training_set_only_when_it_is_the_champions(
    tmp_path: Path,
) -> None:
    config = SimulatorConfig(n_machines=4, n_steps=100)
    state = fit_feature_state(simulate(config), dataset_info(config), FeatureConfig())
    columns = monitored_features(state)
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(300, len(columns))), columns=columns)
    table["split"] = np.where(np.arange(300) < 200, "train", "test")
    with duckdb.connect(str(tmp_path / "w.duckdb")) as connection:
        assert reference_from_training_set(connection, "v1", "v1", state) is None  # no table
        connection.execute("create schema pdm")
        connection.register("t", table)
        connection.execute("create table pdm.training_set as select * from t")
        found = reference_from_training_set(connection, "v1", "v1", state)
        assert found is not None and list(found.columns) == columns and len(found) == 200
        assert np.allclose(np.sort(found[columns[0]]), np.sort(table.loc[:199, columns[0]]))
        assert reference_from_training_set(connection, "v1", "v2", state) is None
        assert reference_from_training_set(connection, None, "v1", state) is None
