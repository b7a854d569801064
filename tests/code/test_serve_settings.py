"""`PDM_SERVE_*`: the service's settings, typed and checked when the server starts."""

from __future__ import annotations

import pytest

from bento_service.settings import ServeSettings, gc_thresholds, serve_settings


def test_three_integers_are_the_thresholds() -> None:
    assert gc_thresholds("50000,50,1000") == (50000, 50, 1000)
    assert gc_thresholds("700, 10, 10") == (700, 10, 10)


@pytest.mark.parametrize("text", ["", "700", "700,10", "700,10,10,10", "fast,10,10", "-1,10,10"])
def test_anything_else_names_the_variable_and_the_value(text: str) -> None:
    with pytest.raises(ValueError, match=r"PDM_SERVE_GC_THRESHOLDS must be three") as error:
        gc_thresholds(text)
    assert repr(text) in str(error.value)


def test_variables_set_the_settings_and_empty_ones_keep_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PDM_SERVE_WORKERS", "4")
    monkeypatch.setenv("PDM_SERVE_COALESCE", "0")
    monkeypatch.setenv("PDM_SERVE_GC_THRESHOLDS", "700,10,10")
    monkeypatch.setenv("PDM_SERVE_MAX_BODY_MB", "")
    settings = ServeSettings()
    assert (settings.workers, settings.coalesce) == (4, False)
    assert settings.gc_thresholds == (700, 10, 10)
    assert settings.max_body_bytes == 64 * 2**20


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PDM_SERVE_WORKERS", "0"), ("PDM_SERVE_MAX_BODY_MB", "lots"), ("PDM_SERVE_TRACING", "maybe")],
)
def test_a_bad_value_is_refused_naming_the_variable_and_the_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    serve_settings.cache_clear()
    try:
        with pytest.raises(ValueError, match=rf"{variable}={value!r}"):
            serve_settings()
    finally:
        serve_settings.cache_clear()
