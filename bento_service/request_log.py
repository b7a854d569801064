"""One log line, not a traceback, for each request BentoML answers 4xx or 503.

BentoML 1.4 logs every request its API wrapper answers with an error as ``Exception on
/predict [POST]`` at ERROR with the full traceback, bad requests (400) included. A client
sending bad readings then fills the log with tracebacks, and formatting them made a rejected
request cost about three times an answered one. Rejections are already counted by rule in
``pdm_rejected_requests_total``; the log keeps one line naming the status and the rules.
Tracebacks stay for real server errors (500).
"""

from __future__ import annotations

import logging
from http import HTTPStatus

BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"
"""The logger BentoML's API wrapper reports failed requests on (``log_exception``)."""
_MESSAGE = "Exception on %s [%s]"


def answered_status(error: BaseException) -> int | None:
    """The HTTP status BentoML answers ``error`` with, where it is a 4xx or a 503.

    pydantic's ``ValidationError`` is answered 400; a ``BentoMLException`` with its
    ``error_code``. Anything else (a 500) gives ``None``.
    """
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return HTTPStatus.BAD_REQUEST
    status = getattr(error, "error_code", None)
    if isinstance(status, HTTPStatus) and (
        400 <= status < 500 or status == HTTPStatus.SERVICE_UNAVAILABLE
    ):
        return int(status)
    return None


def rules_of(error: BaseException) -> str:
    """The rules a rejected request broke, comma-separated (as its answer names them)."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return ",".join(sorted({str(e["type"]) for e in error.errors()}))
    rule, _, rest = str(error).partition(": ")
    return rule if rest and " " not in rule else type(error).__name__


class RejectedRequestFilter(logging.Filter):
    """Rewrites BentoML's traceback record of a 4xx or 503 answer into one line.

    4xx: INFO ``Rejected /predict [POST] with 400: float_parsing``; 503 (no model yet):
    WARNING. Other records pass unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrites the record in place where it is a rejected request; keeps every record."""
        error = record.exc_info[1] if record.exc_info else None
        if record.msg != _MESSAGE or error is None:
            return True
        status = answered_status(error)
        if status is None:
            return True
        level = logging.WARNING if status >= 500 else logging.INFO
        record.levelno, record.levelname = level, logging.getLevelName(level)
        record.msg = "Rejected %s [%s] with %d: %s"
        record.args = (*(record.args or ()), status, rules_of(error))  # type: ignore[misc]
        record.exc_info, record.exc_text = None, None
        return True


def install() -> None:
    """Adds :class:`RejectedRequestFilter` to BentoML's request logger (once)."""
    logger = logging.getLogger(BENTOML_REQUEST_LOGGER)
    if not any(isinstance(f, RejectedRequestFilter) for f in logger.filters):
        logger.addFilter(RejectedRequestFilter())
