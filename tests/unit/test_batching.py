"""The coalescer behind the pipeline's shared feature-store round trips."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from txguard.scoring.batching import Coalescer


class Recorder:
    """A batch function that records its batches and how many ran at once."""

    def __init__(self, answer: Callable[[int], object]) -> None:
        self.answer = answer
        self.calls: list[list[int]] = []
        self.in_flight = 0
        self.most = 0

    async def __call__(self, items: list[int]) -> list[object]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        self.calls.append(items)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        return [self.answer(i) for i in items]


def test_concurrent_calls_share_batches_in_order_and_single_flight() -> None:
    run = Recorder(lambda i: i * 10)

    async def main() -> list[object]:
        c = Coalescer(run, max_batch=4)
        first = asyncio.gather(*(c.submit(i) for i in range(6)))
        await asyncio.sleep(0)  # the first batch is in flight; these queue behind it
        later = asyncio.gather(*(c.submit(i) for i in range(6, 9)))
        return list(await first) + list(await later)

    assert asyncio.run(main()) == [i * 10 for i in range(9)]
    assert run.calls == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
    assert run.most == 1


def test_a_failing_batch_fails_each_of_its_callers_and_the_next_batch_runs() -> None:
    async def run(items: list[int]) -> list[int]:
        if 0 in items:
            raise ValueError("store down")
        return items

    async def main() -> tuple[list[object], int]:
        c = Coalescer(run)
        bad = await asyncio.gather(*(c.submit(i) for i in range(3)), return_exceptions=True)
        return list(bad), await c.submit(7)

    bad, good = asyncio.run(main())
    assert all(isinstance(e, ValueError) for e in bad)
    assert good == 7


def test_a_wrong_number_of_results_is_an_error_not_a_mismatch() -> None:
    async def run(items: list[int]) -> list[int]:
        return items[:-1]

    async def main() -> None:
        c = Coalescer(run)
        await asyncio.gather(c.submit(1), c.submit(2))

    with pytest.raises(RuntimeError, match="2 items"):
        asyncio.run(main())


def test_a_cancelled_caller_stops_waiting_and_the_others_get_their_answer() -> None:
    ran: list[list[int]] = []

    async def run(items: list[int]) -> list[int]:
        ran.append(items)
        await asyncio.sleep(0.01)
        return items

    async def main() -> int:
        c = Coalescer(run)
        t1 = asyncio.ensure_future(c.submit(1))
        t2 = asyncio.ensure_future(c.submit(2))
        await asyncio.sleep(0.001)
        t1.cancel()
        return await t2

    assert asyncio.run(main()) == 2
    assert ran == [[1, 2]]  # the cancelled caller's item still ran (as a request would have)


def test_max_batch_must_be_positive() -> None:
    async def run(items: list[int]) -> list[int]:
        return items

    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(run, max_batch=0)


def test_two_batches_in_flight_and_an_error_returned_for_one_item() -> None:
    run = Recorder(lambda i: ValueError(f"bad {i}") if i == 4 else i)

    async def main() -> list[object]:
        c = Coalescer(run, max_in_flight=2)
        first = [asyncio.ensure_future(c.submit(i)) for i in range(3)]
        await asyncio.sleep(0)  # the first batch is in flight: the next one starts at once
        second = [asyncio.ensure_future(c.submit(i)) for i in range(3, 6)]
        await asyncio.sleep(0)
        third = [asyncio.ensure_future(c.submit(i)) for i in range(6, 8)]  # waits for a slot
        return list(await asyncio.gather(*first, *second, *third, return_exceptions=True))

    out = asyncio.run(main())
    assert out[:4] == [0, 1, 2, 3] and out[5:] == [5, 6, 7]
    assert isinstance(out[4], ValueError) and str(out[4]) == "bad 4"
    assert run.calls == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert run.most == 2
