"""``Metrics.watch_event_loop``: the event-loop lag histogram sees a stall of the loop."""

from __future__ import annotations

import asyncio
import time

from txguard.monitor.metrics import Metrics


def _buckets(m: Metrics) -> dict[str, float]:
    return {
        s.labels["le"]: s.value
        for metric in m.loop_lag_seconds.collect()
        for s in metric.samples
        if s.name.endswith("_bucket")
    }


def test_a_blocked_loop_shows_as_lag() -> None:
    m = Metrics()

    async def go() -> None:
        watch = asyncio.create_task(m.watch_event_loop(interval_s=0.005))
        await asyncio.sleep(0.05)  # quiet: the timer is (nearly) on time
        time.sleep(0.08)  # a callback holding the loop for 80 ms
        await asyncio.sleep(0.05)
        watch.cancel()

    asyncio.run(go())
    b = _buckets(m)
    total = b["+Inf"]
    assert total >= 5  # it kept ticking
    assert total - b["0.05"] >= 1  # the stall was seen as more than 50 ms late
    assert total - b["0.1"] == 0  # and not as more than it was
