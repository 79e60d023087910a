"""Property tests on generated event streams: bursts at one timestamp, duplicates, late labels,
verdict flips and out-of-order arrival. Offline == MemoryStore == RedisStore on replay-ordered
streams; for any arrival order the two stores agree bit for bit and duplicates change nothing."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from txguard.domain.events import LabelEvent, Recipient, Sender, TransactionEvent
from txguard.features.engine import FeatureEngine
from txguard.features.replay import build_features
from txguard.features.spec import default_spec
from txguard.features.stores.memory import MemoryStore
from txguard.features.stores.redis import RedisStore
from txguard.io.events import table_from_events

SPEC = default_spec()
T0 = datetime(2026, 1, 5, tzinfo=UTC)
_counter = itertools.count()

tx_strategy = st.tuples(
    st.sampled_from([0, 0, 0, 1, 7, 90, 600, 1440, 1440 * 8]),  # minutes since the previous event
    st.integers(0, 3),  # sender
    st.sampled_from([1.0, 2.5, 49.99, 50.0, 9999.99, 1e6]),  # amount
    st.one_of(st.none(), st.integers(0, 2)),  # terminal
    st.one_of(st.none(), st.integers(0, 3)),  # recipient
    st.one_of(st.none(), st.integers(0, 2)),  # device
    st.one_of(st.none(), st.tuples(st.sampled_from([0, 1, 30, 200]), st.booleans())),  # label
)


def build_stream(specs: list[tuple]) -> list[TransactionEvent | LabelEvent]:  # type: ignore[type-arg]
    t = T0
    keyed: list[tuple[datetime, int, int, TransactionEvent | LabelEvent]] = []
    for i, (gap, s, amount, term, rcp, dev, label) in enumerate(specs):
        t += timedelta(minutes=gap)
        e = TransactionEvent(
            f"t{i}",
            t,
            amount,
            "USD",
            Sender(f"s{s}"),
            recipient=Recipient(account_id=f"r{rcp}", country="DE") if rcp is not None else None,
            terminal_id=f"T{term}" if term is not None else None,
            device_id=f"d{dev}" if dev is not None else None,
        )
        keyed.append((t, 0, len(keyed), e))
        if label is not None:
            hours, flip = label
            known = t + timedelta(hours=hours)
            keyed.append((known, 1, len(keyed), LabelEvent(e.transaction_id, True, known)))
            if flip:
                later = known + timedelta(hours=5)
                keyed.append((later, 1, len(keyed), LabelEvent(e.transaction_id, False, later)))
    keyed.sort(key=lambda k: (k[0], k[1], k[2]))
    return [k[3] for k in keyed]


def run(
    engine: FeatureEngine, events: list[TransactionEvent | LabelEvent]
) -> list[tuple[str, bool, np.ndarray]]:
    out = []
    for e in events:
        if isinstance(e, TransactionEvent):
            r = engine.process_transaction(e)
            out.append((e.transaction_id, r.first_seen, r.vector))
        else:
            engine.apply_label(e)
    return out


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


def redis_engine(redis_url: str, key_prefix: str) -> FeatureEngine:
    return FeatureEngine(SPEC, RedisStore(url=redis_url, prefix=f"{key_prefix}{next(_counter)}:"))


SETTINGS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(st.lists(tx_strategy, min_size=1, max_size=25))
def test_in_order_streams_offline_equals_both_stores(
    redis_url: str, key_prefix: str, specs: list
) -> None:  # type: ignore[type-arg]
    events = build_stream(specs)
    offline = build_features(table_from_events(events), SPEC)
    matrix = np.column_stack([offline.column(n).to_numpy() for n in SPEC.names])
    ids = offline.column("transaction_id").to_pylist()
    for engine in (FeatureEngine(SPEC, MemoryStore()), redis_engine(redis_url, key_prefix)):
        got = {tid: v for tid, first, v in run(engine, events) if first}
        assert list(got) == ids
        for i, tid in enumerate(ids):
            assert same(matrix[i], got[tid]), (
                tid,
                [
                    SPEC.names[j]
                    for j in np.flatnonzero(
                        ~((matrix[i] == got[tid]) | (np.isnan(matrix[i]) & np.isnan(got[tid])))
                    )
                ],
            )


@SETTINGS
@given(st.lists(tx_strategy, min_size=2, max_size=20), st.data())
def test_duplicates_return_first_values_and_change_nothing(
    redis_url: str, key_prefix: str, specs: list, data: st.DataObject
) -> None:  # type: ignore[type-arg]
    events = build_stream(specs)
    txs = [e for e in events if isinstance(e, TransactionEvent)]
    dup_of = data.draw(st.lists(st.sampled_from(txs), min_size=1, max_size=4))
    with_dups = list(events)
    for d in dup_of:  # re-send later in the stream (a retry), never before the original
        pos = data.draw(st.integers(with_dups.index(d) + 1, len(with_dups)))
        with_dups.insert(pos, d)
    ref = {tid: v for tid, _, v in run(FeatureEngine(SPEC, MemoryStore()), events)}
    for engine in (FeatureEngine(SPEC, MemoryStore()), redis_engine(redis_url, key_prefix)):
        firsts: set[str] = set()
        for tid, first, v in run(engine, with_dups):
            assert first == (tid not in firsts)
            firsts.add(tid)
            assert same(v, ref[tid]), tid


@SETTINGS
@given(st.lists(tx_strategy, min_size=2, max_size=25), st.randoms(use_true_random=False))
def test_out_of_order_arrival_same_in_both_stores(
    redis_url: str, key_prefix: str, specs: list, rnd: object
) -> None:  # type: ignore[type-arg]
    events = build_stream(specs)
    shuffled = list(events)
    for i in range(len(shuffled) - 1):  # local disorder: swap neighbours at random
        if rnd.random() < 0.4:  # type: ignore[attr-defined]
            shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    mem = run(FeatureEngine(SPEC, MemoryStore()), shuffled)
    red = run(redis_engine(redis_url, key_prefix), shuffled)
    assert [(t, f) for t, f, _ in mem] == [(t, f) for t, f, _ in red]
    for (tid, _, a), (_, _, b) in zip(mem, red, strict=True):
        assert same(a, b), tid
    counts = np.array([v[SPEC.names.index("sender_count_30d")] for _, _, v in mem])
    assert (counts >= 0).all() and (counts < len(events)).all()
