"""Models, MLflow tracking, evaluation, promotion and fleet health through dg.materialize.

One MLflow store (SQLite under a temp dir) across four steps, as a user would live it:
a weak first model becomes champion; a better one is promoted; a deliberately worse one is
registered but rejected, and its blocking check stops everything downstream; rollback moves
the alias back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from pdm_assets.jobs import PIPELINE_SELECTION
from pdm_assets.models import CANDIDATES
from pdm_core.names import PER_BATCH_ASSETS
from pdm_platform import definitions
from pdm_platform.rollback import main as rollback_main
from pdm_platform.rollback import rollback
from pdm_resources.mlflow_tracking import CHAMPION, FLEET_MODEL, MlflowTracking
from pdm_resources.telemetry_source import TelemetrySource
from tests.pipeline_resources import local_resources

# One group: the module's fixtures run the graph once, on one xdist worker.
pytestmark = pytest.mark.slow

ASSETS = list(definitions.defs.assets or [])
ALL_KEYS = {k.to_user_string() for k in definitions.defs.resolve_all_asset_keys()} - set(
    PER_BATCH_ASSETS
)
WEAK = {
    "ops": {
        **{name: {"config": {"epochs": 1, "learning_rate": 1e-6, "boosting_iterations": 1}}
           for name in CANDIDATES},
        "feature_state": {"config": {"windows": [1], "stats": ["mean"]}},
    }
}  # fmt: skip
GOOD = {
    "ops": {name: {"config": {"epochs": 15, "boosting_iterations": 150}} for name in CANDIDATES}
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENTOML_HOME", str(root / "bentoml"))  # fleet_bento's store
        patch.setenv("BENTOML_DO_NOT_TRACK", "True")
        yield _store(root)


def _store(root: Path) -> dict:
    tracking = MlflowTracking(
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifact_location=(root / "mlartifacts").as_uri(),
    )
    return {
        "root": root,
        "tracking": tracking,
        "instance": dg.DagsterInstance.ephemeral(),
        "resources": local_resources(
            root, TelemetrySource(sim_machines=16, sim_steps=1200, sim_seed=5), tracking
        ),
    }


def run(store: dict, config: dict) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS, selection=PIPELINE_SELECTION, resources=store["resources"],
        instance=store["instance"],
        run_config=config, raise_on_error=False,
    )  # fmt: skip


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def champion_version(store: dict) -> str:
    client = store["tracking"].client()
    return str(client.get_model_version_by_alias(FLEET_MODEL, CHAMPION).version)


@pytest.fixture(scope="module")
def history(store: dict) -> dict:
    """The four steps, run once for all the tests below."""
    steps = {"weak": run(store, WEAK), "good": run(store, GOOD)}
    steps["champion_after_good"] = champion_version(store)
    steps["worse"] = run(store, WEAK)
    steps["champion_after_worse"] = champion_version(store)
    return steps


def test_first_model_becomes_champion_and_graph_completes(history: dict) -> None:
    first = history["weak"]
    assert first.success
    assert materialized(first) == ALL_KEYS
    decision = first.output_for_node("fleet_model_candidate")
    assert decision["promote"] and decision["version"] == "1"
    assert "no champion yet" in decision["reason"]
    # The simulator declares vibration and temperature as wear sensors: every classifier is
    # checked on both, and the chosen one passed (pdm_core.models.direction).
    checks = decision["direction_checks"]
    assert set(checks) == {"risk_classifier_keras", "risk_classifier_sklearn"}
    assert all([r["sensor"] for r in v] == ["vibration", "temperature"] for v in checks.values())
    assert all(r["passed"] for r in checks[decision["chosen"]["risk_classifier"]]), checks


def test_better_challenger_is_promoted(history: dict) -> None:
    weak = history["weak"].output_for_node("fleet_model_candidate")["test"]["pr_auc"]
    good = history["good"].output_for_node("fleet_model_candidate")
    assert good["test"]["pr_auc"] > weak, "precondition: the GOOD config must train better"
    assert good["promote"], good["reason"]
    assert history["champion_after_good"] == good["version"] == "2"


def test_the_promoted_champion_is_packaged_as_a_bento(history: dict) -> None:
    import bentoml

    packaged = history["good"].output_for_node("fleet_bento")
    assert packaged["model_version"] == "2"
    bento = bentoml.get(packaged["bento"])
    assert [str(m.tag) for m in bento.info.models] == [packaged["model"]]
    model = bentoml.models.get(packaged["model"])
    assert model.info.metadata["model_version"] == "2"
    assert (Path(model.path) / "example.json").exists()


def test_worse_challenger_is_registered_rejected_and_blocked(history: dict) -> None:
    worse = history["worse"]
    assert not worse.success
    checks = {c.check_name: c for c in worse.get_asset_check_evaluations()}
    assert not checks["not_worse_than_champion"].passed
    assert "champion" in checks["not_worse_than_champion"].metadata["reason"].value
    done = materialized(worse)
    assert "fleet_model_candidate" in done
    assert not {"champion_model", "fleet_health", "fleet_bento"} & done
    assert history["champion_after_worse"] == "2"


def test_mlflow_runs_carry_params_epoch_metrics_test_metrics_and_lineage(
    history: dict, store: dict
) -> None:
    import mlflow

    store["tracking"].activate()
    runs = mlflow.search_runs(filter_string="tags.`pdm.candidate` = 'risk_classifier_keras'")
    assert len(runs) == 3
    run = runs.iloc[0]
    for metric in ("test_roc_auc", "test_pr_auc", "test_f1", "test_precision", "test_recall",
                   "test_brier", "val_pr_auc"):  # fmt: skip
        column = f"metrics.{metric}"
        assert column in run.index and run[column] == run[column], metric
    assert run["tags.dagster.run_id"] and run["tags.pdm.data_version"]
    client = store["tracking"].client()
    epochs = client.get_metric_history(run["run_id"], "epoch_val_pr_auc")
    assert len(epochs) >= 1 and epochs[-1].step == len(epochs) - 1
    artifacts = {a.path for a in client.list_artifacts(run["run_id"])}
    assert {
        "component",
        "features.json",
        "feature_state.json",
        "model_card.md",
        "plots",
    } <= artifacts
    rul = mlflow.search_runs(filter_string="tags.`pdm.candidate` = 'rul_regressor_sklearn'")
    assert {"metrics.test_rmse", "metrics.test_mae", "metrics.test_nasa_score"} <= set(rul.columns)
    anomaly = mlflow.search_runs(filter_string="tags.`pdm.candidate` = 'anomaly_detector_keras'")
    for metric in ("test_anomaly_detection_rate", "test_false_alarms_per_machine_day"):
        assert f"metrics.{metric}" in anomaly.columns
    for name in CANDIDATES:
        assert client.get_registered_model(f"pdm-{name}") is not None


def test_evaluation_metadata_has_plots_and_fleet_health_is_ranked(history: dict) -> None:
    good = history["good"]
    events = {e.asset_key.to_user_string(): e for e in good.get_asset_materialization_events()}
    plots = events["model_evaluation"].materialization.metadata["plots"].value
    assert plots.count("data:image/png;base64,") >= 8
    health = good.output_for_node("fleet_health")
    assert len(health) == 16 and list(health["rank"]) == list(range(1, 17))
    assert health["failure_probability"].is_monotonic_decreasing
    assert set(health["risk_level"]) <= {"LOW", "MEDIUM", "HIGH", "CRITICAL"}
    # Every RUL answer carries its interval, and the interval holds the answer.
    assert (health["rul_lower"] <= health["rul"]).all() and (
        health["rul"] <= health["rul_upper"]
    ).all()
    evaluation = good.output_for_node("model_evaluation")
    for name in ("rul_regressor_keras", "rul_regressor_sklearn", "rul_regressor_ensemble"):
        test = evaluation[name]["test"]
        assert test["interval_level"] == 0.9, name
        assert 0.0 <= test["interval_coverage"] <= 1.0 and test["interval_mean_width"] > 0, test


def test_rollback_restores_an_earlier_version(history: dict, store: dict) -> None:
    previous, new = rollback(store["tracking"], 1)
    assert (previous, new) == ("2", "1")
    assert champion_version(store) == "1"
    with pytest.raises(ValueError, match="no version 99"):
        rollback(store["tracking"], 99)


def test_rollback_cli_reports_unknown_version(monkeypatch: pytest.MonkeyPatch, store: dict) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["tracking"].tracking_uri)
    assert rollback_main(["--to", "99"]) == 2


def test_own_data_without_rul_gets_a_champion(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Your own export with a label but no RUL: RUL candidates are skipped, promotion works."""
    from pdm_core.simulator import SimulatorConfig, simulate

    root = tmp_path_factory.mktemp("own")
    frame = simulate(SimulatorConfig(n_machines=16, n_steps=1200, seed=8))
    columns = ["machine_id", "timestamp", "regime", "vibration", "temperature", "pressure",
               "rotational_speed", "motor_current", "failure_within_h"]  # fmt: skip
    frame[columns].to_csv(root / "telemetry.csv", index=False)
    (root / "mapping.yaml").write_text(
        "path: telemetry.csv\nentity_column: machine_id\ntime_column: timestamp\n"
        "regime_column: regime\nlabel_column: failure_within_h\npositive_values: [1]\n"
        "feature_columns: [vibration, temperature, pressure, rotational_speed, motor_current]\n"
    )
    tracking = MlflowTracking(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    result = dg.materialize(
        ASSETS,
        selection=PIPELINE_SELECTION,
        resources=local_resources(
            root,
            TelemetrySource(source="tabular", tabular_config=str(root / "mapping.yaml")),
            tracking,
        ),
        instance=dg.DagsterInstance.ephemeral(),
        run_config=GOOD,
        raise_on_error=False,
    )
    assert result.success
    assert result.output_for_node("rul_regressor_keras").get("skipped")
    candidate = result.output_for_node("fleet_model_candidate")
    assert candidate["promote"] and "rmse" not in candidate["test"]
    health = result.output_for_node("fleet_health")
    assert health["rul"].isna().all() and len(health) == 16
    # Without an explicit artifact location, artifacts sit beside the SQLite store.
    assert tracking.artifact_root() == (root / "artifacts").resolve().as_uri()
    assert any((root / "artifacts").iterdir())
    assert not (Path.cwd() / "mlruns").exists(), "MLflow wrote to ./mlruns"
