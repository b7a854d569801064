"""The failure-risk REST service (BentoML 1.4) for the promoted champion.

Endpoints: ``POST /predict`` (one machine's window), ``POST /predict_batch`` (many machines),
``GET /model_info``, plus BentoML's ``/livez``, ``/readyz`` (ready only after the model
loaded and its self-test passed), ``/metrics`` (Prometheus) and the OpenAPI schema at
``/docs.json``. Run it with ``make serve`` or
``fleet-serve bento_service.service:FleetRiskService`` (``bentoml serve`` with a listening
socket per worker, :mod:`bento_service.serve`; plain ``bentoml serve`` works too).

Bad requests get HTTP 400 (rule violations, each naming its field and rule) or 413 (payload
too large); the service keeps serving. This module must not import Dagster.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import bentoml
import fastapi

from bento_service import request_log
from bento_service.coalesce import Coalescer
from bento_service.guard import RequestGuard
from bento_service.metrics import COALESCED, LATENCY, MODEL_INFO, PREDICTIONS
from bento_service.schemas import (
    FleetPredictions,
    FleetWindows,
    MachineWindow,
    ModelInfo,
    Prediction,
)
from bento_service.settings import serve_settings

if TYPE_CHECKING:
    from bento_service.scoring import ServedModel

logger = logging.getLogger("bentoml.pdm_service")  # under BentoML's configured handlers
request_log.install()  # a rejected request logs one line, not BentoML's traceback

SETTINGS = serve_settings()  # a bad PDM_SERVE_* value stops the server here, naming it
os.environ.setdefault("OMP_NUM_THREADS", str(SETTINGS.threads))  # before scikit-learn's OpenMP
INLINE_WINDOWS = 64
"""Requests with at most this many windows are scored on the event loop (a few ms at most)."""


info_app = fastapi.FastAPI(title="pdm-risk-service model info")


@info_app.get("/model_info", response_model=ModelInfo)
def model_info() -> ModelInfo:
    """Model name, version, alias, data version, required inputs, thresholds, test metrics."""
    model = bentoml.get_current_service().model
    if model is None:
        raise fastapi.HTTPException(503, "model not loaded yet; see /readyz")
    return model.info()


class OutOfRange(bentoml.exceptions.InvalidArgument):
    """Valid-looking readings that push the model out of its numeric range (HTTP 400)."""


class NotReady(bentoml.exceptions.BentoMLException):
    """The model is not loaded (yet): HTTP 503, try again later."""

    error_code = HTTPStatus.SERVICE_UNAVAILABLE


@contextlib.contextmanager
def _out_of_range_as_400() -> Iterator[None]:
    """Turns the model's ``OutOfRangeError`` into the 400 answer :class:`OutOfRange`."""
    from bento_service.scoring import OutOfRangeError

    try:
        yield
    except OutOfRangeError as error:
        raise OutOfRange(f"out_of_range: {error}") from None


@bentoml.service(
    name="pdm-risk-service",
    workers=SETTINGS.workers,
    traffic={"timeout": 60},
    logging={"access": {"enabled": SETTINGS.access_log}},
    **({} if SETTINGS.tracing else {"tracing": {"excluded_urls": [".*"]}}),
)
class FleetRiskService:
    """Failure probability, risk level, RUL and anomaly score for machines' recent readings."""

    def __init__(self) -> None:
        self.model: ServedModel | None = None
        self.single: Coalescer[MachineWindow, Prediction] | None = None
        """Scores the ``/predict`` windows waiting at one moment together (made on first use)."""
        self.single_model: ServedModel | None = None
        """The model ``single`` scores with."""
        self.load_error: str | None = None
        self.settled = threading.Event()
        """Set once the first load attempt ended: a model, or a reason in ``load_error``."""
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()

    def _load(self) -> None:
        """Loads and self-tests the model; retries while it is not there yet."""
        from bento_service.model_source import ModelNotFound, load_served_model
        from bento_service.scoring import SelfTestError

        started = time.perf_counter()
        retry = SETTINGS.load_retry_s
        while True:
            try:
                model = load_served_model()
                break
            except ModelNotFound as error:
                self._fail(str(error))
                logger.warning("no model to serve yet (%s); retrying in %.1f s", error, retry)
                time.sleep(retry)
            except Exception as error:  # a broken model: stay live, never ready, say why
                self._fail(f"{type(error).__name__}: {error}")
                logger.exception("the model could not be loaded; /readyz stays 503")
                return
        # One BentoML worker per core: OpenMP/BLAS pools inside a worker only add
        # synchronisation cost to small predictions (300-tree HistGradientBoosting, one row:
        # 9 ms with 2 threads, 1.8 ms with 1). threadpoolctl reaches the libraries the model
        # just loaded.
        from threadpoolctl import threadpool_limits

        threadpool_limits(SETTINGS.threads)
        try:
            model.self_test()
        except SelfTestError as error:
            self._fail(str(error))
            logger.error("model %s v%s failed its self-test: %s", model.name, model.version, error)
            return
        MODEL_INFO.labels(
            model_name=model.name,
            model_version=model.version,
            alias=model.alias or "",
            source=model.source,
        ).set(1)
        self.model, self.load_error = model, None
        self.settled.set()
        logger.info(
            "serving %s v%s from %s (loaded and self-tested in %.2f s)",
            model.name, model.version, model.source, time.perf_counter() - started,
        )  # fmt: skip
        from bento_service.arrow_batch import load_pyarrow

        load_pyarrow()  # after readiness, so the first Arrow batch skips 0.4 s (under a lock)
        # What is alive now (the libraries, the model) lives as long as the worker: frozen out
        # of the collector's generations, full collections do not walk it on every request.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*SETTINGS.gc_thresholds)

    def _fail(self, reason: str) -> None:
        self.load_error = reason
        self.settled.set()

    def __is_ready__(self) -> bool:
        """Ready once the model is loaded and passed its self-test."""
        return self.model is not None

    async def _ready_model(self) -> ServedModel:
        """The model; while this worker's first load is still running, waits for it.

        ``/readyz`` is answered by whichever worker process takes the connection, so a
        request can reach a worker that is still loading after another one said ready; it
        waits (up to ``PDM_SERVE_READY_WAIT_S``, off the event loop) instead of failing. With
        no model to load (or a broken one) the answer is 503 at once.
        """
        if self.model is None and not self.settled.is_set():
            await asyncio.to_thread(self.settled.wait, SETTINGS.ready_wait_s)
        if self.model is None:
            raise NotReady(f"model not loaded yet: {self.load_error or 'loading'}")
        return self.model

    async def _score(self, windows: list[MachineWindow], endpoint: str) -> list[Prediction]:
        model = await self._ready_model()
        started = time.perf_counter()
        with _out_of_range_as_400():
            if len(windows) <= INLINE_WINDOWS:
                predictions = model.predict(windows)
            else:  # a large batch keeps the event loop (probes, metrics) answering meanwhile
                predictions = await asyncio.to_thread(model.predict, windows)
        self._observe(endpoint, started, (p.risk_level for p in predictions))
        return predictions

    def _coalescer(self, model: ServedModel) -> Coalescer[MachineWindow, Prediction]:
        """This worker's ``/predict`` coalescer for ``model`` (a new one after a reload)."""
        if self.single is None or self.single_model is not model:

            def score(windows: list[MachineWindow]) -> list[Prediction]:
                COALESCED.observe(len(windows))
                return model.predict(windows)

            self.single = Coalescer(score, max_batch=INLINE_WINDOWS)
            self.single_model = model
        return self.single

    @staticmethod
    def _observe(endpoint: str, started: float, levels: Iterable[str]) -> None:
        """Records a scored request: its latency and its predictions by risk level."""
        LATENCY.labels(endpoint=endpoint).observe(time.perf_counter() - started)
        for level, count in collections.Counter(levels).items():
            PREDICTIONS.labels(risk_level=level).inc(count)

    async def predict_batch_arrow(self, body: bytes, media_type: str) -> tuple[int, bytes]:
        """``POST /predict_batch`` with an Arrow IPC body (see :mod:`bento_service.arrow_batch`).

        Called by :class:`RequestGuard` (BentoML parses API bodies as JSON only). The answer
        is the JSON form's ``FleetPredictions``.

        Returns:
            ``(status, JSON body)``: 200 with the predictions, 400 naming the rule broken, or
            503 before the model is loaded.
        """
        from pydantic_core import to_json

        from bento_service.arrow_batch import BatchRuleError, read_batch
        from bento_service.scoring import OutOfRangeError

        try:
            model = await self._ready_model()
        except NotReady as error:
            return 503, to_json({"error": str(error)})
        started = time.perf_counter()

        def score() -> list[dict[str, Any]]:
            batch = read_batch(body, media_type, model.contract)
            return model.prediction_rows(batch.machine_ids, batch.arrays)

        try:
            rows = await asyncio.to_thread(score)
        except BatchRuleError as error:
            return 400, to_json({"error": error.msg, "detail": [error.detail()]})
        except OutOfRangeError as error:
            detail = [{"type": "out_of_range", "loc": [], "msg": str(error)}]
            return 400, to_json({"error": str(error), "detail": detail})
        self._observe("predict_batch", started, (row["risk_level"] for row in rows))
        answer = {"predictions": rows, "model_name": model.name, "model_version": model.version}
        return 200, to_json(answer)

    # The APIs are coroutines: scoring is CPU-bound and single-threaded per worker (one worker
    # per core), so running a small request on the event loop saves the thread-pool hop of a
    # sync API; batches over INLINE_WINDOWS windows still go to a thread.
    @bentoml.api(route="/predict")
    async def predict(self, window: MachineWindow, /) -> Prediction:
        """Scores one machine's latest reading from its recent window of readings."""
        if not SETTINGS.coalesce:
            return (await self._score([window], "predict"))[0]
        model = await self._ready_model()
        started = time.perf_counter()
        with _out_of_range_as_400():  # with the other /predict windows waiting now
            prediction = await self._coalescer(model).submit(window)
        self._observe("predict", started, (prediction.risk_level,))
        return prediction

    @bentoml.api(route="/predict_batch")
    async def predict_batch(self, batch: FleetWindows, /) -> FleetPredictions:
        """Scores many machines in one call (the fleet's morning report)."""
        predictions = await self._score(batch.machines, "predict_batch")
        model = await self._ready_model()
        return FleetPredictions(
            predictions=predictions, model_name=model.name, model_version=model.version
        )


FleetRiskService.add_asgi_middleware(RequestGuard)
FleetRiskService.mount_asgi_app(info_app, path="/")
