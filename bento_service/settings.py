"""The service's settings: every ``PDM_SERVE_*`` environment variable, typed, in one place.

Read once per process (:func:`serve_settings`), when the service module is imported, so a bad
value stops the server at start with the variable and the value named, instead of surfacing
as a wrong limit later. An empty variable counts as unset.

This module must not import Dagster.
"""

from __future__ import annotations

import functools
from typing import Annotated

import pydantic
from pydantic import Field
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "PDM_SERVE_"
GC_THRESHOLDS_ENV = f"{ENV_PREFIX}GC_THRESHOLDS"


def gc_thresholds(text: str) -> tuple[int, int, int]:
    """Parses ``PDM_SERVE_GC_THRESHOLDS`` (three comma-separated non-negative integers).

    Raises:
        ValueError: Not three such integers (naming the variable and the value).
    """
    parts = text.split(",")
    if len(parts) != 3 or not all(part.strip().isdigit() for part in parts):
        raise ValueError(
            f"{GC_THRESHOLDS_ENV} must be three non-negative integers such as 700,10,10, "
            f"got {text!r}"
        )
    first, second, third = (int(part) for part in parts)
    return first, second, third


class ServeSettings(BaseSettings):
    """How one server runs; each field is the variable ``PDM_SERVE_<FIELD>``.

    Attributes:
        workers: HTTP worker processes (one per core serves small requests best).
        threads: OpenMP/BLAS threads per worker. Inside a worker, thread pools only add
            synchronisation to small predictions, so the default is one.
        max_body_mb: Largest request body; a larger one is answered 413.
        max_readings: Most readings in one machine's window.
        max_batch: Most machines in one ``/predict_batch`` call.
        ready_wait_s: How long a request waits for its worker's first model load.
        load_retry_s: Pause between attempts to find a model that is not there yet.
        coalesce: Score the ``/predict`` windows a worker holds at one moment in one model
            call (:mod:`bento_service.coalesce`); off scores each request alone.
        gc_thresholds: The garbage collector's thresholds once the model is loaded. Python's
            ``700,10,10`` runs a young-generation pass whenever 700 more container objects
            are alive than at the last pass; a serving worker allocates many short-lived
            containers per request, so those passes land in the tail latency. Garbage without
            reference cycles is freed at once either way (``make bench-serve`` compares both).
        tracing: BentoML's OpenTelemetry spans for requests. Off by default: BentoML 1.4's
            tracing middleware runs even with no exporter and sample rate 0, and costs more
            than a whole prediction (``make bench-serve``, no-op service). With it off,
            answers carry no ``X-BentoML-Request-ID``.
        access_log: BentoML's access log line per request.
        shared_socket: ``fleet-serve`` keeps BentoML's one shared listening socket instead of
            a socket per worker.
        tokens_dir: A directory of bearer tokens, one per file (a mounted Kubernetes Secret);
            when set, every path but the probes and ``/metrics`` answers 401 without a valid
            ``Authorization: Bearer`` token (:mod:`bento_service.tokens`). Empty: no check.
        tokens_reload_s: How often a worker reads the token directory again, so that tokens
            can be added and removed while it serves.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore", frozen=True
    )

    workers: int = Field(default=2, ge=1)
    threads: int = Field(default=1, ge=1)
    max_body_mb: float = Field(default=64.0, gt=0)
    max_readings: int = Field(default=1000, ge=1)
    max_batch: int = Field(default=5000, ge=1)
    ready_wait_s: float = Field(default=20.0, ge=0)
    load_retry_s: float = Field(default=5.0, gt=0)
    coalesce: bool = True
    gc_thresholds: Annotated[tuple[int, int, int], NoDecode] = (50000, 50, 1000)
    tracing: bool = False
    access_log: bool = False
    shared_socket: bool = False
    tokens_dir: str = ""
    tokens_reload_s: float = Field(default=10.0, gt=0)

    @pydantic.field_validator("gc_thresholds", mode="before")
    @classmethod
    def _parse_gc_thresholds(cls, value: object) -> object:
        return gc_thresholds(value) if isinstance(value, str) else value

    @property
    def max_body_bytes(self) -> int:
        """``max_body_mb`` in bytes."""
        return int(self.max_body_mb * 2**20)


@functools.cache
def serve_settings() -> ServeSettings:
    """This process's settings, read from the environment once.

    Raises:
        ValueError: A variable whose value breaks its rule, named with the value.
    """
    try:
        return ServeSettings()
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{ENV_PREFIX}{str(e['loc'][0]).upper()}={e['input']!r}: {e['msg']}"
            for e in error.errors()
        )
        raise ValueError(f"service settings from the environment: {problems}") from None
