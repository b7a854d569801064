"""Evaluation of every candidate on the untouched test split, with plots and model cards."""

import base64
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

from pdm_assets.metadata import markdown_table
from pdm_assets.models import (
    CANDIDATE_INS,
    CANDIDATES,
    GROUP,
    last_cycle_protocol,
    load_component,
    readings_per_day,
    test_split,
)
from pdm_core.models.trained import TrainedModel
from pdm_resources.mlflow_tracking import MlflowTracking


def model_card(
    name: str, model: TrainedModel, test: dict, validation: dict, dataset_info: dict, version: str
) -> str:
    """A markdown model card: data, features, metrics, limits."""
    rows = "\n".join(f"| {k} | {v:.4g} |" for k, v in test.items() if isinstance(v, float))
    limits = [
        "Trained and tested on one data source; other fleets need their own evaluation.",
        "Readings in an operating regime never seen in training are normalised with global "
        "statistics (feature `regime_known` = 0); expect lower accuracy there.",
    ]
    if model.kind == "rul_regressor":
        limits.append(
            f"RUL is capped at {model.extra['rul_cap']:.0f}: larger values read as the cap."
        )
    if model.kind == "anomaly_detector":
        limits.append("Alert threshold is a quantile of healthy validation errors: about 1% of "
                      "healthy readings alert by design.")  # fmt: skip
    return "\n".join(
        [
            f"# Model card: {name}",
            "",
            f"- Kind: {model.kind}; framework: {model.framework}",
            f"- Data: {dataset_info.get('name')} (data version {version or 'unknown'})",
            f"- Features: {len(model.features)} (see features.json in the MLflow run)",
            f"- Operating values: {model.extra}",
            f"- Validation: { {k: round(v, 4) for k, v in validation.items()} }",
            "",
            "## Test metrics (untouched test split)",
            "",
            "| metric | value |",
            "|---|---|",
            rows,
            "",
            "## Limits",
            "",
            *[f"- {line}" for line in limits],
        ]
    )


def _embed(plots: dict[str, bytes], title: str) -> str:
    images = [
        f"![{name}](data:image/png;base64,{base64.b64encode(png).decode()})"
        for name, png in plots.items()
    ]
    return f"### {title}\n\n" + "\n".join(images) if images else ""


@dg.asset(group_name=GROUP, ins=CANDIDATE_INS)
def model_evaluation(
    context: dg.AssetExecutionContext,
    mlflow_tracking: MlflowTracking,
    training_set: pd.DataFrame,
    feature_state: dict,
    dataset_info: dict,
    **candidates: dict,
) -> dg.Output[dict]:
    """Test metrics of every candidate (logged to its MLflow run as test_*), plots, cards.

    C-MAPSS RUL is scored at each test engine's last cycle (the standard protocol) against
    the RUL capped like the target; other sources on every test row.
    """
    import mlflow

    from pdm_core.models.evaluation import evaluate_component

    data = test_split(training_set, feature_state)
    horizon = int(dataset_info.get("horizon") or 30)
    results: dict[str, dict] = {}
    sections: list[str] = []
    for name in CANDIDATES:
        candidate = candidates[name]
        if candidate.get("skipped"):
            results[name] = {"skipped": candidate["skipped"]}
            continue
        model = load_component(mlflow_tracking, candidate["run_id"])
        found, plots = evaluate_component(
            model, data.test, horizon, readings_per_day(dataset_info),
            last_cycle_protocol(dataset_info),
        )  # fmt: skip
        card = model_card(
            name, model, found, candidate["validation"], dataset_info,
            candidate.get("data_version", ""),
        )  # fmt: skip
        with mlflow.start_run(run_id=candidate["run_id"]):
            mlflow.log_metrics({f"test_{k}": v for k, v in found.items() if v == v})
            mlflow.log_text(card, "model_card.md")
            with tempfile.TemporaryDirectory() as tmp:
                for plot, png in plots.items():
                    (Path(tmp) / f"{plot}.png").write_bytes(png)
                if plots:
                    mlflow.log_artifacts(tmp, "plots")
        results[name] = {"test": found, "run_id": candidate["run_id"], "kind": model.kind}
        sections.append(_embed(plots, name))
        context.log.info(f"{name}: " + ", ".join(f"{k}={v:.4g}" for k, v in found.items()))
    table = pd.DataFrame(
        [{"candidate": n, **r["test"]} for n, r in results.items() if "test" in r]
    ).drop(columns=["positives", "n", "scored_rows"], errors="ignore")
    return dg.Output(
        results,
        metadata={
            "test_metrics": dg.MetadataValue.md(markdown_table(table, max_rows=20)),
            "plots": dg.MetadataValue.md("\n\n".join(s for s in sections if s)),
            "protocol": "last cycle per test engine"
            if last_cycle_protocol(dataset_info)
            else "every test row",
        },
    )
