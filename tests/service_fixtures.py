"""A small fleet model bundle and a real ``fleet-serve`` process, for the service tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd

from pdm_core.features import FeatureState
from pdm_core.models.bundle import FleetModel, make_example
from pdm_core.models.operating import choose_operating_values
from pdm_core.models.training import (
    TrainingParams,
    train_anomaly_detector_keras,
    train_risk_classifier_sklearn,
    train_rul_regressor_sklearn,
)
from pdm_core.simulator import SimulatorConfig
from tests.fleets import simulated_fleet
from tests.services import free_port

REPO = Path(__file__).resolve().parents[1]


DERIVED = (("electrical_load", "motor_current * rotational_speed / 1000"),)
"""A derived sensor in the served model: clients send its inputs, the service computes it."""


@dataclass
class ServedFleet:
    """A trained bundle on disk plus the data it came from."""

    bundle_dir: Path
    model: FleetModel
    telemetry: pd.DataFrame
    features: pd.DataFrame
    state: FeatureState


def build_served_fleet(directory: Path) -> ServedFleet:
    """Trains a small fleet model (sklearn classifier and RUL, Keras autoencoder) with a derived
    sensor and saves it with its self-test example, as ``fleet_model_candidate`` does."""
    config = SimulatorConfig(n_machines=16, n_steps=900, seed=5)
    fleet = simulated_fleet(config, derived=DERIVED)
    params = TrainingParams(epochs=5, boosting_iterations=60, horizon=config.horizon)
    components = {
        "risk_classifier": train_risk_classifier_sklearn(fleet.data, params),
        "rul_regressor": train_rul_regressor_sklearn(fleet.data, params),
        "anomaly_detector": train_anomaly_detector_keras(fleet.data, params),
    }
    for component in components.values():  # as the pipeline's candidates: on validation
        choose_operating_values(component, fleet.data)
    model = FleetModel(
        fleet.state, components, info={"data_version": "test-data-v1", "horizon": config.horizon}
    )
    first = str(fleet.telemetry["machine_id"].iloc[0])
    model.example = make_example(model, fleet.telemetry, first)
    model.save(directory)
    return ServedFleet(directory, model, fleet.telemetry, fleet.features, fleet.state)


@contextmanager
def bentoml_server(env: dict[str, str], home: Path) -> Iterator[str]:
    """Runs ``fleet-serve`` (``bentoml serve``, as ``make serve``) on a free loopback port;
    yields its base URL."""
    port = free_port()
    full_env = {
        **os.environ,
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "PDM_HOME": str(home),
        "PDM_SERVE_WORKERS": "1",
        **env,
    }
    log = (home / f"bentoml-{port}.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bento_service.serve",
            "bento_service.service:FleetRiskService",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=REPO,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"fleet-serve exited: {(home / log.name).read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/livez", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise TimeoutError(f"fleet-serve did not answer /livez: {Path(log.name).read_text()}")
        yield url
    finally:
        with suppress(ProcessLookupError):  # a server that failed at start is gone already
            os.killpg(process.pid, 15)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
        log.close()


def wait_ready(url: str, timeout: float = 60) -> None:
    """Waits for ``/readyz`` to answer 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
            return
        time.sleep(0.3)
    raise TimeoutError(f"{url}/readyz never became 200")
