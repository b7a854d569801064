"""Metadata of Dagster events as plain JSON values, for sensors that read what assets logged."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import dagster as dg


def plain_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata values as plain JSON: ``MetadataValue.value`` where JSON-able, else ``str``.

    Args:
        metadata: Dagster metadata (``MetadataValue`` objects or raw values).

    Returns:
        A JSON-serialisable dict with the same keys.
    """
    plain: dict[str, Any] = {}
    for key, value in metadata.items():
        raw = value.value if isinstance(value, dg.MetadataValue) else value
        try:
            json.dumps(raw)
        except Exception:  # not only TypeError: Dagster records refuse iteration outright
            raw = str(raw)
        plain[str(key)] = raw
    return plain
