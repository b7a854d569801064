from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pdm_core.loaders import load_mapping, load_tabular
from pdm_core.simulator import SimulatorConfig, simulate
from pdm_platform.cli.simulate import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "tabular"


def test_export_reads_back_through_the_example_mapping(tmp_path: Path) -> None:
    out = tmp_path / "telemetry.csv"
    assert main(["--machines", "4", "--steps", "120", "--seed", "5", "--out", str(out)]) == 0
    shutil.copy(EXAMPLES / "fleet_simulate_export.yaml", tmp_path / "mapping.yaml")
    result = load_tabular(load_mapping(tmp_path / "mapping.yaml"))
    original = simulate(SimulatorConfig(n_machines=4, n_steps=120, seed=5))
    assert result.rows_rejected == 0
    assert len(result.frame) == len(original)
    np.testing.assert_allclose(result.frame["temperature"], original["temperature"], rtol=1e-12)
    np.testing.assert_array_equal(result.frame["failure_within_h"], original["failure_within_h"])
    np.testing.assert_array_equal(result.frame["rul"], original["rul"])
    np.testing.assert_array_equal(result.frame["cycle"], original["cycle"])


def test_drift_options_and_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "drift.parquet"
    args = ["--machines", "3", "--steps", "50", "--out", str(out), "--bias", "temperature=5"]
    assert main([*args, "--new-regime"]) == 0
    assert main(["--machines", "3", "--steps", "50", "--out", str(tmp_path / "x.txt")]) == 2
    assert "must end in .csv or .parquet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(out), "--bias", "nosuchsensor=1"])
