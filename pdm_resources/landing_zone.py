"""The landing zone: where new telemetry files arrive, and where they go once handled.

A small interface, :class:`LandingZone`, with two implementations chosen by environment
(:func:`landing_zone_from_env`): :class:`LocalLandingZone`, a directory (default
``$PDM_HOME/landing``), and :class:`S3LandingZone`, a bucket prefix (``PDM_LANDING_S3_BUCKET``).
The layout is the same in both, under the root directory or prefix::

    incoming/      producers write here (hidden temporary name, then rename)
    archive/       ingested files, renamed to ``<batch_id><suffix>`` (kept for backfills)
    quarantine/    refused files as ``<batch_id><suffix>`` plus ``<batch_id>.reason.json``,
                   and ``<batch_id>.rejected-rows.csv`` for bad rows of accepted files

A file is never deleted: it ends in ``archive/`` or ``quarantine/``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd

from pdm_core.landing import batch_id, is_candidate
from pdm_resources.env_config import from_environment


@dataclass(frozen=True)
class LandedFile:
    """A complete file waiting in ``incoming/``."""

    name: str
    size: int
    mtime_ns: int

    @property
    def fingerprint(self) -> str:
        """Changes when the file is replaced or rewritten (name, size, modification time)."""
        return f"{self.size}:{self.mtime_ns}"


class LandingZone(dg.ConfigurableResource):
    """Where landed files wait and end up (see the module docstring for the layout)."""

    def describe(self) -> str:
        """One line naming the zone."""
        raise NotImplementedError

    def list_incoming(self) -> list[LandedFile]:
        """Complete files waiting in ``incoming/``, oldest first."""
        raise NotImplementedError

    def read_incoming(self, name: str) -> bytes:
        """The bytes of an incoming file."""
        raise NotImplementedError

    def batch_of(self, name: str) -> str:
        """The batch id of an incoming file (reads it to hash the content)."""
        return batch_id(name, self.read_incoming(name))

    def fetch(self, batch: str) -> tuple[str, bytes]:
        """Name and bytes of a batch's file, from ``incoming/`` or ``archive/``.

        Raises:
            FileNotFoundError: No file with that batch id (mentions a quarantine record).
        """
        raise NotImplementedError

    def archive(self, batch: str, name: str) -> str:
        """Moves an ingested file to ``archive/<batch><suffix>``; returns where it went."""
        raise NotImplementedError

    def quarantine(self, batch: str, name: str, reason: str) -> str:
        """Moves a refused file to ``quarantine/`` with ``<batch>.reason.json``; returns where."""
        raise NotImplementedError

    def write_rejected_rows(self, batch: str, rejects: pd.DataFrame) -> str:
        """Writes a batch's rejected rows with their reasons to quarantine; returns where."""
        raise NotImplementedError


def _reason_record(name: str, batch: str, reason: str) -> bytes:
    record = {
        "file": name,
        "batch_id": batch,
        "reason": reason,
        "quarantined_at": datetime.now(UTC).isoformat(),
    }
    return json.dumps(record, indent=1).encode()


def _suffix(name: str) -> str:
    return Path(name).suffix.lower()


def landing_zone_from_env() -> LandingZone:
    """S3 when ``PDM_LANDING_S3_BUCKET`` is set, else the local directory."""
    if os.environ.get("PDM_LANDING_S3_BUCKET"):
        return S3LandingZone.from_env()
    return LocalLandingZone.from_env()


class LocalLandingZone(LandingZone):
    """A local landing directory.

    Attributes:
        root: The zone's root directory; ``incoming/`` is where producers write.
    """

    root: str

    @classmethod
    def from_env(cls) -> LocalLandingZone:
        """``$PDM_LANDING_DIR``, default ``$PDM_HOME/landing``."""
        from pdm_core import paths

        return cls(root=str(paths.landing_dir()))

    def _dir(self, name: str) -> Path:
        path = Path(self.root) / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def incoming(self) -> Path:
        """Where producers write new files."""
        return self._dir("incoming")

    @property
    def archive_dir(self) -> Path:
        """Ingested files."""
        return self._dir("archive")

    @property
    def quarantine_dir(self) -> Path:
        """Refused files and rejected rows, each with its reason."""
        return self._dir("quarantine")

    def describe(self) -> str:
        """One line naming the zone."""
        return f"local landing zone {self.root}"

    def list_incoming(self) -> list[LandedFile]:
        """Complete files in ``incoming/``, oldest first (hidden and temporary names skipped)."""
        files = []
        for entry in os.scandir(self.incoming):
            if entry.is_file() and is_candidate(entry.name):
                stat = entry.stat()
                files.append(LandedFile(entry.name, stat.st_size, stat.st_mtime_ns))
        return sorted(files, key=lambda f: (f.mtime_ns, f.name))

    def read_incoming(self, name: str) -> bytes:
        """The bytes of an incoming file."""
        return (self.incoming / name).read_bytes()

    def locate(self, batch: str) -> Path:
        """Finds the file of a batch: in ``incoming/`` (not yet handled) or ``archive/``.

        Raises:
            FileNotFoundError: No file with that batch id exists (names the directories).
        """
        for path in sorted(self.archive_dir.glob(f"{batch}.*")):
            if is_candidate(path.name):
                return path
        stem = batch.rsplit("-", 1)[0]
        for entry in self.list_incoming():
            if entry.name.startswith(stem) and self.batch_of(entry.name) == batch:
                return self.incoming / entry.name
        quarantined = sorted(self.quarantine_dir.glob(f"{batch}.reason.json"))
        hint = f"; it was quarantined: {quarantined[0]}" if quarantined else ""
        raise FileNotFoundError(
            f"no file for batch {batch!r} in {self.incoming} or {self.archive_dir}{hint}"
        )

    def archive_file(self, path: Path, batch: str) -> Path:
        """Moves an ingested file to ``archive/<batch><suffix>`` (no-op when already there)."""
        target = self.archive_dir / f"{batch}{path.suffix.lower()}"
        if path.resolve() != target.resolve():
            shutil.move(str(path), target)
        return target

    def quarantine_file(self, path: Path, batch: str, reason: str) -> Path:
        """Moves a refused file to ``quarantine/`` and records why next to it."""
        target = self.quarantine_dir / f"{batch}{path.suffix.lower()}"
        (self.quarantine_dir / f"{batch}.reason.json").write_bytes(
            _reason_record(path.name, batch, reason)
        )
        if path.resolve() != target.resolve():
            shutil.move(str(path), target)
        return target

    def write_rejected_rows(self, batch: str, rejects: pd.DataFrame) -> str:
        """Writes a batch's rejected rows (with their reasons) to quarantine; returns the path."""
        path = self.quarantine_dir / f"{batch}.rejected-rows.csv"
        rejects.to_csv(path, index=False)
        return str(path)

    def fetch(self, batch: str) -> tuple[str, bytes]:
        """Name and bytes of the batch's file (see :meth:`locate`)."""
        path = self.locate(batch)
        return path.name, path.read_bytes()

    def _path_of(self, batch: str, name: str) -> Path:
        archived = self.archive_dir / f"{batch}{_suffix(name)}"
        return archived if archived.exists() else self.incoming / name

    def archive(self, batch: str, name: str) -> str:
        """Moves the file to ``archive/`` (no-op when already there)."""
        return str(self.archive_file(self._path_of(batch, name), batch))

    def quarantine(self, batch: str, name: str, reason: str) -> str:
        """Moves the file to ``quarantine/`` and records why next to it."""
        return str(self.quarantine_file(self._path_of(batch, name), batch, reason))


class S3LandingZone(LandingZone):
    """A landing prefix in S3 (or any S3-compatible store).

    Attributes:
        bucket: Bucket name.
        prefix: Root prefix of the zone (``incoming/`` etc. live below it).
        endpoint_url: Custom endpoint (MinIO, a local moto server); empty for AWS.
        region_name: AWS region; empty for the SDK's default chain.
    """

    bucket: str
    prefix: str = "landing"
    endpoint_url: str = ""
    region_name: str = ""

    @classmethod
    def from_env(cls) -> S3LandingZone:
        """The zone from the environment.

        Reads ``PDM_LANDING_S3_BUCKET``, ``PDM_LANDING_S3_PREFIX`` (default ``landing``),
        ``AWS_ENDPOINT_URL_S3`` and ``AWS_REGION``; credentials come from the SDK's usual chain.
        """
        variables = {
            "bucket": "PDM_LANDING_S3_BUCKET",
            "prefix": "PDM_LANDING_S3_PREFIX",
            "endpoint_url": "AWS_ENDPOINT_URL_S3",
            "region_name": "AWS_REGION",
        }
        return from_environment(cls, variables)

    def _client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url or None,
            region_name=self.region_name or None,
        )

    def _key(self, folder: str, name: str = "") -> str:
        return "/".join(p for p in (self.prefix.strip("/"), folder, name) if p)

    def describe(self) -> str:
        """One line naming the zone."""
        return f"S3 landing zone s3://{self.bucket}/{self._key('')}"

    def list_incoming(self) -> list[LandedFile]:
        """Complete objects directly under ``incoming/`` (hidden and temporary names skipped)."""
        files = []
        pages = (
            self._client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=self._key("incoming") + "/")
        )
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"].rsplit("/", 1)[-1]
                if "/" in item["Key"][len(self._key("incoming")) + 1 :] or not is_candidate(name):
                    continue
                stamp = int(item["LastModified"].timestamp() * 1e9)
                files.append(LandedFile(name, int(item["Size"]), stamp))
        return sorted(files, key=lambda f: (f.mtime_ns, f.name))

    def _get(self, key: str) -> bytes:
        return self._client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def read_incoming(self, name: str) -> bytes:
        """The bytes of an incoming object."""
        return self._get(self._key("incoming", name))

    def _exists(self, key: str) -> bool:
        found = self._client().list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        return any(item["Key"] == key for item in found.get("Contents", []))

    def fetch(self, batch: str) -> tuple[str, bytes]:
        """Name and bytes of the batch's object, from ``archive/`` or ``incoming/``."""
        for suffix in (".parquet", ".csv"):
            key = self._key("archive", f"{batch}{suffix}")
            if self._exists(key):
                return f"{batch}{suffix}", self._get(key)
        stem = batch.rsplit("-", 1)[0]
        for entry in self.list_incoming():
            if entry.name.startswith(stem) and self.batch_of(entry.name) == batch:
                return entry.name, self.read_incoming(entry.name)
        hint = ""
        if self._exists(self._key("quarantine", f"{batch}.reason.json")):
            hint = f"; it was quarantined: {self._key('quarantine', batch + '.reason.json')}"
        raise FileNotFoundError(f"no object for batch {batch!r} in {self.describe()}{hint}")

    def _move(self, source: str, target: str) -> None:
        if source == target or not self._exists(source):
            return
        client = self._client()
        client.copy_object(
            Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source}
        )
        client.delete_object(Bucket=self.bucket, Key=source)

    def _source(self, batch: str, name: str) -> str:
        archived = self._key("archive", f"{batch}{_suffix(name)}")
        return archived if self._exists(archived) else self._key("incoming", name)

    def archive(self, batch: str, name: str) -> str:
        """Copies the object to ``archive/`` and deletes it from ``incoming/``."""
        target = self._key("archive", f"{batch}{_suffix(name)}")
        self._move(self._source(batch, name), target)
        return f"s3://{self.bucket}/{target}"

    def quarantine(self, batch: str, name: str, reason: str) -> str:
        """Writes the reason record, then moves the object to ``quarantine/``."""
        self._client().put_object(
            Bucket=self.bucket,
            Key=self._key("quarantine", f"{batch}.reason.json"),
            Body=_reason_record(name, batch, reason),
        )
        target = self._key("quarantine", f"{batch}{_suffix(name)}")
        self._move(self._source(batch, name), target)
        return f"s3://{self.bucket}/{target}"

    def write_rejected_rows(self, batch: str, rejects: pd.DataFrame) -> str:
        """Writes the rejected rows as CSV under ``quarantine/``."""
        key = self._key("quarantine", f"{batch}.rejected-rows.csv")
        body = rejects.to_csv(index=False).encode()
        self._client().put_object(Bucket=self.bucket, Key=key, Body=body)
        return f"s3://{self.bucket}/{key}"
