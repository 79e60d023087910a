"""How fast the importers are, against baselines measured in the same run.

    .venv/bin/python benchmarks/bench_import.py [--repeat 3]

Prints medians over ``--repeat`` runs of:
- ``import_handbook`` on the 1.75 M-row handbook file (vectorised, polars), against
  (a) just reading the source Parquet (the I/O floor) and (b) the row-by-row path a naive
  importer would take: ``parse_transaction`` per row plus ``table_from_events``, timed on the
  first 20,000 rows and scaled to rows per second;
- ``write_events`` of the imported table (zstd Parquet);
- ``import_csv`` on a generated 200,000-row CSV with a mapping, against ``polars.read_csv`` of the
  same file as text (the parse floor);
- ``import_paysim`` on the 10,000-row PaySim sample.
Bounded to well under two minutes on the shared 2-core machines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from txguard.datasets.importers import import_csv, import_handbook, import_paysim
from txguard.datasets.importers.mapping import parse_mapping
from txguard.domain.events import parse_transaction
from txguard.io.events import table_from_events, write_events

DATA = Path(
    os.environ.get("TXGUARD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
ROWWISE_ROWS = 20_000
CSV_ROWS = 200_000


def median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def rowwise_handbook(src: Path) -> int:
    """The naive path: one validated domain object per row, then a table."""
    rows = pl.read_parquet(src).head(ROWWISE_ROWS).to_dicts()
    events = []
    for r in rows:
        events.append(
            parse_transaction(
                {
                    "transaction_id": f"hb-{r['TRANSACTION_ID']}",
                    "occurred_at": r["TX_DATETIME"].replace(tzinfo=UTC).isoformat(),
                    "amount": r["TX_AMOUNT"],
                    "currency": "USD",
                    "amount_usd": r["TX_AMOUNT"],
                    "type": "card",
                    "channel": "pos",
                    "sender": {"account_id": str(r["CUSTOMER_ID"])},
                    "terminal_id": str(r["TERMINAL_ID"]),
                }
            )
        )
    return table_from_events(events).num_rows


def make_csv(path: Path, n: int) -> None:
    rng = np.random.default_rng(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    secs = np.sort(rng.integers(0, 30 * 86400, n))
    pl.DataFrame(
        {
            "id": [f"t{i}" for i in range(n)],
            "ts": [(start + timedelta(seconds=int(s))).isoformat() for s in secs],
            "amt": np.round(rng.lognormal(3.5, 1.0, n), 2),
            "ccy": rng.choice(["EUR", "USD", "GBP"], n),
            "cust": [f"c{x}" for x in rng.integers(0, 20_000, n)],
            "merchant": [f"m{x}" for x in rng.integers(0, 2_000, n)],
            "fraud": rng.choice(["0", "1"], n, p=[0.99, 0.01]),
        }
    ).write_csv(path)


MAPPING = parse_mapping(
    {
        "columns": {
            "id": "transaction_id",
            "ts": "occurred_at",
            "amt": "amount",
            "ccy": "currency",
            "cust": "sender_account_id",
            "merchant": "merchant_id",
        },
        "constants": {"type": "card"},
        "label": {"column": "fraud", "true_values": ["1"]},
    }
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    repeat = ap.parse_args().repeat
    handbook = DATA / "handbook" / "transactions.parquet"
    paysim = DATA / "paysim" / "sample_10k.csv"
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f}; medians of {repeat} runs")

    t_read, df = median_time(lambda: pl.read_parquet(handbook), repeat)
    n = df.height
    t_imp, result = median_time(lambda: import_handbook(handbook), repeat)
    t_row, _ = median_time(lambda: rowwise_handbook(handbook), 1)
    row_rate = ROWWISE_ROWS / t_row
    print(f"handbook: {n:,} rows, {result.transactions:,} transactions, {result.labels:,} labels")
    print(f"  read source Parquet (floor)    {t_read:7.2f} s  {n / t_read:12,.0f} rows/s")
    print(f"  import_handbook (vectorised)   {t_imp:7.2f} s  {n / t_imp:12,.0f} rows/s")
    print(
        f"  row-by-row parse (on {ROWWISE_ROWS:,})  {n / row_rate:7.2f} s* {row_rate:12,.0f} rows/s"
        f"   (*scaled to {n:,} rows)"
    )
    print(f"  vectorised / row-by-row speed-up: {row_rate and (n / t_imp) / row_rate:.0f}x")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "h.parquet"
        t_write, _ = median_time(lambda: write_events(out, result.table, sort=False), repeat)
        size = out.stat().st_size / 1e6
        print(f"  write_events (zstd Parquet)    {t_write:7.2f} s  {size:.1f} MB")

        src = Path(tmp) / "gen.csv"
        make_csv(src, CSV_ROWS)
        t_csv_read, _ = median_time(lambda: pl.read_csv(src, infer_schema=False), repeat)
        t_csv, r = median_time(lambda: import_csv(src, mapping=MAPPING), repeat)
        print(f"csv: generated {CSV_ROWS:,} rows, {r.labels:,} labels")
        print(f"  polars.read_csv as text (floor) {t_csv_read:6.2f} s")
        print(
            f"  import_csv with mapping        {t_csv:7.2f} s  {CSV_ROWS / t_csv:12,.0f} rows/s"
            f"  ({t_csv / t_csv_read:.1f}x the floor)"
        )

    t_ps, r = median_time(lambda: import_paysim(paysim), repeat)
    print(f"paysim: {r.transactions:,} transactions, {r.labels:,} labels in {t_ps * 1000:.0f} ms")


if __name__ == "__main__":
    main()
