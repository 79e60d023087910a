"""FeatureEngine on MemoryStore: window semantics, labels, idempotency, snapshots (values worked
out by hand from the rules in ADR 0002)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from txguard.domain.errors import ValidationError
from txguard.domain.events import LabelEvent, Recipient, Sender, TransactionEvent
from txguard.features.engine import FeatureEngine, Plan, event_values, pointwise_values
from txguard.features.spec import FeatureSpec
from txguard.features.stores.memory import MemoryStore

D0 = datetime(2026, 5, 4, tzinfo=UTC)  # a Monday, 00:00 UTC: bucket boundaries fall on hours

SPEC = FeatureSpec.from_yaml(
    """
buckets: 24
entities: {sender: [sender_account_id], terminal: [terminal_id], device: [device_id]}
pointwise: [amount_ref, hour_of_day, is_weekend, is_night, account_age_days, is_cross_border,
            amount_below_10k, log_amount]
aggregates:
  - {entity: sender, aggs: [count, sum, mean, std, max, zscore, ratio_mean], field: amount_usd, windows: [1d]}
  - {entity: sender, aggs: [time_since_last, first_seen, fraud_count], windows: [1d]}
  - {entity: terminal, aggs: [fraud_count, fraud_rate], windows: [1d], delay: 7d}
  - {entity: sender, aggs: [distinct, new], field: recipient_account_id, windows: [1d]}
  - {entity: device, aggs: [count], windows: [1d]}
external: [ip_risk]
"""
)


def tx(
    tid: str,
    at: datetime,
    amount: float = 10.0,
    *,
    sender: str = "s1",
    terminal: str | None = "T1",
    recipient: str | None = None,
    device: str | None = None,
    created: datetime | None = None,
) -> TransactionEvent:
    return TransactionEvent(
        transaction_id=tid,
        occurred_at=at,
        amount=amount,
        currency="USD",
        sender=Sender(sender, created_at=created, country="DE"),
        recipient=Recipient(account_id=recipient, country="FR") if recipient else None,
        terminal_id=terminal,
        device_id=device,
    )


@pytest.fixture
def engine() -> FeatureEngine:
    return FeatureEngine(SPEC, MemoryStore())


def h(hours: float) -> datetime:
    return D0 + timedelta(hours=hours)


def test_window_holds_current_bucket_and_the_23_before(engine: FeatureEngine) -> None:
    for i, (at, amount) in enumerate([(h(0.1), 10.0), (h(0.8), 20.0), (h(1.5), 40.0)]):
        engine.process_transaction(tx(f"a{i}", at, amount))
    v = engine.process_transaction(tx("q1", h(23.9), 1.0)).values
    assert v["sender_count_1d"] == 3
    assert v["sender_sum_amount_usd_1d"] == 70.0
    assert v["sender_mean_amount_usd_1d"] == pytest.approx(70 / 3)
    assert v["sender_std_amount_usd_1d"] == pytest.approx(np.std([10.0, 20.0, 40.0]))
    assert v["sender_max_amount_usd_1d"] == 40.0
    assert v["sender_ratio_mean_amount_usd_1d"] == pytest.approx(1.0 / (70 / 3))
    assert v["sender_zscore_amount_usd_1d"] == pytest.approx((1.0 - 70 / 3) / np.std([10, 20, 40]))
    # at 24:20 the window starts at 01:00: hour 0 has left, 01:30 and 23:54 remain
    v = engine.process_transaction(tx("q2", h(24.33), 1.0)).values
    assert v["sender_count_1d"] == 2
    assert v["sender_sum_amount_usd_1d"] == 41.0
    assert v["sender_time_since_last_1d"] == pytest.approx((24.33 - 23.9) * 3600)
    assert v["sender_first_seen_1d"] == pytest.approx((24.33 - 1.5) * 3600)


def test_empty_window_gives_zero_counts_and_nan_statistics(engine: FeatureEngine) -> None:
    v = engine.process_transaction(tx("first", h(3))).values
    assert v["sender_count_1d"] == 0.0 and v["sender_sum_amount_usd_1d"] == 0.0
    for name in (
        "sender_mean_amount_usd_1d",
        "sender_std_amount_usd_1d",
        "sender_max_amount_usd_1d",
        "sender_zscore_amount_usd_1d",
        "sender_time_since_last_1d",
        "terminal_fraud_rate_1d_lag7d",
    ):
        assert math.isnan(v[name]), name
    assert math.isnan(v["device_count_1d"])  # no device on the event: the entity is absent


def test_lagged_terminal_rate_uses_labels_known_before_the_transaction(
    engine: FeatureEngine,
) -> None:
    engine.process_transaction(tx("f", h(0.2), sender="x"))
    engine.process_transaction(tx("ok", h(5), sender="y"))
    # at day 7 12:00 the lagged window (the 24 hours before day 0 12:00) holds both, label unknown
    v = engine.process_transaction(tx("q1", h(7 * 24 + 12), sender="z")).values
    assert v["terminal_fraud_count_1d_lag7d"] == 0.0
    assert v["terminal_fraud_rate_1d_lag7d"] == 0.0
    engine.apply_label(LabelEvent("f", True, h(7 * 24 + 13)))  # known 7 d 13 h later
    v = engine.process_transaction(tx("q2", h(8 * 24 + 0.5), sender="z")).values
    assert v["terminal_fraud_count_1d_lag7d"] == 1.0
    assert v["terminal_fraud_rate_1d_lag7d"] == 0.5
    # by day 8 12:00 the lagged window has moved past day 0
    v = engine.process_transaction(tx("q3", h(8 * 24 + 12), sender="z")).values
    assert math.isnan(v["terminal_fraud_rate_1d_lag7d"])


def test_labels_count_from_known_at_and_a_flip_undoes_them(engine: FeatureEngine) -> None:
    engine.process_transaction(tx("f", h(1)))
    assert engine.process_transaction(tx("b", h(2))).values["sender_fraud_count_1d"] == 0
    engine.apply_label(LabelEvent("f", True, h(2)))
    engine.apply_label(LabelEvent("f", True, h(2)))  # the same verdict twice counts once
    assert engine.process_transaction(tx("c", h(3))).values["sender_fraud_count_1d"] == 1
    engine.apply_label(LabelEvent("f", False, h(3)))
    assert engine.process_transaction(tx("d", h(4))).values["sender_fraud_count_1d"] == 0
    engine.apply_label(LabelEvent("never-seen", True, h(4)))  # unknown transaction: ignored


def test_a_repeated_transaction_returns_the_first_values_and_counts_once(
    engine: FeatureEngine,
) -> None:
    engine.process_transaction(tx("a", h(1), 5.0))
    first = engine.process_transaction(tx("b", h(2), 7.0))
    engine.process_transaction(tx("c", h(3), 9.0))
    again = engine.process_transaction(tx("b", h(2), 7.0))
    assert first.first_seen and not again.first_seen
    assert np.array_equal(first.vector, again.vector, equal_nan=True)
    assert engine.process_transaction(tx("d", h(4))).values["sender_count_1d"] == 3


def test_distinct_and_new_counterparty(engine: FeatureEngine) -> None:
    r = [
        engine.process_transaction(tx(f"t{i}", h(i), recipient=rc)).values
        for i, rc in enumerate(["r1", "r2", "r1", None, "r3"])
    ]
    assert [v["sender_distinct_recipient_account_id_1d"] for v in r] == [0, 1, 2, 2, 2]
    assert [v["sender_new_recipient_account_id_1d"] for v in r][:3] == [1.0, 1.0, 0.0]
    assert math.isnan(r[3]["sender_new_recipient_account_id_1d"])
    assert r[4]["sender_new_recipient_account_id_1d"] == 1.0


def test_pointwise_features_and_external_values(engine: FeatureEngine) -> None:
    sat_night = datetime(2026, 5, 9, 3, 30, tzinfo=UTC)
    e = tx("p", sat_night, 9500.0, recipient="r", created=sat_night - timedelta(days=10))
    res = engine.process_transaction(e, external={"ip_risk": 0.7})
    v = res.values
    assert (v["hour_of_day"], v["is_weekend"], v["is_night"]) == (3.0, 1.0, 1.0)
    assert v["account_age_days"] == 10.0 and v["is_cross_border"] == 1.0
    assert v["amount_below_10k"] == 1.0 and v["amount_ref"] == 9500.0
    assert v["log_amount"] == math.log1p(9500.0)
    assert v["ip_risk"] == 0.7
    assert list(res.vector) == pytest.approx([v[n] for n in SPEC.names], nan_ok=True)
    assert res.vector.dtype == np.float64
    degraded = engine.pointwise(tx("p2", sat_night))
    assert math.isnan(degraded.values["sender_count_1d"]) and math.isnan(degraded.values["ip_risk"])
    assert degraded.values["hour_of_day"] == 3.0


def test_late_event_sees_its_own_bucket_but_not_later_buckets(engine: FeatureEngine) -> None:
    engine.process_transaction(tx("a", h(1.2)))
    engine.process_transaction(tx("b", h(1.9)))
    engine.process_transaction(tx("c", h(3.0)))
    # arrives after c but happened at 01:10: counts a and b (same hour bucket, recorded), not c
    assert engine.process_transaction(tx("late", h(1.1))).values["sender_count_1d"] == 2


def test_snapshot_restores_the_state(tmp_path: Path) -> None:
    events = [tx(f"t{i}", h(i * 0.7), float(i), recipient=f"r{i % 3}") for i in range(40)]
    whole = FeatureEngine(SPEC, MemoryStore())
    expected = [whole.process_transaction(e).vector for e in events]
    store = MemoryStore()
    first = FeatureEngine(SPEC, store)
    got = [first.process_transaction(e).vector for e in events[:20]]
    first.apply_label(LabelEvent("t3", True, h(14)))
    whole.apply_label(LabelEvent("t3", True, h(14)))
    store.snapshot(tmp_path / "state.msgpack")
    second = FeatureEngine(SPEC, MemoryStore.load(tmp_path / "state.msgpack"))
    got += [second.process_transaction(e).vector for e in events[20:]]
    # recompute the reference after the label at the same point in the stream
    whole2 = FeatureEngine(SPEC, MemoryStore())
    ref = [whole2.process_transaction(e).vector for e in events[:20]]
    whole2.apply_label(LabelEvent("t3", True, h(14)))
    ref += [whole2.process_transaction(e).vector for e in events[20:]]
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(got, ref, strict=True))
    assert len(expected) == len(got)
    # a replayed id after the restart is still recognised
    assert not second.process_transaction(events[5]).first_seen


def test_corrupt_snapshot_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "bad.msgpack"
    p.write_bytes(b"\xc1garbage")
    with pytest.raises(ValidationError, match="snapshot"):
        MemoryStore.load(p)
    assert MemoryStore.load(tmp_path / "absent").entities == {}


def test_snapshot_of_layout_1_is_upgraded_on_load(tmp_path: Path) -> None:
    # layout 1 kept buckets as {bucket: slots}; a restart from such a snapshot must continue
    # exactly where it stopped, labels of earlier transactions included
    import msgspec

    events = [tx(f"t{i}", h(i * 0.7), float(i), recipient=f"r{i % 3}") for i in range(40)]
    store = MemoryStore()
    first = FeatureEngine(SPEC, store)
    for e in events[:20]:
        first.process_transaction(e)
    store.snapshot(tmp_path / "v2.msgpack")
    doc = msgspec.msgpack.decode((tmp_path / "v2.msgpack").read_bytes())
    widths = {e.name: len(e.ops) + 1 for e in Plan(SPEC).entities}
    for key, st in doc["entities"].items():
        rs = widths[key.split(":")[0]]
        st[0] = {
            gid: {flat[i]: flat[i + 1 : i + rs] for i in range(0, len(flat), rs)}
            for gid, flat in st[0].items()
        }
    for t in doc["txs"].values():
        t[2] = [[key, lg] for key, lg, _ in t[2]]
    doc["version"] = 1
    (tmp_path / "v1.msgpack").write_bytes(msgspec.msgpack.encode(doc))
    restored = FeatureEngine(SPEC, MemoryStore.load(tmp_path / "v1.msgpack"))
    restored.apply_label(LabelEvent("t19", True, h(13.5)))
    first.apply_label(LabelEvent("t19", True, h(13.5)))
    fraud = SPEC.names.index("sender_fraud_count_1d")
    for e in events[20:]:
        a, b = restored.process_transaction(e).vector, first.process_transaction(e).vector
        assert np.array_equal(a, b, equal_nan=True)
    assert a[fraud] == 1.0  # the label reached the upgraded buckets


# --------------------------------------------------------------------------- compiled hot path


def reference_ops(
    plan: Plan, t_us: int, fields: dict[str, Any], numbers: dict[str, float]
) -> list[Any]:
    """The EntityOps of one transaction computed directly from the layout rules in
    features/ports.py, with no generated code and no cache: what the engine must produce."""
    out = []
    for ent in plan.entities:
        parts = [fields[f] for f in ent.key_fields]
        if None in parts:
            continue
        vals: list[float] = [1.0, t_us, t_us, 0.0]
        for nf in ent.numeric:
            x = numbers[nf]
            vals += [0.0, 0.0, 0.0, -math.inf] if math.isnan(x) else [1.0, x, x * x, x]
        groups, labels = [], []
        for g in ent.groups:
            b = t_us // g.width_us
            ranges = []
            for r in g.ranges:
                hi = (t_us - r.delay_us) // g.width_us - 1 if r.delay_us else b
                ranges.append([hi - r.n_buckets + 1, hi, r.want])
            groups.append([g.gid, b, min([b] + [lo for lo, _, _ in ranges]), ranges])
            if g.fraud:
                labels.append([g.gid, b])
        dists = []
        for d in ent.distincts:
            los = [(t_us // w - n + 1) * w for w, n in d.windows]
            v = fields[d.value_field]
            dists.append([d.did, "" if v is None else v, min(los), los])
        key = ent.name + ":" + "|".join(parts)
        out.append([key, ent.ttl_ms, ent.ops, vals, groups, dists, labels])
    return out


@pytest.mark.parametrize("delay", ["7d", "90m", "1s"])
def test_ops_equal_the_layout_rules_at_any_time_in_any_order(delay: str) -> None:
    # cached bucket parts must never leak across a bucket boundary, forwards or backwards in
    # time, including delays that are not whole buckets (the cache interval then has a shifted
    # edge); 150 s buckets (1h / 24) give many boundaries
    spec = FeatureSpec.from_yaml(
        f"""
entities: {{sender: [sender_account_id], pair: [sender_account_id, recipient_account_id]}}
aggregates:
  - {{entity: sender, aggs: [count, mean], field: amount_usd, windows: [1h, 1d]}}
  - {{entity: sender, aggs: [fraud_rate], windows: [1d], delay: {delay}}}
  - {{entity: sender, aggs: [fraud_count], windows: [1d, 30d]}}
  - {{entity: sender, aggs: [distinct, new], field: recipient_account_id, windows: [1h, 7d]}}
  - {{entity: pair, aggs: [count], windows: [1h]}}
"""
    )
    engine = FeatureEngine(spec, MemoryStore())
    encode = msgspec.msgpack.Encoder().encode
    rng = np.random.default_rng(7)
    t0 = int(D0.timestamp()) * 1_000_000
    offsets = np.cumsum(rng.choice([0, 1, 149_999_999, 150_000_000, 5_400_000_000], 400))
    times = [t0 + int(o) for o in offsets] + [t0 + int(o) for o in rng.permutation(offsets)]
    for i, t_us in enumerate(times):
        e = tx(f"t{i}", D0, 1.0 + i, recipient=None if i % 5 == 0 else f"r{i % 3}")
        fields = event_values(e)
        numbers = pointwise_values(e, t_us)
        ops, present = engine.plan.entity_ops(t_us, fields, numbers)
        # what a store receives: Redis gets exactly these bytes (tuples pack as arrays)
        assert encode(ops) == encode(reference_ops(engine.plan, t_us, fields, numbers)), t_us
        assert [p.name for p in present] == [op[0].split(":")[0] for op in ops]


def test_generated_code_is_kept_for_reading() -> None:
    plan = Plan(SPEC)
    sender = plan.entities[0]
    assert "values['sender_count_1d'] = " in sender.read_source and "zscore(" in sender.read_source
    assert all(p.build_source.startswith("def build(t):") for p in plan._programs)


@pytest.mark.parametrize("retries", [0, 1])
def test_a_redis_batch_whose_connection_dies_fails_cleanly_or_is_retried(
    redis_url: str, key_prefix: str, retries: int
) -> None:
    # RedisStore.execute_many writes the packed batch on a pooled connection itself. A
    # connection that dies in flight is retried by the client's retry policy (as redis-py's
    # pipeline does); without retries the batch fails with DependencyError and the next one
    # runs on a fresh connection. Either way the numbers are those of MemoryStore.
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from txguard.domain.errors import DependencyError
    from txguard.features.stores.redis import RedisStore

    events = [tx(f"k{i}", h(i * 0.3), float(i), recipient=f"r{i % 3}") for i in range(12)]
    expected = FeatureEngine(SPEC, MemoryStore()).process_many(events)
    client = redis.Redis.from_url(redis_url, socket_timeout=5, retry=Retry(NoBackoff(), retries))
    store = RedisStore(client, prefix=key_prefix)
    admin = redis.Redis.from_url(redis_url)
    pool = client.connection_pool
    checkout = pool.get_connection
    killed: list[int] = []

    def get_connection_then_kill_it(*args: Any) -> Any:
        # after the pool's health check: the batch itself meets the dead connection
        conn = checkout(*args)
        if not killed:
            conn.send_command("CLIENT", "ID")
            killed.append(admin.client_kill_filter(_id=conn.read_response()))
        return conn

    try:
        eng = FeatureEngine(SPEC, store)
        got = eng.process_many(events[:5])
        pool.get_connection = get_connection_then_kill_it  # type: ignore[method-assign]
        if retries == 0:
            with pytest.raises(DependencyError):
                eng.process_many(events[5:])
        got += eng.process_many(events[5:])
        assert killed == [1]
        for g, x in zip(got, expected, strict=True):
            assert g.first_seen and g.vector.tobytes() == x.vector.tobytes()
    finally:
        admin.close()
        store.close()


def test_cached_bucket_parts_and_handed_out_ops_are_never_mutated() -> None:
    # what makes sharing an engine between threads safe: a program's cached state is one tuple
    # replaced whole (a thread holding the old one keeps a consistent interval and lists), and
    # ops already handed out (a batch waiting for its store call) never change afterwards
    plan = Plan(SPEC)
    encode = msgspec.msgpack.Encoder().encode
    e = tx("x", D0, 5.0, recipient="r1", device="d1")
    fields = event_values(e)
    t_a = int(D0.timestamp()) * 1_000_000
    t_b = t_a + 26 * 3_600_000_000  # other buckets in every window
    ops_a, _ = plan.entity_ops(t_a, fields, pointwise_values(e, t_a))
    held = [p.cached for p in plan._programs]
    before = [encode(c) for c in held] + [encode(ops_a)]
    ops_b, _ = plan.entity_ops(t_b, fields, pointwise_values(e, t_b))
    assert [encode(c) for c in held] + [encode(ops_a)] == before
    assert all(p.cached is not c for p, c in zip(plan._programs, held, strict=True))
    assert encode(ops_b) == encode(reference_ops(plan, t_b, fields, pointwise_values(e, t_b)))
