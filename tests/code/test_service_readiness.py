"""A worker still loading its model makes requests wait instead of answering 503.

BentoML answers ``/readyz`` from whichever worker process takes the connection, so clients can
reach a worker whose first load has not finished after another worker said ready.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import bento_service.service as service_module
from bento_service.service import NotReady


def worker(monkeypatch: pytest.MonkeyPatch, load) -> object:  # type: ignore[no-untyped-def]
    cls = service_module.FleetRiskService.inner
    monkeypatch.setattr(cls, "_load", load)
    return cls()


def test_a_request_during_the_first_load_waits_for_the_model(monkeypatch) -> None:
    sentinel = object()

    def slow_load(self) -> None:  # type: ignore[no-untyped-def]
        time.sleep(0.5)
        self.model = sentinel
        self.settled.set()

    instance = worker(monkeypatch, slow_load)
    started = time.perf_counter()
    assert asyncio.run(instance._ready_model()) is sentinel
    assert time.perf_counter() - started >= 0.4


def test_without_a_model_the_answer_is_503_at_once(monkeypatch) -> None:
    def missing(self) -> None:  # type: ignore[no-untyped-def]
        self._fail("PDM_MODEL_DIR=/nowhere holds no bundle.json")

    instance = worker(monkeypatch, missing)
    started = time.perf_counter()
    with pytest.raises(NotReady, match=r"no bundle\.json"):
        asyncio.run(instance._ready_model())
    assert time.perf_counter() - started < 1.0


def test_the_wait_is_bounded(monkeypatch) -> None:
    waiting = service_module.SETTINGS.model_copy(update={"ready_wait_s": 0.3})
    monkeypatch.setattr(service_module, "SETTINGS", waiting)
    hang = threading.Event()
    instance = worker(monkeypatch, lambda self: hang.wait(5))
    started = time.perf_counter()
    with pytest.raises(NotReady, match="loading"):
        asyncio.run(instance._ready_model())
    assert 0.25 <= time.perf_counter() - started < 2.0
    hang.set()


@pytest.mark.parametrize(("setting", "traced"), [("0", False), ("1", True)])
def test_tracing_is_off_unless_asked_for(setting: str, traced: bool) -> None:
    """PDM_SERVE_TRACING=1 keeps BentoML's tracing; otherwise every URL is excluded from it."""
    import json
    import os
    import subprocess
    import sys

    probe = (
        "import json; from bento_service.service import FleetRiskService as S; "
        "print(json.dumps(S.config.get('tracing')))"
    )
    env = {**os.environ, "PDM_SERVE_TRACING": setting}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout.strip().splitlines()[-1])
    if traced:
        assert config is None
    else:
        assert config == {"excluded_urls": [".*"]}
