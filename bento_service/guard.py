"""ASGI middleware in front of the BentoML app: body limits, media types, one error shape.

This module must not import Dagster.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import bentoml

from bento_service.metrics import REJECTED
from bento_service.openapi import API_PATHS, error_body, patch_openapi
from bento_service.schemas import ARROW_MEDIA_TYPES, ARROW_STREAM
from bento_service.settings import serve_settings
from bento_service.tokens import BearerTokens

LOGGER = logging.getLogger("pdm.service.guard")
OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})
"""Paths answered without a bearer token: the kubelet's probes and Prometheus' scrape."""
CHALLENGE = (b"www-authenticate", b'Bearer realm="pdm-risk-service"')


class RequestGuard:
    """ASGI middleware in front of the BentoML app.

    With bearer tokens configured (``PDM_SERVE_TOKENS_DIR``) it first answers 401 to every
    request outside :data:`OPEN_PATHS` that lacks a valid one, logging why without the token.
    On the prediction paths it refuses oversized bodies (413), gives every 4xx answer the one
    documented error shape and counts it by rule in ``pdm_rejected_requests_total``. On
    ``/docs.json`` it applies :func:`patch_openapi`.
    """

    def __init__(self, app: Any, max_body_bytes: int | None = None) -> None:
        self.app = app
        settings = serve_settings()
        self.max_body_bytes = settings.max_body_bytes if max_body_bytes is None else max_body_bytes
        self.tokens = (
            BearerTokens(Path(settings.tokens_dir), settings.tokens_reload_s)
            if settings.tokens_dir
            else None
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """Handles one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = None
        if self.tokens is not None and scope["path"] not in OPEN_PATHS:
            refusal = self.tokens.refusal(dict(scope.get("headers") or []).get(b"authorization"))
        if refusal is None:
            await self._dispatch(scope, receive, send)
            return
        endpoint = scope["path"].lstrip("/") if scope["path"] in API_PATHS else "other"
        LOGGER.warning("401 %s %s: %s", scope.get("method"), scope["path"], refusal)
        await self._refuse(endpoint, send, 401, "unauthorized", "authorization", refusal, CHALLENGE)

    async def _dispatch(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["path"] == "/docs.json":
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
        cls, endpoint: str, send: Any, status: int, rule: str, loc: str, msg: str,
        *extra: tuple[bytes, bytes],
    ) -> None:  # fmt: skip
        REJECTED.labels(endpoint=endpoint, reason=rule).inc()
        detail = [{"type": rule, "loc": [loc], "msg": msg}]
        body = json.dumps({"error": msg, "detail": detail}).encode()
        await cls._answer(send, status, body, True, *extra)

    @staticmethod
    async def _answer(
        send: Any, status: int, body: bytes, close: bool = False, *extra: tuple[bytes, bytes]
    ) -> None:
        """Sends a whole JSON response (with ``extra`` headers)."""
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *extra,
        ]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
