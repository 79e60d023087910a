"""Online feature latency per transaction (read + update) through MemoryStore and RedisStore,
round trips per transaction, and Redis memory per entity.

    .venv/bin/python benchmarks/bench_features_online.py [--customers 60] [--redis redis://127.0.0.1:6379/0]

Replays the handbook's six months for the first ``--customers`` customers (default spec; state
grows to its steady size, 30-day windows full) through each store; latency is measured around
``process_transaction`` (feature computation included), p50/p99 over all transactions after a
warm-up. Baseline in the same run: ``pointwise`` (no store at all).

    .venv/bin/python benchmarks/bench_features_online.py --many [--batch 32] [--repeats 5]

Client CPU of ``process_many`` (what the scoring service runs: concurrent requests share one
store call): the same replay cut into batches of ``--batch`` transactions (a label closes the
open batch first, so every batch is what the service could have sent), CPU time of this process
(``time.process_time``: the Redis server's work is not in it, MemoryStore's own work is) per
transaction after the warm-up; median of ``--repeats`` fresh replays. ``--batch 1`` measures
``process_transaction`` (one store call per transaction) the same way. To compare with an older
commit without touching the working tree: ``git worktree add --detach /tmp/base <commit>`` and
run this file with ``PYTHONPATH=/tmp/base/src``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import redis

from txguard.domain.events import TransactionEvent
from txguard.features.engine import FeatureEngine
from txguard.features.spec import default_spec
from txguard.features.stores.memory import MemoryStore
from txguard.features.stores.redis import RedisStore
from txguard.features.testing import handbook_events
from txguard.io.events import events_from_table

DATA = Path(
    os.environ.get("TXGUARD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


class CountingRedis(redis.Redis):  # type: ignore[type-arg]
    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **k)
        self.calls = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.calls += 1
        return super().execute_command(*args, **options)


def replay(engine: FeatureEngine, events: list[Any], warmup: int) -> np.ndarray:
    lat = []
    seen = 0
    perf = time.perf_counter
    for e in events:
        if isinstance(e, TransactionEvent):
            t = perf()
            engine.process_transaction(e)
            dt = perf() - t
            seen += 1
            if seen > warmup:
                lat.append(dt)
        else:
            engine.apply_label(e)
    return np.array(lat) * 1e6


def replay_many(engine: FeatureEngine, events: list[Any], warmup: int, batch: int) -> float:
    """Client CPU µs per transaction of ``process_many`` over the transactions after ``warmup``."""
    cpu = time.process_time
    pending: list[TransactionEvent] = []
    seen = 0
    spent = 0.0
    counted = 0

    def flush() -> None:
        nonlocal spent, counted
        if not pending:
            return
        t = cpu()
        if batch == 1:
            engine.process_transaction(pending[0])
        else:
            engine.process_many(pending)
        dt = cpu() - t
        if seen - len(pending) >= warmup:
            spent += dt
            counted += len(pending)
        pending.clear()

    for e in events:
        if isinstance(e, TransactionEvent):
            pending.append(e)
            seen += 1
            if len(pending) == batch:
                flush()
        else:
            flush()
            engine.apply_label(e)
    flush()
    return spent / max(counted, 1) * 1e6


def many(args: argparse.Namespace, events: list[Any], warmup: int) -> None:
    spec = default_spec()
    for name in ("MemoryStore", "RedisStore"):
        runs = []
        for _ in range(args.repeats):
            if name == "MemoryStore":
                runs.append(
                    replay_many(FeatureEngine(spec, MemoryStore()), events, warmup, args.batch)
                )
                continue
            prefix = f"txgbench:{uuid.uuid4().hex[:8]}:"
            # a generous timeout: a shared server under load must not fail the run
            store = RedisStore(redis.Redis.from_url(args.redis, socket_timeout=10), prefix=prefix)
            try:
                runs.append(replay_many(FeatureEngine(spec, store), events, warmup, args.batch))
            finally:
                keys = list(store.client.scan_iter(match=prefix + "*", count=1000))
                for i in range(0, len(keys), 1000):
                    store.client.delete(*keys[i : i + 1000])
                store.close()
        print(
            f"{'process_many' if args.batch > 1 else 'process_transaction'} {name:<12} batch {args.batch}: client CPU per transaction median "
            f"{statistics.median(runs):6.1f} us  (runs: {', '.join(f'{r:.1f}' for r in runs)})"
        )


def show(name: str, lat: np.ndarray) -> float:
    p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
    print(
        f"{name:<28} n={len(lat):>6,}  p50 {p50:8.1f} us  p99 {p99:8.1f} us  mean {lat.mean():8.1f} us"
    )
    return float(p50)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=60)
    ap.add_argument(
        "--redis", default=os.environ.get("TXGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    ap.add_argument("--many", action="store_true", help="process_many client CPU only")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    spec = default_spec()
    events = list(
        events_from_table(
            handbook_events(DATA / "handbook" / "transactions.parquet", customers=args.customers)
        )
    )
    txs = [e for e in events if isinstance(e, TransactionEvent)]
    warmup = len(txs) // 4  # the first ~6 weeks fill the windows
    if args.many:
        many(args, events, warmup)
        return

    eng = FeatureEngine(spec, MemoryStore())
    lat = []
    for e in txs[warmup:]:
        t = time.perf_counter()
        eng.pointwise(e)
        lat.append(time.perf_counter() - t)
    base = show("pointwise only (no store)", np.array(lat) * 1e6)
    mem = show("MemoryStore", replay(FeatureEngine(spec, MemoryStore()), events, warmup))

    prefix = f"txgbench:{uuid.uuid4().hex[:8]}:"
    client = CountingRedis.from_url(args.redis)
    store = RedisStore(client, prefix=prefix)
    try:
        eng = FeatureEngine(spec, store)
        eng.process_transaction(txs[0])  # script load
        client.calls = 0
        lat_r = replay(FeatureEngine(spec, store), events[1:], warmup)
        n_tx = len(txs) - 1
        n_labels = len(events) - len(txs)
        red = show("RedisStore (loopback)", lat_r)
        print(
            f"RedisStore round trips: {client.calls:,} commands for {n_tx:,} transactions and "
            f"{n_labels:,} labels (labels take 2 each) -> "
            f"{(client.calls - 2 * n_labels) / n_tx:.3f} per transaction"
        )
        # store-only cost: time EVALSHA alone by replaying already-recorded ids (idempotent path)
        lat_dup = []
        for e in txs[warmup : warmup + 3000]:
            t = time.perf_counter()
            eng.process_transaction(e)
            lat_dup.append(time.perf_counter() - t)
        show("RedisStore repeat (idempotent)", np.array(lat_dup) * 1e6)
        sizes: dict[str, list[int]] = {}
        for kind in ("sender", "terminal"):
            keys = list(client.scan_iter(match=f"{prefix}e:{kind}:*", count=1000))[:500]
            sizes[kind] = [int(client.memory_usage(k) or 0) for k in keys]
        tx_keys = list(client.scan_iter(match=f"{prefix}tx:*", count=1000))[:500]
        sizes["transaction record"] = [int(client.memory_usage(k) or 0) for k in tx_keys]
        for kind, v in sizes.items():
            if v:
                print(
                    f"MEMORY USAGE {kind:<19} n={len(v):>4}  median {statistics.median(v):7,.0f} B  "
                    f"max {max(v):7,} B"
                )
        print(
            f"ratios: MemoryStore p50 / pointwise p50 = {mem / base:.1f}x; "
            f"RedisStore p50 / MemoryStore p50 = {red / mem:.2f}x"
        )
    finally:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
        client.close()


if __name__ == "__main__":
    main()
