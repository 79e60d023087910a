"""RedisStore's large distinct sets: past a few dozen values a set moves from the entity's state to
a sorted set of its own (value -> last seen), and the numbers stay those of MemoryStore bit for
bit — in order, shuffled, with repeated ids, values ageing out of the window and events without
the field. The sorted set is bounded like the inline set (pruned, TTL'd with the entity)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import redis

from txguard.domain.events import Recipient, Sender, TransactionEvent
from txguard.features.engine import FeatureEngine, FeatureResult
from txguard.features.spec import FeatureSpec
from txguard.features.stores.memory import MemoryStore
from txguard.features.stores.redis import RedisStore

SPEC = FeatureSpec.from_yaml(
    """
entities: {ip: [ip], sender: [sender_account_id]}
aggregates:
  - {entity: ip, aggs: [distinct, new], field: sender_account_id, windows: [1h, 1d]}
  - {entity: ip, aggs: [distinct], field: recipient_account_id, windows: [1h]}
  - {entity: ip, aggs: [count, sum], field: amount, windows: [1h]}
  - {entity: sender, aggs: [distinct], field: ip, windows: [1d]}
"""
)
T0 = datetime(2026, 5, 4, tzinfo=UTC)
HOT_IP = "198.51.100.7"


def stream(n: int = 900) -> list[TransactionEvent]:
    """One IP shared by 300 senders over ~37 hours (values enter and leave both windows), a
    recipient on every third transaction only, and some repeated transaction ids."""
    out = []
    for i in range(n):
        s = (i * 7) % 300
        out.append(
            TransactionEvent(
                f"t{i}",
                T0 + timedelta(seconds=150 * i),
                1.0 + (i * 37) % 101 / 4,
                "USD",
                Sender(f"acct-{s}"),
                recipient=Recipient(account_id=f"r{i % 90}") if i % 3 == 0 else None,
                ip=HOT_IP,
            )
        )
    for i in range(0, n, 97):
        out.insert(i + 5, out[i])  # the same transaction again, a little later in the stream
    return out


def same(a: list[FeatureResult], b: list[FeatureResult]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.first_seen == y.first_seen
        assert x.vector.tobytes() == y.vector.tobytes(), (x.values, y.values)  # NaN included


def test_a_hot_entity_gives_the_numbers_of_memory_store(redis_url: str, key_prefix: str) -> None:
    events = stream()
    expected = FeatureEngine(SPEC, MemoryStore()).process_many(events)
    store = RedisStore(url=redis_url, prefix=key_prefix)
    got = FeatureEngine(SPEC, store).process_many(events)
    same(got, expected)
    assert max(r.values["ip_distinct_sender_account_id_1d"] for r in got) > 200  # it was hot
    # the set lives in its sorted set: the entity's own state stays small
    key = f"ip:{HOT_IP}"
    _, sets = store.entity_state(key)
    assert len(sets[1]) > 64
    client = redis.Redis.from_url(redis_url)
    assert client.type(f"{key_prefix}d1:{key}") == b"zset"
    assert len(client.get(store.entity_key(key)) or b"") < 2_000
    store.close()


def test_shuffled_arrival_is_the_same_in_both_stores(redis_url: str, key_prefix: str) -> None:
    events = stream(700)
    random.Random(3).shuffle(events)
    expected = FeatureEngine(SPEC, MemoryStore()).process_many(events)
    got = FeatureEngine(SPEC, RedisStore(url=redis_url, prefix=key_prefix)).process_many(events)
    same(got, expected)


def test_the_sorted_set_is_pruned_and_expires_with_its_entity(
    redis_url: str, key_prefix: str
) -> None:
    store = RedisStore(url=redis_url, prefix=key_prefix)
    eng = FeatureEngine(SPEC, store)
    eng.process_many(stream(600))
    client = redis.Redis.from_url(redis_url)
    zkey, ekey = f"{key_prefix}d1:ip:{HOT_IP}", store.entity_key(f"ip:{HOT_IP}")
    assert 0 < client.pttl(zkey) <= client.pttl(ekey) + 1_000  # refreshed with the entity
    hot = store.memory_usage(f"ip:{HOT_IP}")
    # a day later only the newcomer is in the 1 d window: everything older was pruned
    later = TransactionEvent(
        "late-1",
        T0 + timedelta(seconds=150 * 600, days=2),
        1.0,
        "USD",
        Sender("someone-new"),
        ip=HOT_IP,
    )
    v = eng.process_transaction(later).values
    assert v["ip_distinct_sender_account_id_1d"] == 0.0
    assert client.zcard(zkey) == 1
    assert store.memory_usage(f"ip:{HOT_IP}") < hot / 4
    store.close()
