"""Drift report: recent landed telemetry against the champion's training reference.

Per monitored feature (see :mod:`pdm_core.drift_inputs`) a two-sample Kolmogorov-Smirnov test
with a multiple-testing correction; a feature drifts only when the corrected p-value is below
alpha **and** the KS statistic reaches the minimum effect size. The drift share is what the
drift sensor compares with the retraining threshold. Evidently's HTML report of the same
columns (KS forced) is written for people and linked from the metadata.
"""

import hashlib
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd

from pdm_assets.metadata import check_result, markdown_table
from pdm_core import schema
from pdm_core.names import CHAMPION_MODEL, DRIFT_REPORT, LANDED_TELEMETRY
from pdm_resources.artifacts import ArtifactStore
from pdm_resources.drift_policy import DriftPolicy
from pdm_resources.mlflow_tracking import MlflowTracking
from pdm_resources.warehouse import Warehouse

if TYPE_CHECKING:  # the bundle module stays out of the definitions' import
    from pdm_core.models.bundle import FleetModel


def report_version(champion_version: str, batches: list[str], policy: DriftPolicy) -> str:
    """Data version of a report: the champion, the batches compared and the test settings."""
    tested = policy.model_dump(exclude={"cooldown_minutes", "evidently_report"})
    text = json.dumps([champion_version, sorted(batches), tested], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dg.asset(
    name=DRIFT_REPORT,
    deps=[LANDED_TELEMETRY, CHAMPION_MODEL],
    group_name="monitoring",
    check_specs=[
        dg.AssetCheckSpec(
            "drift_share_below_threshold", asset=DRIFT_REPORT, blocking=False,
            description="The share of drifted features stays below the retraining threshold.",
        )
    ],
)  # fmt: skip
def drift_report(
    context: dg.AssetExecutionContext,
    drift_policy: DriftPolicy,
    warehouse: Warehouse,
    mlflow_tracking: MlflowTracking,
    artifacts: ArtifactStore,
):  # type: ignore[no-untyped-def]
    """KS drift of the newest landed batches against the champion's training reference."""
    from pdm_assets.promotion import load_fleet_model

    bundle, version = load_fleet_model(mlflow_tracking, serving=True)
    champion = str(version.version)
    batches = warehouse.newest_batches(drift_policy.recent_batches)
    recent = warehouse.landed_readings(batches) if batches else pd.DataFrame()
    data_version = report_version(champion, batches, drift_policy)
    metadata: dict[str, object] = {
        "champion_version": champion,
        "batches": dg.MetadataValue.json(batches),
        "threshold": drift_policy.threshold,
    }
    # The verdict (dataset_drift) is ks_drift's and is recorded once, here; the check below
    # and the drift sensor both follow it rather than comparing the share again.
    no_verdict = _why_no_verdict(recent, bundle, champion)
    if no_verdict:
        summary = {
            "champion_version": champion, "batches": batches, "drift_share": 0.0,
            "n_checked": 0, "n_drifted": 0, "dataset_drift": False,
            "threshold": drift_policy.threshold, "reason": no_verdict,
        }  # fmt: skip
        metadata.update(
            drift_share=0.0, n_checked=0, n_drifted=0, dataset_drift=False, reason=no_verdict
        )
        context.log.warning(f"no drift verdict: {no_verdict}")
    else:
        summary, found = _tested(bundle, recent, drift_policy, artifacts, data_version)
        summary = {"champion_version": champion, "batches": batches, **summary}
        metadata.update(found)
        context.log.info(
            f"drift share {summary['drift_share']:.2f} ({summary['n_drifted']}/"
            f"{summary['n_checked']}) of {len(recent)} readings in {len(batches)} batch(es) "
            f"vs champion v{champion}"
        )
    yield dg.Output(summary, metadata=metadata, data_version=dg.DataVersion(data_version))
    share = float(summary["drift_share"])
    yield check_result(
        "drift_share_below_threshold", not summary["dataset_drift"], round(share, 6),
        drift_policy.threshold, asset_key=DRIFT_REPORT,
        n_drifted=summary["n_drifted"], n_checked=summary["n_checked"],
        reason=summary.get("reason", ""),
    )  # fmt: skip


def _why_no_verdict(recent: pd.DataFrame, bundle: "FleetModel", champion: str) -> str:
    """Why no drift test can run ("" when it can)."""
    if recent.empty:
        return "no landed telemetry yet"
    if bundle.reference is None:
        return (
            f"champion v{champion} holds no drift reference; the next promoted model will "
            "have one (run the retrain job)"
        )
    return ""


def _tested(
    bundle: "FleetModel",
    recent: pd.DataFrame,
    drift_policy: DriftPolicy,
    artifacts: ArtifactStore,
    data_version: str,
) -> tuple[dict, dict[str, object]]:
    """KS drift of ``recent`` against the champion's reference: the summary and metadata."""
    from pdm_core.drift import ks_drift
    from pdm_core.drift_inputs import current_features, monitored_features

    assert bundle.reference is not None  # _why_no_verdict said so
    current = current_features(recent, bundle.feature_state)
    columns = monitored_features(bundle.feature_state)
    result = ks_drift(bundle.reference, current, columns, drift_policy.settings())
    summary = {
        "rows": len(recent),
        "unseen_regime_share": round(float(1 - current["regime_known"].mean()), 6),
        **result.summary(),
    }
    metadata: dict[str, object] = {
        "drift_share": float(result.drift_share),
        "n_checked": int(result.n_checked),
        "n_drifted": int(result.n_drifted),
        "dataset_drift": bool(result.dataset_drift),
        "rows": len(recent),
        "machines": int(recent[schema.MACHINE].nunique()),
        "unseen_regime_share": summary["unseen_regime_share"],
        "features": dg.MetadataValue.md(markdown_table(result.table, max_rows=50, digits=6)),
    }
    checked = result.table.loc[result.table["verdict"] != "too few samples", "feature"]
    if drift_policy.evidently_report and len(checked):
        html = _evidently_html(artifacts, bundle.reference, current, list(checked), data_version)
        metadata["evidently_report"] = dg.MetadataValue.url(html)
    return summary, metadata


def _evidently_html(
    artifacts: ArtifactStore,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    version: str,
) -> str:
    """Writes Evidently's drift report (KS on the same columns) and returns its URI."""
    from pdm_core.drift import evidently_ks

    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "report.html"
        evidently_ks(reference, current, columns, html_path=html)
        return artifacts.write_bytes(f"drift/drift-{version}.html", html.read_bytes())
