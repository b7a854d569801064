"""Headless demo: materialise every asset of the definitions and print a summary.

Run by ``make demo`` (``python -m pdm_platform.demo``). The run is recorded in the Dagster
instance under ``$PDM_HOME/dagster``, so ``make ui`` shows it afterwards.
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import Any

from pdm_platform.instance import ensure_instance


def summarize(result: Any, expected: set[str], source: str, elapsed: float) -> tuple[str, bool]:
    """Builds the printed summary of a run and says whether everything succeeded.

    Args:
        result: ``ExecuteInProcessResult`` of the full pipeline.
        expected: User-facing keys of every asset in the definitions.
        source: Description of the telemetry source.
        elapsed: Wall-clock seconds of the run.

    Returns:
        ``(text, ok)``; ok is False when the run failed, an asset was not materialised or a
        check failed.
    """
    from pdm_assets.metadata import metadata_value as _value
    from pdm_core import paths

    materialized = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    checks = result.get_asset_check_evaluations()
    failed = [c for c in checks if not c.passed]
    missing = sorted(expected - set(materialized))
    lines = [
        "",
        "=" * 72,
        f"Predictive-maintenance pipeline: {'SUCCESS' if result.success else 'FAILED'}"
        f" in {elapsed:.1f}s",
        f"Source:  {source}",
        f"Assets:  {len(materialized)}/{len(expected)} materialised"
        + (f" (missing: {', '.join(missing)})" if missing else ""),
    ]
    for key in sorted(materialized):
        md = materialized[key]
        rows = _value(md, "dagster/row_count")
        detail = f"{rows:,} rows" if rows is not None else ""
        features = _value(md, "features")
        if features is not None:
            detail += f"{', ' if detail else ''}{features} features"
        if key == "dataset_info":
            detail = f"{_value(md, 'name')}: {_value(md, 'sensors')} sensors"
        if key == "raw_telemetry":
            detail += f", {_value(md, 'machines')} machines, {_value(md, 'rows_rejected')} rejected"
        if key == "training_set":
            detail += (
                f" (warm-up excluded: {_value(md, 'warmup_rows_excluded')},"
                f" embargo excluded: {_value(md, 'embargo_rows_excluded')})"
            )
        lines.append(f"  - {key:<20} {detail}")
    lines.append(f"Checks:  {len(checks) - len(failed)} passed, {len(failed)} failed")
    for check in failed:
        lines.append(f"  ! {check.asset_key.to_user_string()}.{check.check_name}")
    lines += [
        "Outputs:",
        f"  warehouse (DuckDB, schema pdm): {paths.warehouse_path()}",
        f"  Dagster runs and materialisations: {paths.dagster_home()}  (browse: make ui)",
        f"  artifacts (quarantine, reports): {paths.artifacts_dir()}",
        "=" * 72,
    ]
    ok = bool(result.success) and not missing and not failed
    return "\n".join(lines), ok


def main() -> int:
    """Runs the full pipeline in the persistent instance and prints the summary."""
    ensure_instance()
    import dagster as dg

    from pdm_core.names import FULL_PIPELINE_JOB, PER_BATCH_ASSETS
    from pdm_platform.definitions import defs

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    job = defs.resolve_job_def(FULL_PIPELINE_JOB)
    expected = {key.to_user_string() for key in defs.resolve_all_asset_keys()} - set(
        PER_BATCH_ASSETS
    )
    from pdm_resources.telemetry_source import TelemetrySource

    source = TelemetrySource.from_env().describe()
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )
    text, ok = summarize(result, expected, source, time.perf_counter() - started)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
