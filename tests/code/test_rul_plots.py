"""The RUL evaluation plots: one bar per unit (machine), its mean error."""

from __future__ import annotations

import numpy as np

from pdm_core.models.plots import rul_plots, unit_errors


def test_unit_errors_average_each_machines_rows() -> None:
    units = np.array(["b", "a", "b", "a", "c"])
    true = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    pred = np.array([12.0, 20.0, 26.0, 43.0, 45.0])
    # a: (0 + 3) / 2, b: (2 - 4) / 2, c: -5
    np.testing.assert_allclose(unit_errors(true, pred, units), [1.5, -1.0, -5.0])


def test_rul_plots_draw_both_plots_as_png() -> None:
    rng = np.random.default_rng(0)
    units = np.repeat([f"M{i}" for i in range(8)], 500)
    true = rng.uniform(0, 125, units.size)
    plots = rul_plots(true, true + rng.normal(0, 5, units.size), units)
    assert set(plots) == {"rul_pred_vs_true", "rul_error_per_unit"}
    assert all(png.startswith(b"\x89PNG") for png in plots.values())
