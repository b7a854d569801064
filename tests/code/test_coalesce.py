"""The /predict coalescer: windows waiting at the same moment are scored in one call."""

from __future__ import annotations

import asyncio

import pytest

from bento_service.coalesce import Coalescer


def doubled(calls: list[list[int]]):  # type: ignore[no-untyped-def]
    def score(items: list[int]) -> list[int]:
        calls.append(list(items))
        if any(i < 0 for i in items):
            raise ValueError(f"negative in {items}")
        return [2 * i for i in items]

    return score


def submit_together(coalescer: Coalescer, items: list[int]) -> list[object]:
    """Submits every item in one loop turn; results or exceptions, in item order."""

    async def main() -> list[object]:
        return await asyncio.gather(*(coalescer.submit(i) for i in items), return_exceptions=True)

    return asyncio.run(main())


def test_requests_of_one_loop_turn_share_one_call_and_keep_their_order() -> None:
    calls: list[list[int]] = []
    coalescer = Coalescer(doubled(calls), max_batch=64)
    assert submit_together(coalescer, list(range(10))) == [2 * i for i in range(10)]
    assert calls == [list(range(10))]
    assert (coalescer.batches, coalescer.items) == (1, 10)


def test_a_full_batch_is_scored_at_once() -> None:
    calls: list[list[int]] = []
    coalescer = Coalescer(doubled(calls), max_batch=4)
    assert submit_together(coalescer, list(range(10))) == [2 * i for i in range(10)]
    assert [len(c) for c in calls] == [4, 4, 2]


def test_a_bad_item_gets_its_own_error_and_the_others_their_results() -> None:
    calls: list[list[int]] = []
    coalescer = Coalescer(doubled(calls), max_batch=64)
    first, bad, third = submit_together(coalescer, [1, -1, 3])
    assert (first, third) == (2, 6)
    assert isinstance(bad, ValueError) and "[-1]" in str(bad)
    assert calls == [[1, -1, 3], [1], [-1], [3]]


def test_one_request_alone_is_scored_alone() -> None:
    calls: list[list[int]] = []
    coalescer = Coalescer(doubled(calls), max_batch=64)
    assert asyncio.run(coalescer.submit(5)) == 10
    with pytest.raises(ValueError, match=r"\[-2\]"):
        asyncio.run(coalescer.submit(-2))
    assert calls == [[5], [-2]]


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Coalescer(doubled([]), max_batch=0)
