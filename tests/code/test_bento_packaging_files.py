"""The Bento's build files agree with the project: pinned versions, service path, model."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    return {p["name"]: p["version"] for p in lock["package"] if "version" in p}


def test_service_requirements_are_pinned_to_the_lock_file() -> None:
    locked = locked_versions()
    lines = (REPO / "bento_service" / "requirements.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    assert pins, "no requirements"
    for name, version in pins:
        assert locked.get(name) == version, f"{name}=={version} but uv.lock has {locked.get(name)}"
    names = {name for name, _ in pins}
    assert not names & {"tensorflow", "dagster", "mlflow", "keras"}, "the service stays light"


def test_bentofile_names_the_service_and_the_fleet_model() -> None:
    config = yaml.safe_load((REPO / "bento_service" / "bentofile.yaml").read_text())
    module, _, cls = config["service"].partition(":")
    assert (REPO / (module.replace(".", "/") + ".py")).exists()
    assert f"class {cls}" in (REPO / (module.replace(".", "/") + ".py")).read_text()
    assert config["models"] == ["pdm-fleet-model:latest"]
    assert config["python"]["requirements_txt"] == "bento_service/requirements.txt"
