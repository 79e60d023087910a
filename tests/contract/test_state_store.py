"""One contract for every StateStore adapter: MemoryStore and RedisStore (real Redis)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from txguard.domain.events import LabelEvent, Recipient, Sender, TransactionEvent
from txguard.features.engine import FeatureEngine, Plan
from txguard.features.ports import StateStore
from txguard.features.spec import FeatureSpec
from txguard.features.stores.memory import MemoryStore

SPEC = FeatureSpec.from_yaml(
    """
entities: {sender: [sender_account_id], terminal: [terminal_id]}
aggregates:
  - {entity: sender, aggs: [count, sum, max, std], field: amount, windows: [1h, 1d]}
  - {entity: sender, aggs: [fraud_count], windows: [1d]}
  - {entity: terminal, aggs: [fraud_rate], windows: [1d], delay: 1d}
  - {entity: sender, aggs: [distinct], field: recipient_account_id, windows: [1h]}
"""
)
T0 = datetime(2026, 2, 2, tzinfo=UTC)


def tx(
    tid: str, minutes: float, amount: float = 1.0, sender: str = "s", rcp: str = "r"
) -> TransactionEvent:
    return TransactionEvent(
        tid,
        T0 + timedelta(minutes=minutes),
        amount,
        "USD",
        Sender(sender),
        recipient=Recipient(account_id=rcp),
        terminal_id="T",
    )


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[StateStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    from txguard.features.stores.redis import RedisStore

    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("key_prefix")
    s = RedisStore(url=url, prefix=prefix)
    yield s
    s.close()


def test_values_are_as_of_before_the_transaction(store: StateStore) -> None:
    eng = FeatureEngine(SPEC, store)
    a = eng.process_transaction(tx("a", 0, 3.0)).values
    b = eng.process_transaction(tx("b", 1, 4.0)).values
    assert (a["sender_count_1h"], a["sender_sum_amount_1h"]) == (0.0, 0.0)
    assert (b["sender_count_1h"], b["sender_sum_amount_1h"], b["sender_max_amount_1h"]) == (
        1.0,
        3.0,
        3.0,
    )


def test_same_transaction_id_counts_once_and_returns_the_first_values(store: StateStore) -> None:
    eng = FeatureEngine(SPEC, store)
    eng.process_transaction(tx("a", 0, 3.0))
    first = eng.process_transaction(tx("b", 1, 4.0))
    for _ in range(3):
        again = eng.process_transaction(tx("b", 1, 4.0))
        assert not again.first_seen
        assert np.array_equal(again.vector, first.vector, equal_nan=True)
    assert eng.process_transaction(tx("c", 2)).values["sender_count_1h"] == 2.0


def test_labels_are_idempotent_and_unknown_ids_are_reported(store: StateStore) -> None:
    eng = FeatureEngine(SPEC, store)
    eng.process_transaction(tx("a", 0))
    assert store.apply_label("a", True)
    assert store.apply_label("a", True)
    assert not store.apply_label("nope", True)
    assert eng.process_transaction(tx("b", 5)).values["sender_fraud_count_1d"] == 1.0
    eng.apply_label(LabelEvent("a", False, T0 + timedelta(minutes=6)))
    assert eng.process_transaction(tx("c", 7)).values["sender_fraud_count_1d"] == 0.0


def test_state_stays_bounded_by_the_windows(store: StateStore) -> None:
    eng = FeatureEngine(SPEC, store)
    for i in range(300):  # 300 transactions, one every 10 minutes, 100 distinct recipients
        eng.process_transaction(tx(f"t{i}", i * 10.0, rcp=f"r{i % 100}"))
    v = eng.process_transaction(tx("last", 3000.0, rcp="r0")).values
    # at 50:00 the 1 h window (24 buckets of 2.5 min) starts at 49:02:30: 49:10 .. 49:50
    assert v["sender_count_1h"] == 5.0
    # the 1 d window (hour buckets) starts at 27:00; the current hour has nothing yet: 23 h x 6
    assert v["sender_count_1d"] == 138.0
    assert v["sender_distinct_recipient_account_id_1h"] == 5.0
    state = _entity_state(store, "sender:s")
    buckets = state[0]
    assert all(len(b) <= 25 for b in buckets.values())
    assert len(state[1][1]) <= 7  # distinct values kept only while inside the window


def _entity_state(store: StateStore, key: str) -> list[dict]:  # type: ignore[type-arg]
    # returned as {gid: {bucket: slots}} (MemoryStore keeps every slot; Redis those its windows
    # read) and {did: {value: last}}
    if not isinstance(store, MemoryStore):
        out, distincts = store.entity_state(key)  # type: ignore[attr-defined]
    else:  # each bucket group one flat array of records [bucket id, slot 1..S]
        groups, distincts = store.entities[key][:2]
        rs = 1 + len(next(e for e in Plan(SPEC).entities if key.startswith(e.name + ":")).ops)
        out = {
            gid: {flat[i]: flat[i + 1 : i + rs] for i in range(0, len(flat), rs)}
            for gid, flat in groups.items()
        }
    assert all(list(g) == sorted(g) for g in out.values())
    return [out, distincts]


def test_concurrent_updates_of_one_entity_lose_nothing(store: StateStore) -> None:
    engines = [FeatureEngine(SPEC, store) for _ in range(4)]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(40):
                engines[k].process_transaction(tx(f"w{k}-{i}", 0.5, amount=1.0))
                engines[k].process_transaction(
                    tx(f"w{(k + 1) % 4}-{i}", 0.5, amount=1.0)
                )  # dup race
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    v = FeatureEngine(SPEC, store).process_transaction(tx("check", 1.0)).values
    assert v["sender_count_1h"] == 160.0
    assert v["sender_sum_amount_1h"] == 160.0


def _stream() -> list[TransactionEvent]:
    # two senders, bursts in the same minute, a repeated id inside the batch and across batches
    out = [
        tx(f"m{i}", i * 0.5, amount=1.0 + (i * 37) % 11, sender=f"s{i % 2}", rcp=f"r{i % 5}")
        for i in range(40)
    ]
    out.insert(10, out[3])  # same id again, later in the same batch
    out.insert(30, out[20])
    return out


def test_a_batch_equals_the_same_transactions_one_by_one(store: StateStore) -> None:
    events = _stream()
    one_by_one = FeatureEngine(SPEC, MemoryStore())
    expected = [one_by_one.process_transaction(e) for e in events]
    eng = FeatureEngine(SPEC, store)
    got = eng.process_many(events[:25]) + eng.process_many(events[25:])
    assert len(got) == len(expected)
    for g, x in zip(got, expected, strict=True):
        assert g.first_seen == x.first_seen
        assert g.vector.tobytes() == x.vector.tobytes()  # bit for bit, NaN included
    assert [g.first_seen for g in got].count(False) == 2
    assert eng.process_many([]) == []


def test_a_redis_batch_survives_the_server_forgetting_its_scripts(
    redis_url: str, key_prefix: str
) -> None:
    from txguard.features.stores.redis import RedisStore

    store = RedisStore(url=redis_url, prefix=key_prefix)
    try:
        eng = FeatureEngine(SPEC, store)
        first = eng.process_many([tx("a", 0, 2.0)])
        store.client.script_flush()
        got = eng.process_many([tx("b", 1, 3.0), tx("a", 0, 2.0)])
        assert got[0].values["sender_sum_amount_1h"] == 2.0
        assert not got[1].first_seen
        assert got[1].vector.tobytes() == first[0].vector.tobytes()
    finally:
        store.close()
