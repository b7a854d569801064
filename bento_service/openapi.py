"""What the service answers, as OpenAPI says it: one error shape for every 4xx answer.

This module must not import Dagster.
"""

from __future__ import annotations

import json
import typing
from typing import Any

from bento_service.schemas import ARROW_MEDIA_TYPES, Prediction

API_PATHS = frozenset({"/predict", "/predict_batch"})
"""The prediction endpoints."""

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "InvalidArgument",
    "description": "Bad request: every broken rule, each naming its field (loc) and rule (type).",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "title": "Message"},
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "loc", "msg"],
                "properties": {
                    "type": {"type": "string", "description": "The rule broken."},
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    },
                    "msg": {"type": "string"},
                },
            },
        },
    },
}
NULLABLE_OUTPUTS = tuple(
    name
    for name, field in Prediction.model_fields.items()
    if type(None) in typing.get_args(field.annotation)
)


def error_body(status: int, body: bytes) -> dict[str, Any]:
    """Any 4xx body BentoML produced, in the one documented shape (:data:`ERROR_SCHEMA`).

    BentoML answers validation errors as ``{"error", "detail": [...]}`` and its own
    exceptions as ``[{"error": message}]``; a message may start with ``rule: ``.
    """
    try:
        data: Any = json.loads(body or b"null")
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("detail"), list):
        return {"error": str(data.get("error", "")), "detail": data["detail"]}
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    message = str(data.get("error", "")) if isinstance(data, dict) else f"HTTP {status}"
    rule, _, rest = message.partition(": ")
    if not rest or " " in rule:
        rule, rest = f"http_{status}", message
    return {"error": message, "detail": [{"type": rule, "loc": [], "msg": rest}]}


def patch_openapi(spec: dict[str, Any]) -> dict[str, Any]:
    """Makes BentoML's generated OpenAPI document describe what the service really answers.

    BentoML documents 400 bodies with a string ``detail`` (they carry a list) and drops
    ``null`` from optional outputs of a root-level response model; the 413 and 415 answers of
    the request guard and the Arrow form of ``/predict_batch`` are added.
    """
    spec.setdefault("components", {}).setdefault("schemas", {})["InvalidArgument"] = ERROR_SCHEMA

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict):
                for name in NULLABLE_OUTPUTS:
                    field = props.get(name)
                    if isinstance(field, dict) and field.get("type") == "number":
                        rest = {k: v for k, v in field.items() if k != "type"}
                        props[name] = {**rest, "anyOf": [{"type": "number"}, {"type": "null"}]}
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec.get("paths", {}))
    walk(spec["components"]["schemas"])
    ref = {
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InvalidArgument"}}
        }
    }
    batch = spec.get("paths", {}).get("/predict_batch", {}).get("post", {})
    content = batch.get("requestBody", {}).get("content")
    if isinstance(content, dict):
        for media in ARROW_MEDIA_TYPES:
            content[media] = {"schema": {"type": "string", "format": "binary"}}
        batch["description"] = (
            (batch.get("description") or "").rstrip()
            + "\n\nThe fleet's readings may also come as an Arrow IPC stream (or file): one "
            "row per reading with machine_id, cycle or timestamp, the sensors and what else "
            "the model needs (see GET /model_info); each machine's rows together, oldest "
            "first. The answer is the same JSON."
        ).strip()
    for path in API_PATHS:
        responses = spec.get("paths", {}).get(path, {}).get("post", {}).get("responses")
        if responses is not None:
            responses["400"] = {"description": "A request rule is broken", **ref}
            responses["413"] = {"description": "Request body too large", **ref}
            responses["415"] = {"description": "Body is not application/json", **ref}
    return spec
