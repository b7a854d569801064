"""The maintenance engineer's morning report: every machine's latest window, scored."""

import base64
import io

import dagster as dg
import numpy as np
import pandas as pd

from pdm_assets.metadata import frame_metadata, markdown_table
from pdm_assets.promotion import load_fleet_model
from pdm_core import schema
from pdm_core.features import compute_features
from pdm_core.versioning import frame_version
from pdm_resources.alerts import AlertSink
from pdm_resources.mlflow_tracking import MlflowTracking

ALERT_LEVELS = ("HIGH", "CRITICAL")


def latest_windows(raw: pd.DataFrame, length: int) -> pd.DataFrame:
    """The last ``length`` readings of every machine."""
    ordered = raw.sort_values([schema.MACHINE, schema.CYCLE], kind="stable")
    return ordered.groupby(schema.MACHINE, sort=False, observed=True).tail(length)


def rank_fleet(scored: pd.DataFrame) -> pd.DataFrame:
    """Orders machines by failure probability, then by shortest RUL."""
    ranked = scored.sort_values(
        ["failure_probability", "rul"], ascending=[False, True], na_position="last"
    ).reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    return ranked


def _risk_plot(ranked: pd.DataFrame, top: int = 15) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    head = ranked.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(5, 0.3 * len(head) + 1), dpi=100)
    ax.barh(head[schema.MACHINE].astype(str), head["failure_probability"])
    ax.set(xlim=(0, 1), xlabel="failure probability within horizon", title="Fleet risk (top)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def high_risk_alerts(ranked: pd.DataFrame) -> list:  # type: ignore[type-arg]
    """One alert per machine at HIGH or CRITICAL risk, once per machine, level and day."""
    from datetime import UTC, datetime

    from pdm_core.alerts import Alert

    day = datetime.now(UTC).date().isoformat()
    found = []
    for row in ranked[ranked["risk_level"].isin(ALERT_LEVELS)].itertuples(index=False):
        machine, level = str(getattr(row, schema.MACHINE)), str(row.risk_level)
        rul = None if pd.isna(row.rul) else round(float(row.rul), 1)
        found.append(
            Alert(
                kind="high_risk",
                severity="critical" if level == "CRITICAL" else "warning",
                title=f"Machine {machine}: {level} failure risk "
                f"({float(row.failure_probability):.0%})",
                details={
                    "machine_id": machine,
                    "risk_level": level,
                    "failure_probability": round(float(row.failure_probability), 4),
                    "rul": rul,
                    "cycle": int(getattr(row, schema.CYCLE)),
                    "model_version": str(row.model_version),
                },
                dedup_key=f"high-risk-{machine}-{level}-{day}",
            )
        )
    return found


@dg.asset(io_manager_key="warehouse_io_manager", group_name="fleet")
def fleet_health(
    context: dg.AssetExecutionContext,
    mlflow_tracking: MlflowTracking,
    alerts: AlertSink,
    raw_telemetry: pd.DataFrame,
    champion_model: dict,
) -> dg.Output[pd.DataFrame]:
    """Every machine's latest window scored by the champion: risk, RUL, anomaly, ranked."""
    bundle, version = load_fleet_model(mlflow_tracking)
    windows = latest_windows(raw_telemetry, bundle.feature_state.window_length)
    features = compute_features(windows, bundle.feature_state)
    last = features.groupby(schema.MACHINE, sort=False, observed=True).tail(1)
    counts = windows.groupby(schema.MACHINE, sort=False, observed=True).size()
    scored = bundle.predict(last.reset_index(drop=True))
    scored.insert(0, schema.MACHINE, last[schema.MACHINE].astype(str).to_numpy())
    scored.insert(1, schema.CYCLE, last[schema.CYCLE].to_numpy())
    scored["full_window"] = (
        counts.loc[last[schema.MACHINE]].to_numpy() >= bundle.feature_state.window_length
    )
    scored["model_version"] = str(version.version)
    ranked = rank_fleet(scored)
    context.log.info(f"scored {len(ranked)} machines with fleet model v{version.version}")
    levels = ranked["risk_level"].value_counts().to_dict()
    raised = alerts.raise_alerts(high_risk_alerts(ranked))
    context.log.info(f"{len(raised)} high-risk alert(s) handled")
    return dg.Output(
        ranked,
        metadata={
            **frame_metadata(ranked, frame_version(ranked)),
            "model_version": str(version.version),
            "machines_by_risk_level": dg.MetadataValue.json(levels),
            "high_risk_alerts": len(raised),
            "top_risk": dg.MetadataValue.md(markdown_table(ranked, max_rows=15)),
            "risk_plot": dg.MetadataValue.md(
                f"![fleet risk](data:image/png;base64,{_risk_plot(ranked)})"
            ),
        },
    )
