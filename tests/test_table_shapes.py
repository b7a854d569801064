"""Every common shape of a user's own table trains through the demo's pipeline, or is refused
naming the setting to add (many time-ordered machines: tests/test_models_pipeline.py).

Each test writes its file and copies the README's example mapping beside it, so the mappings
the README shows are the ones tested.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from pdm_assets.jobs import PIPELINE_SELECTION
from pdm_core.simulator import SimulatorConfig, simulate
from pdm_platform import definitions
from pdm_resources.telemetry_source import TelemetrySource
from tests.pipeline_resources import local_resources

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "tabular"
ASSETS = list(definitions.defs.assets or [])
QUICK = {
    "ops": {
        name: {"config": {"epochs": 8, "boosting_iterations": 100}}
        for name in ("risk_classifier_keras", "risk_classifier_sklearn", "anomaly_detector_keras")
    }
}


def ai4i_like(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    """A table shaped like AI4I 2020: one row per product, failures from the paper's rules.

    Heat dissipation (small air-process temperature difference at low speed), power (torque x
    angular speed out of range), overstrain (tool wear x torque over a limit per product type)
    and random tool-wear failures. The model must learn interactions, not one threshold.
    """
    rng = np.random.default_rng(seed)
    kind = rng.choice(["L", "M", "H"], size=n, p=[0.5, 0.3, 0.2])
    air = 300 + 2 * rng.standard_normal(n)
    process = air + 10 + rng.standard_normal(n)
    speed = rng.normal(1540, 180, n).clip(1170, 2890).round(0)
    torque = rng.normal(40, 7, n).clip(3, 77).round(1)
    wear = rng.integers(0, 240, n).astype(float)
    power = torque * speed * 2 * np.pi / 60
    hdf = (process - air < 8.6) & (speed < 1380)
    pwf = (power < 3500) | (power > 9000)
    osf = wear * torque > np.select([kind == "L", kind == "M"], [11000, 12000], 13000)
    twf = (wear > 200) & (rng.random(n) < 0.1)
    return pd.DataFrame(
        {
            "UDI": np.arange(1, n + 1),
            "Product ID": [f"{k}{47181 + i}" for i, k in enumerate(kind)],
            "Type": kind,
            "Air temperature [K]": air.round(1),
            "Process temperature [K]": process.round(1),
            "Rotational speed [rpm]": speed,
            "Torque [Nm]": torque,
            "Tool wear [min]": wear,
            "Machine failure": (hdf | pwf | osf | twf).astype(int),
            **{flag: v.astype(int) for flag, v in
               (("TWF", twf), ("HDF", hdf), ("PWF", pwf), ("OSF", osf))},
            "RNF": 0,
        }
    )  # fmt: skip


def run_pipeline(root: Path, mapping: Path) -> dg.ExecuteInProcessResult:
    source = TelemetrySource(source="tabular", tabular_config=str(mapping))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENTOML_HOME", str(root / "bentoml"))
        patch.setenv("BENTOML_DO_NOT_TRACK", "True")
        return dg.materialize(
            ASSETS,
            selection=PIPELINE_SELECTION,
            resources=local_resources(root / "store", source),
            instance=dg.DagsterInstance.ephemeral(),
            run_config=QUICK,
            raise_on_error=False,
        )


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    events = result.get_asset_materialization_events()
    event = next(e for e in events if e.asset_key.to_user_string() == asset)
    return {k: v.value for k, v in event.materialization.metadata.items()}


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


def trained(tmp_path: Path, example: str) -> tuple[dg.ExecuteInProcessResult, dict]:
    """Runs the pipeline on a README example mapping: the run and the split's metadata."""
    mapping = shutil.copy(EXAMPLES / example, tmp_path / "mapping.yaml")
    result = run_pipeline(tmp_path, Path(mapping))
    assert result.success, [e.step_key for e in result.get_step_failure_events()]
    assert checks(result)["no_leakage"]
    return result, metadata(result, "machine_split")


def test_independent_rows_train_with_a_stratified_row_split(tmp_path: Path) -> None:
    table = ai4i_like()
    with (tmp_path / "ai4i2020.csv").open("w", encoding="utf-8-sig", newline="") as handle:
        table.to_csv(handle, index=False, lineterminator="\r\n")
    result, split = trained(tmp_path, "independent_rows.yaml")
    assert split["mode"] == "by row" and split["embargo_readings"] == 0
    state = result.output_for_node("feature_state")
    derived = ["Power [W]", "Temperature difference [K]", "Strain [min Nm]"]
    assert [name for name, _ in state["derived"]] == derived
    assert set(derived) <= set(state["sensors"])
    training = result.output_for_node("training_set")
    assert len(training) == len(table), "no windows, so no warm-up rows: every row is used"
    power = table["Torque [Nm]"] * table["Rotational speed [rpm]"] * 2 * np.pi / 60
    raw = result.output_for_node("raw_telemetry", "raw_telemetry")
    np.testing.assert_allclose(raw["Power [W]"], power, rtol=1e-12)
    prevalence = table["Machine failure"].mean()
    share = training.groupby("split")["failure_within_h"].mean()
    assert (share - prevalence).abs().max() < 0.005, share
    candidate = result.output_for_node("fleet_model_candidate")
    assert candidate["promote"] and "rmse" not in candidate["test"]
    # The failure rules read power, temperature difference and strain: with them derived,
    # the model ranks failures far above the 7 % base rate.
    assert candidate["test"]["pr_auc"] > 5 * prevalence, candidate["test"]


def one_machine(tmp_path: Path) -> pd.DataFrame:
    frame = simulate(SimulatorConfig(n_machines=1, n_steps=8000, seed=4))
    columns = ["timestamp", "vibration", "temperature", "pressure", "rotational_speed",
               "motor_current", "failure_within_h"]  # fmt: skip
    frame[columns].to_csv(tmp_path / "telemetry.csv", index=False)
    return frame


def test_one_time_ordered_machine_is_split_by_time_with_the_mapping_horizon(
    tmp_path: Path,
) -> None:
    frame = one_machine(tmp_path)
    result, split = trained(tmp_path, "one_machine.yaml")
    assert split["mode"] == "by time" and split["embargo_readings"] == 30
    segments = result.output_for_node("machine_split").sort_values("cycle_from")
    assert list(segments["split"]) == ["train", "embargo", "validation", "embargo", "test"]
    assert list(segments.loc[segments["split"] == "embargo", "rows"]) == [30, 30]
    training = metadata(result, "training_set")
    assert training["embargo_rows_excluded"] == 60, training
    assert result.output_for_node("training_set")["split"].nunique() == 3
    assert result.output_for_node("fleet_model_candidate")["promote"]
    assert len(frame) == metadata(result, "raw_telemetry")["dagster/row_count"]


def test_one_time_ordered_machine_without_a_horizon_is_refused_naming_it(
    tmp_path: Path,
) -> None:
    one_machine(tmp_path)
    text = (EXAMPLES / "one_machine.yaml").read_text()
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("\n".join(x for x in text.splitlines() if not x.startswith("horizon:")))
    result = run_pipeline(tmp_path, mapping)
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert failure.step_key == "raw_telemetry"
    message = str(failure.event_specific_data.error)
    assert "mapping.yaml: one machine in time order" in message and "'horizon'" in message
