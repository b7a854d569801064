"""Scores the single-window requests that are waiting at the same moment in one call.

At concurrency 32 each BentoML worker holds about 16 connections, and the requests that
arrive while it scores one window wait on its event loop. Scoring costs about the same for
one window as for six (0.50 against 0.60 ms: numpy and ONNX Runtime calls have a fixed cost
each), so :class:`Coalescer` gathers every request that reaches it during one turn of the
event loop and scores them together at the start of the next turn. It never waits for more
requests: with one request in flight, the request is scored one loop turn later
(microseconds).

The service uses it unless ``PDM_SERVE_COALESCE=0`` (figures in BENCHMARKS.md).

BentoML's own adaptive batching does not fit ``/predict``: a batchable API takes a list in
the request body (so ``/predict`` would no longer take one window), and its dispatcher
answers 503 when it expects to miss its latency budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    """Runs ``score`` once per event-loop turn over the items submitted during that turn.

    ``score`` runs on the event loop (keep batches small: ``max_batch``). When it raises for
    a batch of several items, each item is scored alone, so that a request with bad values
    gets its own error and the other requests of its batch their results.

    Args:
        score: Items in, one result per item (same order) out.
        max_batch: A batch that reaches this size is scored at once.
    """

    def __init__(self, score: Callable[[list[Item]], Sequence[Result]], max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.score = score
        self.max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._scheduled = False
        self.batches = 0
        """Calls of ``score`` on whole batches (the service exports its own histogram)."""
        self.items = 0
        """Items scored in those calls."""

    async def submit(self, item: Item) -> Result:
        """Scores ``item`` with the others submitted in this loop turn.

        Returns:
            The item's result.

        Raises:
            Exception: What ``score`` raised for this item alone.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._scheduled_flush)
        return await future

    def _scheduled_flush(self) -> None:
        self._scheduled = False
        self._flush()

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        items = [item for item, _ in batch]
        self.batches += 1
        self.items += len(items)
        try:
            results = self.score(items)
            if len(results) != len(items):
                raise RuntimeError(f"score returned {len(results)} results for {len(items)}")
        except Exception as error:
            if len(batch) == 1:
                _settle(batch[0][1], error=error)
                return
            for item, future in batch:  # each on its own: its result, or its own error
                try:
                    _settle(future, self.score([item])[0])
                except Exception as alone:
                    _settle(future, error=alone)
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result)


def _settle(
    future: asyncio.Future, result: object = None, error: BaseException | None = None
) -> None:
    """Completes a future unless its request went away (a cancelled task)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
