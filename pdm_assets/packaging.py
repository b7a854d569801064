"""Packaging: the champion becomes a Bento (BentoML's deployable unit).

``fleet_bento`` runs after ``champion_model``, so the blocking ``not_worse_than_champion``
check stands in front of it: a worse model is never packaged. It imports the champion's
bundle from the MLflow registry into the BentoML model store and builds a Bento from
``bento_service/bentofile.yaml`` with the BentoML Python API. ``make serve`` serves the
latest Bento; ``bentoml containerize`` turns it into the image the Kubernetes manifests run.
"""

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from pdm_core import paths
from pdm_core.registry import CHAMPION, FLEET_MODEL, download_bundle
from pdm_resources.mlflow_tracking import MlflowTracking

GROUP = "serving"
BENTOFILE = paths.REPO_ROOT / "bento_service" / "bentofile.yaml"
BENTO_MODEL = FLEET_MODEL  # the Bento model carries the registered name


def use_local_bentoml_store() -> Path:
    """Points BentoML at ``$PDM_HOME/bentoml`` unless ``BENTOML_HOME`` is set.

    Also turns BentoML's usage tracking off. Call before the first ``import bentoml``.
    """
    home = paths.bentoml_home()
    os.environ["BENTOML_HOME"] = str(home)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    return home


def import_bundle(bundle: Path, tag: str, metadata: dict[str, Any]) -> Any:
    """Copies a fleet model bundle into the BentoML model store (kept if the tag exists)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(tag)
    except NotFound:
        pass
    with bentoml.models.create(tag, labels={"project": "pdm"}, metadata=metadata) as model:
        shutil.copytree(bundle, model.path, dirs_exist_ok=True)
    return bentoml.models.get(tag)


def pinned_bentofile(model_tag: str) -> dict[str, Any]:
    """The bentofile's build configuration, its model pinned to ``model_tag``.

    The bentofile names ``pdm-fleet-model:latest``; after a rollback "latest" is not the
    champion, so the build names the exact tag. The service's pins are passed inline as
    ``python.packages`` (read from the bentofile's ``requirements_txt``, the one list a test
    compares with ``uv.lock``): BentoML refuses a requirements file whose absolute path has a
    folder starting with a dot, so a clone under ``~/.cache/`` could not build otherwise.
    """
    config = yaml.safe_load(BENTOFILE.read_text())
    config["models"] = [model_tag]
    python = config.setdefault("python", {})
    requirements = python.pop("requirements_txt", None)
    if requirements:
        lines = (paths.REPO_ROOT / requirements).read_text().splitlines()
        python["packages"] = [s for line in lines if (s := line.split("#")[0].strip())]
    return config


def build_bento(model_tag: str, labels: dict[str, str]) -> Any:
    """Builds a Bento from the bentofile (see :func:`pinned_bentofile`)."""
    import bentoml

    with tempfile.TemporaryDirectory() as tmp:
        pinned = Path(tmp) / "bentofile.yaml"
        pinned.write_text(yaml.safe_dump(pinned_bentofile(model_tag), sort_keys=False))
        return bentoml.bentos.build_bentofile(
            str(pinned), build_ctx=str(paths.REPO_ROOT), labels=labels
        )


@dg.asset(group_name=GROUP, deps=["champion_model"])
def fleet_bento(
    context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking
) -> dg.Output[dict]:
    """The champion packaged as a Bento: REST service with the same feature code."""
    home = use_local_bentoml_store()
    mlflow_tracking.activate()
    bundle, version = download_bundle(
        mlflow_tracking.tracking_uri, mlflow_tracking.registered_model, CHAMPION
    )
    data_version = _bundle_data_version(bundle)
    model_tag = f"{BENTO_MODEL}:v{version.version}-{version.run_id[:8]}"
    model = import_bundle(
        bundle,
        model_tag,
        {
            "registered_model": mlflow_tracking.registered_model,
            "model_version": str(version.version),
            "alias": CHAMPION,
            "run_id": version.run_id,
            "data_version": data_version,
        },
    )
    bento = build_bento(
        str(model.tag), {"model_version": str(version.version), "data_version": data_version}
    )
    context.log.info(f"built Bento {bento.tag} with {model.tag} in {home}")
    return dg.Output(
        {"bento": str(bento.tag), "model": str(model.tag), "model_version": str(version.version)},
        metadata={
            "bento_tag": str(bento.tag),
            "bento_model": str(model.tag),
            "model_version": f"{mlflow_tracking.registered_model} v{version.version}",
            "data_version": data_version or "unknown",
            "bentoml_home": dg.MetadataValue.path(str(home)),
            "serve": dg.MetadataValue.md(f"`make serve` (or `fleet-serve {bento.tag}`)"),
        },
    )


def _bundle_data_version(bundle: Path) -> str:
    import json

    meta = json.loads((bundle / "bundle.json").read_text())
    return str(meta.get("info", {}).get("data_version", ""))
