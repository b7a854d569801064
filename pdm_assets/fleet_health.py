"""The maintenance engineer's morning report: every machine's newest score, ranked."""

import base64
import io
from datetime import UTC, datetime

import dagster as dg
import numpy as np
import pandas as pd

from pdm_assets.metadata import frame_metadata, markdown_table
from pdm_assets.promotion import load_fleet_model
from pdm_core import schema
from pdm_core.features import compute_features
from pdm_core.names import CHAMPION_MODEL, FLEET_HEALTH, MACHINE_RISK, RAW_TELEMETRY
from pdm_core.versioning import frame_version
from pdm_resources.alerts import AlertSink
from pdm_resources.mlflow_tracking import MlflowTracking
from pdm_resources.warehouse import Warehouse


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


class FleetHealthSettings(dg.Config):
    """When a machine counts as silent."""

    silent_after_minutes: float = 60.0
    """A machine whose newest reading is this far behind the fleet's newest is silent."""


def source_scores(raw: pd.DataFrame, bundle, version: str) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """The champion's score of each machine's latest window in the training source."""
    if raw.empty:
        return pd.DataFrame()
    windows = latest_windows(raw, bundle.feature_state.window_length)
    features = compute_features(windows, bundle.feature_state)
    last = features.groupby(schema.MACHINE, sort=False, observed=True).tail(1)
    counts = windows.groupby(schema.MACHINE, sort=False, observed=True).size()
    scored = bundle.predict(last.reset_index(drop=True))
    scored.insert(0, schema.MACHINE, last[schema.MACHINE].astype(str).to_numpy())
    scored.insert(1, schema.CYCLE, last[schema.CYCLE].to_numpy())
    if schema.TIMESTAMP in windows.columns:
        stamps = windows.set_index([schema.MACHINE, schema.CYCLE])[schema.TIMESTAMP]
        keys = pd.MultiIndex.from_frame(last[[schema.MACHINE, schema.CYCLE]])
        scored.insert(2, schema.TIMESTAMP, stamps.reindex(keys).to_numpy())
    scored["full_window"] = (
        counts.loc[last[schema.MACHINE]].to_numpy() >= bundle.feature_state.window_length
    )
    scored["model_version"] = version
    return scored


@dg.asset(
    name=FLEET_HEALTH,
    io_manager_key="warehouse_io_manager",
    group_name="fleet",
    deps=[RAW_TELEMETRY, CHAMPION_MODEL, MACHINE_RISK],
)
def fleet_health(
    context: dg.AssetExecutionContext,
    config: FleetHealthSettings,
    mlflow_tracking: MlflowTracking,
    warehouse: Warehouse,
    alerts: AlertSink,
) -> dg.Output[pd.DataFrame]:
    """The fleet now: every machine's newest score (live where scored live), age, silence.

    Materialised by every training run and by every ingestion run (after ``machine_risk``),
    so it follows the landed readings; before any batch has landed it is the champion's
    score of each machine's latest window in the training source.
    """
    from pdm_core.alerts import risk_alerts, silent_machine_alert
    from pdm_core.fleet_state import current_state, levels_count, silent_machines
    from pdm_core.models.bundle import RISK_LEVELS

    try:
        bundle, version = load_fleet_model(mlflow_tracking, serving=True)
    except Exception as error:  # before the first training: no champion to score with
        context.log.warning(f"no champion model yet ({error}); fleet health is empty")
        empty = pd.DataFrame({schema.MACHINE: pd.Series(dtype=str)})
        return dg.Output(empty, metadata={"machines": 0, "reason": f"no champion: {error}"})
    raw = warehouse.latest_readings(RAW_TELEMETRY, bundle.feature_state.window_length)
    source = source_scores(raw, bundle, str(version.version))
    silent_after = pd.Timedelta(minutes=config.silent_after_minutes)
    state = rank_fleet(current_state(source, warehouse.risk_history(), silent_after))
    today = datetime.now(UTC).date().isoformat()
    source_rows = state[state["scored_from"] == "training_source"].to_dict("records")
    found = risk_alerts(source_rows, today, bundle.alert_rule)
    silent = silent_machines(state)
    found += [
        silent_machine_alert(str(row.machine_id), str(row.timestamp), str(row.reading_age))
        for row in silent.itertuples(index=False)
    ]
    raised = alerts.raise_alerts(found)
    new_alerts = sum(outcome.status != "duplicate" for outcome in raised)
    context.log.info(
        f"{len(state)} machines ({int((state['scored_from'] == 'live').sum())} scored live), "
        f"{len(silent)} silent, {new_alerts} new alert(s)"
    )
    shown = state.drop(columns=["batch_id", "scored_at"], errors="ignore")
    return dg.Output(
        state,
        metadata={
            **frame_metadata(state, frame_version(state.astype(str))),
            "model_version": str(version.version),
            "machines_by_risk_level": dg.MetadataValue.json(levels_count(state, RISK_LEVELS)),
            "scored_live": int((state["scored_from"] == "live").sum()),
            "silent_machines": dg.MetadataValue.json(list(silent[schema.MACHINE])),
            "alerts_raised": new_alerts,
            "top_risk": dg.MetadataValue.md(markdown_table(shown, max_rows=15)),
            "risk_plot": dg.MetadataValue.md(
                f"![fleet risk](data:image/png;base64,{_risk_plot(state)})"
            ),
        },
    )
