"""Where production state lives in S3: one bucket and prefix, reached with boto3 and pyarrow.

Credentials never appear here: boto3 and pyarrow take them from the usual AWS chain (IRSA
web identity in the cluster, ``AWS_PROFILE`` or ``AWS_ACCESS_KEY_ID`` elsewhere). A custom
endpoint (MinIO, a local moto server) comes from ``AWS_ENDPOINT_URL_S3``.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg


class S3Location(dg.ConfigurableResource):
    """A bucket prefix that resources below it share.

    Attributes:
        bucket: Bucket name.
        prefix: Root prefix inside the bucket (no leading or trailing slash needed).
        endpoint_url: Custom S3 endpoint (``http://127.0.0.1:9000``); empty for AWS.
        region_name: AWS region; empty for the SDK's default chain.
    """

    bucket: str
    prefix: str = "pdm"
    endpoint_url: str = ""
    region_name: str = ""

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` below the prefix (``prefix/part/part``)."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def url(self, *parts: str) -> str:
        """``s3://bucket/key`` of ``parts``."""
        return f"s3://{self.bucket}/{self.key(*parts)}"

    def client(self) -> Any:
        """A boto3 S3 client for this location."""
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint_url or None, region_name=self.region_name or None
        )

    def filesystem(self) -> Any:
        """A ``pyarrow.fs.S3FileSystem`` for this location (lazy, ranged reads)."""
        from pyarrow import fs

        options: dict[str, Any] = {}
        if self.endpoint_url:
            scheme, _, host = self.endpoint_url.partition("://")
            options.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
        region = self.region_name or os.environ.get("AWS_REGION") or "us-east-1"
        return fs.S3FileSystem(region=region, **options)

    def list_keys(self, *parts: str) -> list[str]:
        """Every object key below ``parts`` (a folder), sorted."""
        folder = self.key(*parts) + "/"
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=folder
        )  # fmt: skip
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def list_folders(self, *parts: str) -> list[str]:
        """Names of the direct sub-folders below ``parts``."""
        folder = self.key(*parts) + "/"
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=folder, Delimiter="/"
        )  # fmt: skip
        names = (
            entry["Prefix"][len(folder) :].rstrip("/")
            for page in pages
            for entry in page.get("CommonPrefixes", [])
        )
        return sorted(n for n in names if n)


def s3_location_from_env(bucket_var: str = "PDM_S3_BUCKET") -> S3Location:
    """The production location from the environment.

    Reads ``$<bucket_var>`` (required), ``PDM_S3_PREFIX`` (default ``pdm``),
    ``AWS_ENDPOINT_URL_S3`` and ``AWS_REGION``.

    Raises:
        ValueError: When the bucket variable is unset or empty, naming it.
    """
    bucket = os.environ.get(bucket_var, "").strip()
    if not bucket:
        raise ValueError(
            f"PDM_ENV=prod needs ${bucket_var}: the S3 bucket for Dagster IO, the warehouse "
            "and artifacts (see README, configuration reference)"
        )
    return S3Location(
        bucket=bucket,
        prefix=os.environ.get("PDM_S3_PREFIX", "pdm"),
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3", ""),
        region_name=os.environ.get("AWS_REGION", ""),
    )
