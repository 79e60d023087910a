"""RedisStore against the real Redis: one round trip, key layout, TTLs, bounded memory,
replicas racing on one entity, and a clear DependencyError when Redis is gone."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from txguard.domain.errors import DependencyError
from txguard.domain.events import LabelEvent, Recipient, Sender, TransactionEvent
from txguard.features.engine import FeatureEngine
from txguard.features.spec import default_spec
from txguard.features.stores.redis import LABEL_LUA, RedisStore

T0 = datetime(2026, 4, 1, tzinfo=UTC)


class CountingRedis(redis.Redis):
    """Counts the commands sent: each execute_command is one network round trip."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[str] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent.append(str(args[0]).upper())
        return super().execute_command(*args, **options)


def tx(i: int, minutes: float, sender: str = "alice") -> TransactionEvent:
    return TransactionEvent(
        f"t{i}",
        T0 + timedelta(minutes=minutes),
        10.0 + i % 7,
        "EUR",
        Sender(sender, country="DE"),
        recipient=Recipient(account_id=f"r{i % 9}", country="FR"),
        terminal_id="T1",
        device_id="d1",
    )


def test_one_evalsha_per_transaction(redis_url: str, key_prefix: str) -> None:
    client = CountingRedis.from_url(redis_url)
    eng = FeatureEngine(default_spec(), RedisStore(client, prefix=key_prefix))
    eng.process_transaction(tx(0, 0))  # may load the script first
    client.sent.clear()
    for i in range(1, 21):
        eng.process_transaction(tx(i, i))
    assert client.sent == ["EVALSHA"] * 20
    eng.process_transaction(tx(5, 5))  # a retry is one round trip too
    assert client.sent[-1] == "EVALSHA" and len(client.sent) == 21


def test_key_layout_and_ttls(redis_url: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store = RedisStore(client, prefix=key_prefix)
    eng = FeatureEngine(default_spec(), store)
    eng.process_transaction(tx(1, 0))
    keys = sorted(k.decode() for k in client.scan_iter(match=key_prefix + "*"))
    expected = {
        f"{key_prefix}tx:t1",
        f"{key_prefix}e:sender:alice",
        f"{key_prefix}e:recipient:r1",
        f"{key_prefix}e:pair:alice|r1",
        f"{key_prefix}e:terminal:T1",
        f"{key_prefix}e:device:d1",
    }
    assert set(keys) == expected
    assert client.type(f"{key_prefix}tx:t1") == b"hash"
    assert set(client.hkeys(f"{key_prefix}tx:t1")) == {b"r", b"l", b"f"}
    for k in keys:
        assert client.pttl(k) > 0, k  # nothing lives forever
    # the sender's longest window is 90 d (distinct devices/countries): span 25 buckets of 3.75 d
    assert client.pttl(f"{key_prefix}e:sender:alice") <= (25 * 3.75 * 86400 + 3600) * 1000
    assert client.pttl(f"{key_prefix}tx:t1") <= eng.tx_ttl_ms


def test_entity_memory_is_bounded_by_the_windows(redis_url: str, key_prefix: str) -> None:
    store = RedisStore(url=redis_url, prefix=key_prefix)
    eng = FeatureEngine(default_spec(), store)
    sizes = []
    for i in range(600):  # one transaction every 6 hours for 150 days
        eng.process_transaction(tx(i, i * 360.0))
        if i in (400, 599):
            sizes.append(store.memory_usage("sender:alice"))
    assert 0 < sizes[0] < 16_384
    assert sizes[1] <= sizes[0] * 1.1  # after the longest window is full it stops growing


def test_labels_take_two_round_trips_and_are_idempotent(redis_url: str, key_prefix: str) -> None:
    client = CountingRedis.from_url(redis_url)
    eng = FeatureEngine(default_spec(), RedisStore(client, prefix=key_prefix))
    eng.process_transaction(tx(1, 0))
    client.script_load(LABEL_LUA)  # a fresh server answers NOSCRIPT once: not what is counted
    client.sent.clear()
    eng.apply_label(LabelEvent("t1", True, T0 + timedelta(hours=1)))
    eng.apply_label(LabelEvent("t1", True, T0 + timedelta(hours=1)))
    assert client.sent.count("HGET") == 2 and len(client.sent) <= 5
    v = eng.process_transaction(tx(2, 120)).values
    assert v["sender_fraud_count_30d"] == 1.0


def test_replicas_racing_on_one_entity_count_every_transaction_once(
    redis_url: str, key_prefix: str
) -> None:
    spec = default_spec()
    replicas = [FeatureEngine(spec, RedisStore(url=redis_url, prefix=key_prefix)) for _ in range(4)]

    def work(k: int) -> None:
        for i in range(30):
            replicas[k].process_transaction(tx(k * 1000 + i, 1.0))
            replicas[k].process_transaction(tx(((k + 1) % 4) * 1000 + i, 1.0))  # duplicate race

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    v = replicas[0].process_transaction(tx(99999, 2.0)).values
    assert v["sender_count_1h"] == 120.0


def test_unreachable_redis_raises_dependency_error() -> None:
    store = RedisStore(url="redis://127.0.0.1:1/0", timeout_s=0.2)
    eng = FeatureEngine(default_spec(), store)
    with pytest.raises(DependencyError, match="feature store"):
        eng.process_transaction(tx(1, 0))
    with pytest.raises(DependencyError):
        eng.apply_label(LabelEvent("t1", True, T0))
    assert eng.pointwise(tx(1, 0)).values["hour_of_day"] == 0.0  # the fail-open path still works
