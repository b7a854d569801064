"""Bad training input fails with a clear error (code tier, no training)."""

from __future__ import annotations

import numpy as np
import pytest

from pdm_core.models.data import TrainingDataError, model_data
from pdm_core.models.training import TrainingParams, train_rul_regressor_sklearn


def test_one_class_training_set_is_refused(fleet) -> None:
    table = fleet.table.copy()
    table["failure_within_h"] = 0
    with pytest.raises(TrainingDataError, match="only class \\[0\\] of failure_within_h"):
        model_data(table, fleet.state.feature_names)


def test_empty_split_is_refused(fleet) -> None:
    table = fleet.table[fleet.table["split"] != "validation"]
    with pytest.raises(TrainingDataError, match="the validation split has no rows"):
        model_data(table, fleet.state.feature_names)
    with pytest.raises(TrainingDataError, match="the train split has no rows"):
        model_data(fleet.table.iloc[0:0], fleet.state.feature_names)


def test_nan_feature_names_split_column_machine_and_cycle(fleet) -> None:
    table = fleet.table.copy()
    row = table.index[table["split"] == "train"][5]
    column = fleet.state.feature_names[3]
    table.loc[row, column] = np.nan
    with pytest.raises(TrainingDataError) as error:
        model_data(table, fleet.state.feature_names)
    message = str(error.value)
    assert column in message and "train split" in message
    assert str(table.loc[row, "machine_id"]) in message and str(table.loc[row, "cycle"]) in message


def test_missing_feature_column_is_refused(fleet) -> None:
    table = fleet.table.drop(columns=[fleet.state.feature_names[0]])
    with pytest.raises(TrainingDataError, match="lacks column"):
        model_data(table, fleet.state.feature_names)


def test_rul_model_refuses_data_without_rul(fleet) -> None:
    table = fleet.table.copy()
    table["rul"] = np.nan
    data = model_data(table, fleet.state.feature_names)
    with pytest.raises(TrainingDataError, match="no RUL labels"):
        train_rul_regressor_sklearn(data, TrainingParams())
