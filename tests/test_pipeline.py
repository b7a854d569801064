"""The asset graph through Dagster's public interfaces (dg.materialize, the demo CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from pdm_assets import features, telemetry
from pdm_core.simulator import SimulatorConfig, simulate
from pdm_resources.artifacts import LocalArtifactStore
from pdm_resources.telemetry_source import TelemetrySource
from pdm_resources.warehouse import LocalWarehouse, WarehouseIOManager

REPO = Path(__file__).resolve().parents[1]
ASSETS = dg.load_assets_from_modules([telemetry, features])
EXPECTED_ASSETS = {
    "raw_telemetry",
    "dataset_info",
    "machine_split",
    "feature_state",
    "telemetry_features",
    "training_set",
}


def resources(tmp_path: Path, source: TelemetrySource) -> dict[str, object]:
    tmp_path.mkdir(parents=True, exist_ok=True)  # DuckDB retries for minutes on a missing dir
    return {
        "telemetry_source": source,
        "warehouse_io_manager": WarehouseIOManager(
            database=str(tmp_path / "warehouse.duckdb"), schema="pdm"
        ),
        "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "storage")),
        "artifacts": LocalArtifactStore(base_dir=str(tmp_path / "artifacts")),
        "warehouse": LocalWarehouse(database=str(tmp_path / "warehouse.duckdb")),
    }


def materialize(tmp_path: Path, source: TelemetrySource) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS,
        resources=resources(tmp_path, source),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def test_definitions_load_without_heavy_imports(tmp_path: Path) -> None:
    code = (
        "import sys; from pdm_platform.definitions import defs; "
        "keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}; "
        "print(sorted(keys)); "
        "heavy = ('tensorflow', 'evidently', 'mlflow', 'bentoml'); "
        "print('HEAVY', [m for m in heavy if m in sys.modules]); "
        "assert defs.resolve_job_def('full_pipeline') is not None"
    )
    env = {**os.environ, "PDM_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, check=True
    ).stdout
    assert "HEAVY []" in out, out
    for key in EXPECTED_ASSETS:
        assert key in out


def test_full_graph_on_small_simulator(tmp_path: Path) -> None:
    result = materialize(tmp_path, TelemetrySource(sim_machines=12, sim_steps=400))
    assert result.success
    assert materialized(result) == EXPECTED_ASSETS
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 11
    assert all(c.passed for c in checks), [c.check_name for c in checks if not c.passed]
    training = result.output_for_node("training_set")
    assert set(training["split"]) == {"train", "validation", "test"}
    # Every check carries the observed value and its threshold.
    for check in checks:
        assert {"observed", "threshold"} <= set(check.metadata), check.check_name
    # Metadata: row counts, schema, preview and data version on each table asset.
    events = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    for key in ("raw_telemetry", "telemetry_features", "training_set", "machine_split"):
        md = events[key].materialization.metadata
        assert {"dagster/row_count", "dagster/column_schema", "preview", "data_version"} <= set(md)
    assert events["raw_telemetry"].materialization.metadata["dagster/row_count"].value == 12 * 400


def test_same_config_same_data_version(tmp_path: Path) -> None:
    source = TelemetrySource(sim_machines=6, sim_steps=200)
    first = materialize(tmp_path / "a", source)
    second = materialize(tmp_path / "b", source)

    def versions(result: dg.ExecuteInProcessResult) -> dict[str, str]:
        return {
            e.asset_key.to_user_string(): e.materialization.metadata["data_version"].value
            for e in result.get_asset_materialization_events()
            if "data_version" in e.materialization.metadata
        }

    assert versions(first) == versions(second)
    other = materialize(tmp_path / "c", TelemetrySource(sim_machines=6, sim_steps=200, sim_seed=1))
    assert versions(other)["raw_telemetry"] != versions(first)["raw_telemetry"]


@pytest.mark.slow
def test_full_graph_on_real_cmapss(tmp_path: Path, cmapss_dir: Path) -> None:
    result = materialize(tmp_path, TelemetrySource(source="cmapss", cmapss_dir=str(cmapss_dir)))
    assert result.success
    assert materialized(result) == EXPECTED_ASSETS
    assert all(c.passed for c in result.get_asset_check_evaluations())
    split = result.output_for_node("machine_split")
    test_machines = split.loc[split["split"] == "test", "machine_id"]
    assert len(test_machines) == 100 and test_machines.str.contains("_test_").all()
    training = result.output_for_node("training_set")
    # Engines never appear in two splits.
    assert (training.groupby("machine_id")["split"].nunique() == 1).all()


def write_tabular(tmp_path: Path, frame: pd.DataFrame) -> Path:
    columns = ["machine_id", "timestamp", "regime", "vibration", "temperature", "pressure",
               "rotational_speed", "motor_current", "failure_within_h"]  # fmt: skip
    frame[columns].to_csv(tmp_path / "telemetry.csv", index=False)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "path: telemetry.csv\n"
        "entity_column: machine_id\n"
        "time_column: timestamp\n"
        "regime_column: regime\n"
        "feature_columns: [vibration, temperature, pressure, rotational_speed, motor_current]\n"
        "label_column: failure_within_h\n"
        "positive_values: [1]\n"
    )
    return mapping


def test_full_graph_on_own_tabular_data(tmp_path: Path) -> None:
    frame = simulate(SimulatorConfig(n_machines=12, n_steps=900, seed=3))
    mapping = write_tabular(tmp_path, frame)
    result = materialize(tmp_path, TelemetrySource(source="tabular", tabular_config=str(mapping)))
    assert result.success, [c.check_name for c in result.get_asset_check_evaluations()]
    assert materialized(result) == EXPECTED_ASSETS
    raw = result.output_for_node("raw_telemetry", "raw_telemetry")
    assert len(raw) == len(frame)


def test_bad_rows_are_quarantined_and_reported(tmp_path: Path) -> None:
    frame = simulate(SimulatorConfig(n_machines=12, n_steps=900, seed=3))
    mapping = write_tabular(tmp_path, frame)
    csv = tmp_path / "telemetry.csv"
    lines = csv.read_text().splitlines()
    lines[5] = lines[5].replace(lines[5].split(",")[3], "not-a-number", 1)
    csv.write_text("\n".join(lines) + "\n")
    result = materialize(
        tmp_path / "run", TelemetrySource(source="tabular", tabular_config=str(mapping))
    )
    assert result.success
    events = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    md = events["raw_telemetry"].materialization.metadata
    assert md["rows_rejected"].value == 1
    assert md["rows_read"].value == len(frame)
    quarantine = Path(md["quarantine"].value.removeprefix("file://"))
    rejects = pd.read_csv(quarantine)
    assert rejects.loc[0, "line"] == 6 and rejects.loc[0, "column"] == "vibration"
    warn = [c for c in result.get_asset_check_evaluations() if c.check_name == "no_rejected_rows"]
    assert warn and not warn[0].passed and warn[0].severity == dg.AssetCheckSeverity.WARN


def test_blocking_check_stops_downstream(tmp_path: Path) -> None:
    frame = simulate(SimulatorConfig(n_machines=12, n_steps=900, seed=3))
    frame["failure_within_h"] = 0  # no failures at all: nothing to learn from
    mapping = write_tabular(tmp_path, frame)
    result = materialize(
        tmp_path / "run", TelemetrySource(source="tabular", tabular_config=str(mapping))
    )
    assert not result.success
    failed = [c.check_name for c in result.get_asset_check_evaluations() if not c.passed]
    assert "label_prevalence" in failed
    assert "training_set" not in materialized(result)
    assert "telemetry_features" not in materialized(result)


def test_misconfigured_source_fails_with_clear_error(tmp_path: Path) -> None:
    result = materialize(tmp_path, TelemetrySource(source="cmapss", cmapss_dir=""))
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert "PDM_CMAPSS_DIR" in str(failure.event_specific_data.error)


def test_changing_feature_windows_replaces_the_tables(tmp_path: Path) -> None:
    source = TelemetrySource(sim_machines=12, sim_steps=900)
    first = materialize(tmp_path, source)
    assert first.success
    narrower = dg.materialize(
        ASSETS,
        resources=resources(tmp_path, source),
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"feature_state": {"config": {"windows": [5], "stats": ["mean"]}}}},
        raise_on_error=False,
    )
    assert narrower.success
    import duckdb

    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        columns = [r[0] for r in con.execute("describe pdm.telemetry_features").fetchall()]
        rows = con.execute("select count(*) from pdm.telemetry_features").fetchone()[0]
    assert "vibration__mean_w5" in columns and "vibration__mean_w30" not in columns
    assert rows == 12 * 900
