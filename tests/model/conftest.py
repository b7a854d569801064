"""A small simulated fleet, its features and training set, shared by the model tests."""

from __future__ import annotations

import pytest

from pdm_core.simulator import SimulatorConfig
from tests.fleets import Fleet, simulated_fleet


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    return simulated_fleet(SimulatorConfig(n_machines=24, n_steps=1500, seed=11))
