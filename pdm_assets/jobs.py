"""Jobs over the asset graph."""

from __future__ import annotations

import dagster as dg

FULL_PIPELINE = "full_pipeline"

full_pipeline_job = dg.define_asset_job(
    FULL_PIPELINE,
    selection=dg.AssetSelection.all(),
    description="Materialises every asset in the definitions (what `make demo` runs).",
)
