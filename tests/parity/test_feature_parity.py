"""Offline build == online engine, feature by feature, transaction by transaction.

The offline build (vectorised) and the engine on MemoryStore and on RedisStore must agree
exactly (bit for bit; NaN where NaN) — on handbook data and on a generated AML-style stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from txguard.domain.events import LabelEvent, TransactionEvent
from txguard.features.engine import FeatureEngine
from txguard.features.ports import StateStore
from txguard.features.replay import OUTPUT_PREFIX, build_features
from txguard.features.spec import FeatureSpec, default_spec
from txguard.features.stores.memory import MemoryStore
from txguard.features.stores.redis import RedisStore
from txguard.features.testing import generate_stream, handbook_events
from txguard.io.events import events_from_table, table_from_events


def online(
    spec: FeatureSpec, store: StateStore, events: Iterable[TransactionEvent | LabelEvent]
) -> dict[str, np.ndarray]:
    eng = FeatureEngine(spec, store)
    out: dict[str, np.ndarray] = {}
    for e in events:
        if isinstance(e, TransactionEvent):
            r = eng.process_transaction(e)
            if r.first_seen:
                out[e.transaction_id] = r.vector
        else:
            eng.apply_label(e)
    return out


def assert_parity(spec: FeatureSpec, offline: pa.Table, got: dict[str, np.ndarray]) -> None:
    ids = offline.column("transaction_id").to_pylist()
    assert sorted(ids) == sorted(got)
    matrix = np.column_stack([offline.column(n).to_numpy() for n in spec.names])
    on = np.vstack([got[t] for t in ids])
    same = (matrix == on) | (np.isnan(matrix) & np.isnan(on))
    if not same.all():
        bad = sorted({spec.names[j] for j in np.flatnonzero(~same.all(axis=0))})
        i, j = np.argwhere(~same)[0]
        raise AssertionError(
            f"{(~same).sum()} values differ in {bad}; first: {ids[i]} {spec.names[j]} "
            f"offline={matrix[i, j]!r} online={on[i, j]!r}"
        )


@pytest.fixture(scope="module")
def handbook(shared_data: Path) -> pa.Table:
    # whole six months of 40 customers: long enough for the 7-day-late labels to matter
    return handbook_events(shared_data / "handbook" / "transactions.parquet", customers=40)


def test_handbook_offline_equals_memory_store(handbook: pa.Table) -> None:
    spec = default_spec()
    offline = build_features(handbook, spec)
    assert offline.column_names[: len(OUTPUT_PREFIX)] == list(OUTPUT_PREFIX)
    assert offline.column_names[len(OUTPUT_PREFIX) :] == list(spec.names)
    lagged = offline.column("terminal_fraud_count_30d_lag7d").to_numpy()
    assert np.nansum(lagged) > 0  # labels really reached the terminal risk features
    assert int(np.sum(offline.column("label").to_numpy())) > 0
    assert_parity(spec, offline, online(spec, MemoryStore(), events_from_table(handbook)))


def test_handbook_offline_equals_redis_store(
    shared_data: Path, redis_url: str, key_prefix: str
) -> None:
    spec = default_spec()
    events = handbook_events(shared_data / "handbook" / "transactions.parquet", customers=8)
    store = RedisStore(url=redis_url, prefix=key_prefix)
    got = online(spec, store, events_from_table(events))
    store.close()
    assert_parity(spec, build_features(events, spec), got)


@pytest.mark.parametrize("seed", [1, 2])
def test_generated_stream_offline_equals_both_stores(
    seed: int, redis_url: str, key_prefix: str
) -> None:
    spec = default_spec()
    events = generate_stream(700, seed=seed, accounts=12)
    offline = build_features(table_from_events(events), spec)
    assert_parity(spec, offline, online(spec, MemoryStore(), events))
    store = RedisStore(url=redis_url, prefix=f"{key_prefix}{seed}:")
    assert_parity(spec, offline, online(spec, store, events))
    store.close()


def test_offline_output_carries_labels_for_training() -> None:
    events = generate_stream(300, seed=5, label_rate=0.3)
    out = build_features(table_from_events(events), default_spec())
    fraud = {e.transaction_id for e in events if isinstance(e, LabelEvent) and e.is_fraud}
    labels = dict(
        zip(out.column("transaction_id").to_pylist(), out.column("label").to_pylist(), strict=True)
    )
    assert {t for t, v in labels.items() if v == 1} == fraud
    assert out.schema.field("label").type == pa.int8()
    known = out.column("label_known_at").to_pylist()
    assert all((k is None) == (v == 0) for k, v in zip(known, labels.values(), strict=True))
    assert out.schema.metadata[b"txguard.feature_spec_hash"] == default_spec().hash.encode()


def test_simulated_aml_offline_equals_memory_store() -> None:
    # dense AML-style data (fan-in, mules, structuring, shared devices): the vectorised distinct
    # counts and new-value flags against the engine's per-event bookkeeping
    from txguard.datasets.simulate import SimConfig, simulate

    spec = default_spec()
    events = simulate(SimConfig(customers=120, days=14, seed=3, fraud_rate=0.05))
    offline = build_features(events, spec)
    fan_in = offline.column("recipient_distinct_sender_account_id_7d").to_numpy()
    assert np.nanmax(fan_in) >= 2  # the stream really exercises distinct counts
    assert np.nansum(offline.column("sender_new_device_id_90d").to_numpy()) > 0
    assert_parity(spec, offline, online(spec, MemoryStore(), events_from_table(events)))
