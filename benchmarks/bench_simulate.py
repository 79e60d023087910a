"""How fast the simulator makes a million transactions.

Prints medians over repeated runs of each stage (population + behaviour + typologies as numpy
columns, assembly into the Arrow event table, replay sort + zstd Parquet write), events per
second, and the ratio against a baseline measured in the same run: building the same events one
domain object at a time (``txguard.io.events.table_from_events``), on a 20,000-event slice.

    .venv/bin/python benchmarks/bench_simulate.py [--customers 12000 --days 60 --repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from txguard.datasets.sim.assemble import to_table
from txguard.datasets.simulate import SimConfig, simulate_columns
from txguard.io.events import (
    conform,
    events_from_table,
    sort_for_replay,
    table_from_events,
    write_events,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=12_000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cfg = SimConfig(customers=args.customers, days=args.days, seed=1, fraud_rate=0.01)

    stages: dict[str, list[float]] = {"generate": [], "assemble": [], "sort+write": [], "total": []}
    n_tx = n_events = 0
    table = None
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            pop, cols = simulate_columns(cfg)
            t1 = time.perf_counter()
            table = sort_for_replay(conform(to_table(cols, pop.book)))
            t2 = time.perf_counter()
            write_events(Path(tmp) / "events.parquet", table, sort=False)
            t3 = time.perf_counter()
            stages["generate"].append(t1 - t0)
            stages["assemble"].append(t2 - t1)
            stages["sort+write"].append(t3 - t2)
            stages["total"].append(t3 - t0)
            n_tx = len(cols["t"])
            n_events = table.num_rows
        size = (Path(tmp) / "events.parquet").stat().st_size
    assert table is not None

    # baseline: the same kind of events, built one object at a time
    sample = list(events_from_table(table.slice(0, 20_000)))
    base = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        table_from_events(sample)
        base.append((time.perf_counter() - t0) / len(sample))

    med = {k: statistics.median(v) for k, v in stages.items()}
    print(
        f"simulate {args.customers:,} customers x {args.days} days: {n_tx:,} transactions, "
        f"{n_events:,} events (with labels), file {size / 1e6:.1f} MB, median of {args.repeat}"
    )
    for k, v in med.items():
        print(f"  {k:<11} {v:6.2f} s")
    rate = n_events / med["total"]
    per_obj = statistics.median(base)
    print(f"  events/s    {rate:,.0f}  (transactions/s {n_tx / med['total']:,.0f})")
    print(
        f"  baseline: one object at a time {1 / per_obj:,.0f} events/s for assembly alone; "
        f"the simulator end to end is {rate * per_obj:.1f}x faster"
    )


if __name__ == "__main__":
    main()
