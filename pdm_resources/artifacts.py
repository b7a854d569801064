"""Artifact stores: files the pipeline writes for people (quarantined rows, reports).

A small interface, :class:`ArtifactStore`, with a local-filesystem implementation for the
embedded default and an S3 one for ``PDM_ENV=prod``, behind the same two methods.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pdm_resources.s3_location import S3Location


class ArtifactStore(dg.ConfigurableResource):
    """Stores named artifacts and returns where they went."""

    def write_bytes(self, key: str, data: bytes) -> str:
        """Writes ``data`` under ``key`` (a relative path) and returns its URI."""
        raise NotImplementedError

    def uri(self, key: str) -> str:
        """Returns the URI an artifact under ``key`` has (or would have)."""
        raise NotImplementedError


class LocalArtifactStore(ArtifactStore):
    """Artifacts as files under ``base_dir`` (default ``$PDM_HOME/artifacts``)."""

    base_dir: str

    def _path(self, key: str) -> Path:
        base = Path(self.base_dir).resolve()
        path = (base / key).resolve()
        if base not in path.parents:
            raise ValueError(f"artifact key {key!r} escapes {base}")
        return path

    def write_bytes(self, key: str, data: bytes) -> str:
        """Writes the file atomically (temporary file, then rename) and returns its URI."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return path.as_uri()

    def uri(self, key: str) -> str:
        """Returns the file URI for ``key``."""
        return self._path(key).as_uri()


class S3ArtifactStore(ArtifactStore):
    """Artifacts as objects under ``<location>/artifacts/`` (``PDM_ENV=prod``).

    Attributes:
        location: The bucket and prefix shared with the warehouse and the IO managers.
    """

    location: S3Location

    def _key(self, key: str) -> str:
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise ValueError(f"artifact key {key!r} is not a relative path")
        return self.location.key("artifacts", *parts)

    def write_bytes(self, key: str, data: bytes) -> str:
        """Puts the object (one PUT: readers see the old or the new bytes) and returns its URL."""
        object_key = self._key(key)
        self.location.client().put_object(Bucket=self.location.bucket, Key=object_key, Body=data)
        return f"s3://{self.location.bucket}/{object_key}"

    def uri(self, key: str) -> str:
        """Returns the ``s3://`` URL for ``key``."""
        return f"s3://{self.location.bucket}/{self._key(key)}"
