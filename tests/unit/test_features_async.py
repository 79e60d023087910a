"""FeatureEngine.process_many_async on a store without an event-loop round trip (MemoryStore):
called inline, the same results as process_many bit for bit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from txguard.domain.events import Recipient, Sender, TransactionEvent
from txguard.features.engine import FeatureEngine, FeatureResult
from txguard.features.spec import default_spec
from txguard.features.stores.memory import MemoryStore

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def _events() -> list[TransactionEvent]:
    out = [
        TransactionEvent(
            f"t{i}",
            T0 + timedelta(minutes=7 * i),
            5.0 + (i * 13) % 29,
            "EUR",
            Sender(f"s{i % 4}", country="DE"),
            recipient=Recipient(account_id=f"r{i % 6}", country="FR"),
            ip=f"10.0.0.{i % 3}",
        )
        for i in range(60)
    ]
    out.insert(20, out[4])  # a repeated id
    return out


def test_process_many_async_on_memory_store_equals_process_many() -> None:
    events = _events()
    expected = FeatureEngine(default_spec(), MemoryStore()).process_many(events)
    eng = FeatureEngine(default_spec(), MemoryStore())

    async def go() -> list[FeatureResult]:
        out: list[FeatureResult] = []
        for i in range(0, len(events), 8):
            out += await eng.process_many_async(events[i : i + 8], [None] * len(events[i : i + 8]))
        return out

    got = asyncio.run(go())
    assert [g.first_seen for g in got] == [x.first_seen for x in expected]
    assert [g.vector.tobytes() for g in got] == [x.vector.tobytes() for x in expected]
    assert [g.first_seen for g in got].count(False) == 1
