"""ks_drift agrees with Evidently 0.7's KS test on simulated fleet telemetry.

Evidently takes ~10 s to import, so it runs once per module. The scenario: the same fleet
(seed 1) measured again after its sensors aged: every sensor's noise is 1.5x wider and the
vibration sensor reads 0.3 mm/s high. Two different seeds would not do as a "no drift" baseline:
the regime mix of a 20-machine batch (~65 regime segments) differs so much between seeds that all
five sensors differ by KS D ~ 0.22, far beyond any injected drift.

Evidently's KS stattest calls ``scipy.stats.ks_2samp`` with its defaults on the finite values and
stores the p-value unrounded in the snapshot, so the p-values are expected to be bit-identical;
the tolerance below only allows for float noise should the two ever take different code paths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pdm_core.drift import DriftResult, DriftSettings, evidently_ks, ks_drift
from pdm_core.simulator import SENSORS, DriftSpec, SimulatorConfig, simulate

REFERENCE = SimulatorConfig(n_machines=20, n_steps=400, seed=1)
CURRENT = SimulatorConfig(
    n_machines=20,
    n_steps=400,
    seed=1,
    drift=DriftSpec(sensor_bias={"vibration": 0.3}, noise_scale=1.5),
)
P_VALUE_RTOL = 1e-12


@pytest.fixture(scope="module")
def compared(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[DriftResult, pd.DataFrame, Path, int]:
    reference, current = simulate(REFERENCE), simulate(CURRENT)
    html = tmp_path_factory.mktemp("drift") / "report" / "drift.html"
    ours = ks_drift(reference, current, SENSORS, DriftSettings())
    theirs = evidently_ks(reference, current, SENSORS, html_path=html)
    return ours, theirs, html, len(reference)


def test_evidently_ran_ks_on_every_sensor_above_its_wasserstein_cutoff(compared) -> None:
    _, theirs, _, n_reference = compared
    # Above 1000 reference rows Evidently would pick Wasserstein for numeric columns.
    assert n_reference > 1_000
    assert list(theirs["feature"]) == list(SENSORS)
    assert set(theirs["stattest"]) == {"ks"}


def test_p_values_agree_with_scipy(compared) -> None:
    ours, theirs, _, _ = compared
    ours_p = ours.table.set_index("feature").loc[list(SENSORS), "p_value"].to_numpy()
    theirs_p = theirs.set_index("feature").loc[list(SENSORS), "p_value"].to_numpy()
    assert np.all(np.isfinite(ours_p))
    # The scenario spans p-values from ~1e-315 to ~0.04, so this is not a comparison of zeros.
    assert np.any((ours_p > 1e-3) & (ours_p < 1.0))
    np.testing.assert_allclose(theirs_p, ours_p, rtol=P_VALUE_RTOL, atol=0.0)


def test_vibration_verdicts_agree(compared) -> None:
    ours, theirs, _, _ = compared
    assert ours.table.set_index("feature").loc["vibration", "drifted"]
    assert theirs.set_index("feature").loc["vibration", "drift_detected"]


def test_effect_size_gate_explains_the_other_differences(compared) -> None:
    ours, theirs, _, _ = compared
    table = ours.table.set_index("feature")
    flags = theirs.set_index("feature")
    # Evidently flags drift when the uncorrected p-value is <= 0.05; nothing else.
    assert (flags["drift_detected"] == (flags["p_value"] <= 0.05)).all()
    # The wider noise barely moves the other sensors' distributions: D stays far below 0.1, so
    # ks_drift calls none of them drifted even where Evidently (no effect-size gate) does.
    others = [s for s in SENSORS if s != "vibration"]
    assert (table.loc[others, "statistic"] < 0.1).all()
    assert not table.loc[others, "drifted"].any()
    assert ours.drifted_features == ["vibration"]
    assert ours.drift_share == pytest.approx(0.2)
    assert ours.dataset_drift is False  # 0.2 < default threshold 0.3


def test_html_report_is_written(compared) -> None:
    _, _, html, _ = compared
    assert html.is_file()
    text = html.read_text(encoding="utf-8")
    assert len(text) > 100_000  # a real report embeds its plots and scripts
    for sensor in SENSORS:
        assert sensor in text
    assert "K-S p_value" in text  # Evidently's display name of the KS test
