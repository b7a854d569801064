"""``PDM_SERVE_GC_THRESHOLDS``: a worker's garbage-collector thresholds, checked at start."""

from __future__ import annotations

import pytest

from bento_service.service import gc_thresholds


def test_three_integers_are_the_thresholds() -> None:
    assert gc_thresholds("50000,50,1000") == (50000, 50, 1000)
    assert gc_thresholds("700, 10, 10") == (700, 10, 10)


@pytest.mark.parametrize("text", ["", "700", "700,10", "700,10,10,10", "fast,10,10", "-1,10,10"])
def test_anything_else_names_the_variable_and_the_value(text: str) -> None:
    with pytest.raises(ValueError, match=r"PDM_SERVE_GC_THRESHOLDS must be three") as error:
        gc_thresholds(text)
    assert repr(text) in str(error.value)
