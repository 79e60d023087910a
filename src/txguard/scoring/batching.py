"""Coalescing concurrent calls into batches: a batch in flight, the next one filling behind it.

The feature state store answers a whole batch of transactions in one round trip about as fast as
one transaction (`features.ports.StateStore.execute_many`), and what costs on the hot path is the
per-call overhead: a Redis client call, a thread hop, a GIL hand-over. So concurrent requests do
not each call the store: they queue here, and a single drain task takes everything queued, runs it
as one batch, and resolves each caller's future. While a batch is in flight, new requests queue;
when it completes, the next batch is all of them. The batch size therefore follows the load by
itself (1 when idle — no added latency, no timer — and tens under load), like the audit log's
group commit.

Order is kept with one batch in flight (the default): items run in submission order, each batch
after the previous one, so a store that applies a batch in list order behaves exactly as if the
calls had been made one by one. The audit log's coalescer allows two in flight (its writer
serialises commits anyway; the second batch then waits at the writer, not on this loop).

>>> import asyncio
>>> async def double(items):
...     return [2 * i for i in items]
>>> async def main():
...     c = Coalescer(double)
...     return await asyncio.gather(*(c.submit(i) for i in range(5))), c.batches
>>> asyncio.run(main())
([0, 2, 4, 6, 8], 1)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """``await submit(item)`` → ``run([... item ...])[its index]``; ``run`` sees batches of at
    most ``max_batch`` items, at most ``max_in_flight`` at a time (1: single flight, each batch
    after the previous one, in submission order). An exception raised by ``run`` is raised to
    every caller of that batch; an exception *returned* in an item's place is raised to that
    caller only. A caller that is cancelled stops waiting; its item still runs."""

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_batch: int = 256,
        max_in_flight: int = 1,
    ) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._run = run
        self._max = max_batch
        self._limit = max_in_flight
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._pending: asyncio.Task[None] | None = None  # started, not yet running
        self._active = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # batches run (for tests and metrics)
        self.items = 0

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, fut))
        if self._pending is None and self._active < self._limit:
            # started now, runs on the next loop turn: every request made ready in this turn
            # joins its batch too
            task = self._pending = loop.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await fut

    async def _drain(self) -> None:
        self._pending = None
        self._active += 1
        try:
            while self._queue:
                batch = self._queue[: self._max]
                del self._queue[: self._max]
                self.batches += 1
                self.items += len(batch)
                try:
                    results = await self._run([item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(
                            f"batch function returned {len(results)} results for {len(batch)} items"
                        )
                except Exception as e:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                except BaseException:  # cancelled (loop shutting down): nobody gets an answer
                    for _, fut in batch:
                        fut.cancel()
                    raise
                for (_, fut), res in zip(batch, results, strict=True):
                    if fut.done():
                        continue
                    if isinstance(res, BaseException):
                        fut.set_exception(res)
                    else:
                        fut.set_result(res)
        finally:
            self._active -= 1
            if self._active == 0 and self._pending is None:
                left, self._queue = self._queue, []  # non-empty only when cancelled mid-way
                for _, fut in left:
                    fut.cancel()
