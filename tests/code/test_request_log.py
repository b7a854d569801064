"""BentoML's traceback record of a rejected request becomes one line naming the rules."""

from __future__ import annotations

import logging
import sys

import bentoml
import pydantic
import pytest

from bento_service.request_log import RejectedRequestFilter, answered_status, rules_of


class Window(pydantic.BaseModel):
    cycle: int
    value: float


def record_for(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "bentoml._internal.server.http_app", logging.ERROR, __file__, 1,
        "Exception on %s [%s]", ("/predict", "POST"), exc_info,
    )  # fmt: skip


def validation_error() -> pydantic.ValidationError:
    with pytest.raises(pydantic.ValidationError) as caught:
        Window.model_validate({"cycle": "later", "value": "high"})
    return caught.value


def test_a_validation_error_becomes_one_info_line_with_its_rules() -> None:
    record = record_for(validation_error())
    assert RejectedRequestFilter().filter(record)
    assert record.levelno == logging.INFO and record.levelname == "INFO"
    assert record.getMessage() == "Rejected /predict [POST] with 400: float_parsing,int_parsing"
    assert record.exc_info is None
    assert "Traceback" not in logging.Formatter().format(record)


def test_a_bentoml_client_error_names_the_rule_its_message_starts_with() -> None:
    error = bentoml.exceptions.InvalidArgument("out_of_range: sensor values push the model out")
    record = record_for(error)
    RejectedRequestFilter().filter(record)
    assert record.getMessage() == "Rejected /predict [POST] with 400: out_of_range"
    assert rules_of(bentoml.exceptions.InvalidArgument("no rule here")) == "InvalidArgument"


def test_unavailable_is_a_warning_line() -> None:
    error = bentoml.exceptions.ServiceUnavailable("model not loaded yet: loading")
    record = record_for(error)
    RejectedRequestFilter().filter(record)
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "Rejected /predict [POST] with 503: ServiceUnavailable"


@pytest.mark.parametrize(
    "error", [RuntimeError("boom"), bentoml.exceptions.InternalServerError("boom")]
)
def test_a_server_error_keeps_its_traceback_at_error(error: BaseException) -> None:
    record = record_for(error)
    assert RejectedRequestFilter().filter(record)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert answered_status(error) is None
    assert "Traceback" in logging.Formatter().format(record)


def test_other_records_pass_unchanged() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "something %s", ("else",), None)
    assert RejectedRequestFilter().filter(record)
    assert record.getMessage() == "something else" and record.levelno == logging.ERROR
