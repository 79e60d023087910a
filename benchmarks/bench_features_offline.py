"""Offline feature build throughput on the whole handbook data, single process, plus a parity
check of the whole-file build against the online engine on the file's first transactions.

    .venv/bin/python benchmarks/bench_features_offline.py [--repeat 2] [--online-seconds 20]
        [--sim-customers 12000 --sim-days 60] [--only handbook|simulated]

Prints events/s of `build_features` (median of the repeats) and, as a baseline measured in the
same run, the online engine's events/s on MemoryStore (replaying the same events from the start).
Two data sets: the handbook file (card fraud: two entities, no distinct counts) and simulated
AML-style data (`txguard simulate`, ~1 M transactions by default: eight entities, fan-in,
distinct counterparties/devices/countries — the dense case for distinct counts).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from txguard.domain.events import TransactionEvent
from txguard.features.engine import FeatureEngine
from txguard.features.replay import build_features
from txguard.features.spec import FeatureSpec, default_spec
from txguard.features.stores.memory import MemoryStore
from txguard.features.testing import handbook_events
from txguard.io.events import events_from_table

DATA = Path(
    os.environ.get("TXGUARD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--online-seconds", type=float, default=20.0)
    ap.add_argument("--sim-customers", type=int, default=12000)
    ap.add_argument("--sim-days", type=int, default=60)
    ap.add_argument("--only", choices=["handbook", "simulated"])
    args = ap.parse_args()
    spec = default_spec()
    if args.only != "simulated":
        t = time.perf_counter()
        events = handbook_events(DATA / "handbook" / "transactions.parquet")
        print(f"== handbook: loaded {events.num_rows:,} events in {time.perf_counter() - t:.1f} s")
        measure(events, spec, args.repeat, args.online_seconds)
    if args.only != "handbook":
        from txguard.datasets.simulate import SimConfig, simulate

        t = time.perf_counter()
        events = simulate(SimConfig(customers=args.sim_customers, days=args.sim_days))
        print(
            f"== simulated ({args.sim_customers:,} customers, {args.sim_days} days): "
            f"{events.num_rows:,} events in {time.perf_counter() - t:.1f} s"
        )
        measure(events, spec, args.repeat, args.online_seconds)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


def measure(events: pa.Table, spec: FeatureSpec, repeat: int, online_seconds: float) -> None:
    """Offline build events/s (median of ``repeat``), the online baseline, and parity."""
    args = argparse.Namespace(repeat=repeat, online_seconds=online_seconds)

    times = []
    offline = None
    for _ in range(args.repeat):
        t = time.perf_counter()
        offline = build_features(events, spec)
        times.append(time.perf_counter() - t)
    assert offline is not None
    med = statistics.median(times)
    print(
        f"offline build: {offline.num_rows:,} transactions x {len(spec.names)} features; "
        f"runs {', '.join(f'{x:.1f}' for x in times)} s; median {med:.1f} s "
        f"= {events.num_rows / med:,.0f} events/s"
    )

    # baseline + parity: the online engine over the same file from its start, time-boxed
    eng = FeatureEngine(spec, MemoryStore())
    got: dict[str, np.ndarray] = {}
    n = 0
    t = time.perf_counter()
    deadline = t + args.online_seconds
    for e in events_from_table(events, batch_size=4096):
        if isinstance(e, TransactionEvent):
            got[e.transaction_id] = eng.process_transaction(e).vector
        else:
            eng.apply_label(e)
        n += 1
        if n % 1000 == 0 and time.perf_counter() > deadline:
            break
    online_rate = n / (time.perf_counter() - t)
    print(f"online engine (MemoryStore) baseline: {online_rate:,.0f} events/s over {n:,} events")
    print(f"offline / online speed-up: {events.num_rows / med / online_rate:,.1f}x")

    ids = offline.column("transaction_id").to_pylist()
    rows = [i for i, tid in enumerate(ids) if tid in got]
    matrix = np.column_stack([offline.column(c).to_numpy()[rows] for c in spec.names])
    on = np.vstack([got[ids[i]] for i in rows])
    same = (matrix == on) | (np.isnan(matrix) & np.isnan(on))
    print(
        f"parity whole-file offline vs online on the first {len(rows):,} transactions: "
        f"{int((~same).sum())} differing values of {same.size:,}"
    )


if __name__ == "__main__":
    main()
