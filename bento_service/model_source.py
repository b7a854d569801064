"""Where the service finds the model to serve, chosen by environment.

In order:

1. ``PDM_MODEL_DIR``: a fleet model bundle directory (tests, debugging).
2. ``PDM_MODEL_SOURCE=registry``: the version of ``pdm-fleet-model`` holding the alias
   ``PDM_MODEL_ALIAS`` (default ``champion``) in the MLflow registry at
   ``MLFLOW_TRACKING_URI`` (default: the local store under ``$PDM_HOME/mlflow``).
3. Otherwise the BentoML model ``PDM_BENTO_MODEL`` (default ``pdm-fleet-model:latest``):
   inside a Bento this is the model packaged with it.
"""

from __future__ import annotations

import os
from pathlib import Path

from bento_service.scoring import ServedModel
from pdm_core.registry import CHAMPION, FLEET_MODEL

BENTO_MODEL = FLEET_MODEL  # the Bento model carries the registered name


class ModelNotFound(LookupError):
    """The configured source holds no model (yet): no directory, alias or stored model."""


def load_served_model() -> ServedModel:
    """Loads the model the environment points at (see the module docstring)."""
    directory = os.environ.get("PDM_MODEL_DIR")
    if directory:
        if not (Path(directory) / "bundle.json").exists():
            raise ModelNotFound(f"PDM_MODEL_DIR={directory} holds no bundle.json")
        return ServedModel.from_bundle(
            Path(directory), name=FLEET_MODEL, version="local", source=f"dir:{directory}"
        )
    if os.environ.get("PDM_MODEL_SOURCE", "bentoml") == "registry":
        from pdm_core.paths import mlflow_tracking_uri
        from pdm_core.registry import download_bundle

        uri = os.environ.get("MLFLOW_TRACKING_URI") or mlflow_tracking_uri()
        alias = os.environ.get("PDM_MODEL_ALIAS", CHAMPION)
        from mlflow.exceptions import MlflowException

        try:
            bundle, version = download_bundle(uri, FLEET_MODEL, alias)
        except MlflowException as error:
            raise ModelNotFound(f"{FLEET_MODEL}@{alias} in {uri}: {error.message}") from None
        return ServedModel.from_bundle(
            bundle, name=FLEET_MODEL, version=str(version.version), alias=alias,
            source=f"mlflow:{FLEET_MODEL}@{alias}",
        )  # fmt: skip
    import bentoml
    from bentoml.exceptions import NotFound

    tag = os.environ.get("PDM_BENTO_MODEL", f"{BENTO_MODEL}:latest")
    try:
        model = bentoml.models.get(tag)
    except NotFound:
        raise ModelNotFound(f"BentoML model {tag} is not in the store") from None
    meta = model.info.metadata
    return ServedModel.from_bundle(
        Path(model.path),
        name=str(meta.get("registered_model", FLEET_MODEL)),
        version=str(meta.get("model_version", model.tag.version)),
        alias=meta.get("alias"),
        source=f"bentoml:{model.tag}",
    )
