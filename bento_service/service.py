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
import json
import logging
import os
import threading
import time
import typing
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import bentoml
import fastapi
import prometheus_client

from bento_service import request_log
from bento_service.coalesce import Coalescer
from bento_service.schemas import (
    ARROW_MEDIA_TYPES,
    ARROW_STREAM,
    FleetPredictions,
    FleetWindows,
    MachineWindow,
    ModelInfo,
    Prediction,
)

if TYPE_CHECKING:
    from bento_service.scoring import ServedModel

logger = logging.getLogger("bentoml.pdm_service")  # under BentoML's configured handlers
request_log.install()  # a rejected request logs one line, not BentoML's traceback

THREADS = int(os.environ.get("PDM_SERVE_THREADS", "1"))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))  # before scikit-learn loads OpenMP
MAX_BODY_BYTES = int(float(os.environ.get("PDM_SERVE_MAX_BODY_MB", "64")) * 2**20)
INLINE_WINDOWS = 64
"""Requests with at most this many windows are scored on the event loop (a few ms at most)."""
READY_WAIT_S = float(os.environ.get("PDM_SERVE_READY_WAIT_S", "20"))
"""How long a request waits for this worker's first model load (see ``_ready_model``)."""
API_PATHS = frozenset({"/predict", "/predict_batch"})
COALESCE = os.environ.get("PDM_SERVE_COALESCE", "1") == "1"
"""The ``/predict`` windows a worker holds at one moment are scored in one call
(``bento_service.coalesce``); ``PDM_SERVE_COALESCE=0`` scores each request on its own.

At concurrency 32 (BENCHMARKS.md, 13:20 run) it gave 1.36x the requests/s and 0.74x the p99
of scoring each alone, with the collector's thresholds at ``GC_THRESHOLDS``; with Python's
own thresholds its p99 was longer than without it (three runs at 12:08-12:31).
"""
GC_THRESHOLDS_ENV = "PDM_SERVE_GC_THRESHOLDS"


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


GC_THRESHOLDS = gc_thresholds(os.environ.get(GC_THRESHOLDS_ENV, "50000,50,1000"))
"""A worker's garbage-collector thresholds once its model is loaded (``gc.set_threshold``).

Python's ``700,10,10`` runs a young-generation pass whenever 700 more container objects are
alive than at the last pass; a serving worker allocates many short-lived containers per
request, so those passes land in the tail latency. Higher thresholds make them rarer
(``make bench-serve`` compares both; BENCHMARKS.md). Garbage without reference cycles is
freed at once either way.
"""


TRACING = os.environ.get("PDM_SERVE_TRACING", "0") == "1"
"""OpenTelemetry spans for requests (BentoML's tracing; where they go is BentoML's config).

Off by default: BentoML 1.4's tracing middleware runs even with no exporter and sample rate
0, and on 2 cores it cost more than the whole prediction (a no-op BentoML service: 1,250-1,430
requests/s at concurrency 32 with it, 2,400-3,200 without; ``BENCHMARKS.md``). With it off,
answers carry no ``X-BentoML-Request-ID``.
"""

PREDICTIONS = prometheus_client.Counter(
    name="pdm_predictions_total",
    documentation="Predictions served, by risk level.",
    labelnames=["risk_level"],
)
REJECTED = prometheus_client.Counter(
    name="pdm_rejected_requests_total",
    documentation="Requests answered 4xx, by the rule they broke.",
    labelnames=["endpoint", "reason"],
)
LATENCY = prometheus_client.Histogram(
    name="pdm_prediction_latency_seconds",
    documentation="Time to validate-convert-featurise-score one request (inside the service).",
    labelnames=["endpoint"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
COALESCED = prometheus_client.Histogram(
    name="pdm_predict_coalesced_windows",
    documentation="Windows of /predict requests scored together in one call (per worker).",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
MODEL_INFO = prometheus_client.Gauge(
    name="pdm_model_info",
    documentation="The model being served (value 1).",
    labelnames=["model_name", "model_version", "alias", "source"],
    multiprocess_mode="max",  # one series per model across BentoML's worker processes
)


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


class RequestGuard:
    """ASGI middleware in front of the BentoML app.

    On the prediction paths it refuses oversized bodies (413), gives every 4xx answer the one
    documented error shape and counts it by rule in ``pdm_rejected_requests_total``. On
    ``/docs.json`` it applies :func:`patch_openapi`.
    """

    def __init__(self, app: Any, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Handles one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["path"] == "/docs.json":
            patch = lambda status, body: json.dumps(patch_openapi(json.loads(body))).encode()  # noqa: E731
            await self.app(scope, receive, self._rewriting(send, patch, lambda s: s == 200))
        elif scope["path"] in API_PATHS:
            await self._guard(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _guard(self, scope: dict, receive: Any, send: Any) -> None:
        endpoint = scope["path"].lstrip("/")
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        media = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        arrow_path = endpoint == "predict_batch"
        arrow = arrow_path and media.decode("latin-1") in ARROW_MEDIA_TYPES
        if media != b"application/json" and not arrow:
            also = f" (or, to /predict_batch, {ARROW_STREAM})" if arrow_path else ""
            await self._refuse(
                endpoint, send, 415, "unsupported_media_type", "content-type",
                f"send application/json{also}, not {media.decode('latin-1')!r}",
            )  # fmt: skip
            return
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(endpoint, send)
            return
        if declared is None or arrow:  # read it here: chunked (enforce the limit) or Arrow
            chunks, size, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    break
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                more = message.get("more_body", False)
                if size > self.max_body_bytes:
                    await self._too_large(endpoint, send)
                    return
            body = b"".join(chunks)
            if arrow:
                service = bentoml.get_current_service()
                status, answer = await service.predict_batch_arrow(body, media.decode("latin-1"))
                if status == 400:
                    reason = json.loads(answer)["detail"][0]["type"]
                    REJECTED.labels(endpoint=endpoint, reason=reason).inc()
                await self._answer(send, status, answer)
                return

            async def replay() -> dict:
                nonlocal body
                data, body = body, b""
                return {"type": "http.request", "body": data, "more_body": False}

            receive = replay

        def normalise(status: int, body: bytes) -> bytes:
            error = error_body(status, body)
            REJECTED.labels(endpoint=endpoint, reason=error["detail"][0]["type"]).inc()
            return json.dumps(error).encode()

        client_error = lambda status: 400 <= status < 500  # noqa: E731
        await self.app(scope, receive, self._rewriting(send, normalise, client_error))

    @staticmethod
    def _rewriting(send: Any, rewrite: Any, when: Any = lambda status: True) -> Any:
        """A ``send`` that rewrites the body of responses whose status satisfies ``when``.

        Such responses are buffered and their body passed through ``rewrite(status, body)``;
        other responses stream through untouched.
        """
        state: dict[str, Any] = {"start": None, "body": []}

        async def wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                if when(message["status"]):
                    state["start"] = message
                else:
                    await send(message)
                return
            if message["type"] != "http.response.body" or state["start"] is None:
                await send(message)
                return
            state["body"].append(message.get("body", b""))
            if message.get("more_body", False):
                return
            start = state["start"]
            body = rewrite(start["status"], b"".join(state["body"]))
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
            ]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return wrapped

    async def _too_large(self, endpoint: str, send: Any) -> None:
        await self._refuse(
            endpoint, send, 413, "payload_too_large", "body",
            f"request body exceeds {self.max_body_bytes} bytes (PDM_SERVE_MAX_BODY_MB)",
        )  # fmt: skip

    @classmethod
    async def _refuse(
        cls, endpoint: str, send: Any, status: int, rule: str, loc: str, msg: str
    ) -> None:
        REJECTED.labels(endpoint=endpoint, reason=rule).inc()
        detail = [{"type": rule, "loc": [loc], "msg": msg}]
        body = json.dumps({"error": msg, "detail": detail}).encode()
        await cls._answer(send, status, body, close=True)

    @staticmethod
    async def _answer(send: Any, status: int, body: bytes, close: bool = False) -> None:
        """Sends a whole JSON response."""
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


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
    workers=int(os.environ.get("PDM_SERVE_WORKERS", "2")),
    traffic={"timeout": 60},
    logging={"access": {"enabled": os.environ.get("PDM_SERVE_ACCESS_LOG", "0") == "1"}},
    **({} if TRACING else {"tracing": {"excluded_urls": [".*"]}}),
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
        retry = float(os.environ.get("PDM_SERVE_LOAD_RETRY_S", "5"))
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

        threadpool_limits(THREADS)
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
        gc.set_threshold(*GC_THRESHOLDS)

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
            await asyncio.to_thread(self.settled.wait, READY_WAIT_S)
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
        if not COALESCE:
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
