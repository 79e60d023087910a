"""Audit log throughput: group commit vs one commit per record, SQLite and PostgreSQL.

Closed-loop submitters (threads that each append and wait, like request handlers awaiting the
durable write) at 1, 8 and 64 concurrent; each configuration runs ``--seconds`` per repeat,
``--repeats`` times, and the median is printed. The baseline is the same writer with
``max_batch=1`` (one commit per record), measured in the same run.

    .venv/bin/python benchmarks/bench_audit.py [--seconds 1.0] [--repeats 3] [--no-postgres]

Env: TXGUARD_TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from txguard.audit.log import AuditLog, open_audit_log
from txguard.audit.records import AuditRecord

_ids = itertools.count()


def make_record() -> AuditRecord:
    i = next(_ids)
    tid = f"bench-{i}"
    return AuditRecord(
        decision_id=uuid.uuid4().hex,
        transaction_id=tid,
        decided_at=datetime.now(UTC),
        event={
            "transaction_id": tid,
            "occurred_at": "2026-01-01T00:00:00Z",
            "amount": 125.5,
            "currency": "EUR",
            "sender": {"account_id": f"acct-{i % 1000}", "country": "DE"},
            "type": "card",
            "channel": "ecommerce",
        },
        features={f"feature_{k:02d}": float(k) * 1.5 for k in range(40)},
        score=0.0123,
        risk_level="LOW",
        action="APPROVE",
        reasons=[{"kind": "feature", "code": "feature_01", "text": "x", "value": 0.2}],
        rule_hits=[],
        model_version="m-1",
        policy_version="p-1",
        safe_mode=False,
        degraded=[],
        challenger={"score": 0.02, "version": "m-2"},
        latency_ms=1.2,
        sender_account_id=f"acct-{i % 1000}",
    )


def run(log: AuditLog, submitters: int, seconds: float) -> tuple[float, int, int, list[float]]:
    """(appends per second, appends, commits, latencies in ms) for ``submitters`` closed-loop
    threads."""
    stop = time.perf_counter() + seconds
    counts = [0] * submitters
    lat: list[list[float]] = [[] for _ in range(submitters)]
    commits0 = log.commits

    def worker(k: int) -> None:
        n = 0
        mine = lat[k]
        while time.perf_counter() < stop:
            t = time.perf_counter()
            log.append_sync(make_record(), timeout=30)
            mine.append((time.perf_counter() - t) * 1000)
            n += 1
        counts[k] = n

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(submitters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    total = sum(counts)
    return total / elapsed, total, log.commits - commits0, [x for xs in lat for x in xs]


@contextmanager
def sqlite_target() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as d:
        yield str(Path(d) / "audit.sqlite3")


@contextmanager
def postgres_target() -> Iterator[str]:
    import psycopg

    dsn = os.environ.get("TXGUARD_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"txgbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        sep = "&" if "?" in dsn else "?"
        yield f"{dsn}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def bench_backend(
    name: str, target_cm: Callable[[], AbstractContextManager[str]], seconds: float, repeats: int
) -> None:
    print(f"\n{name}")
    print(
        f"{'submitters':>10} {'mode':>14} {'appends/s':>10} {'commits':>8} "
        f"{'recs/commit':>11} {'vs 1/commit':>11} {'p50 ms':>7} {'p99 ms':>7}"
    )
    with target_cm() as target:
        for submitters in (1, 8, 64):
            base_rate = 0.0
            for mode, max_batch in (("1 per commit", 1), ("group commit", 256)):
                log = open_audit_log(target, max_batch=max_batch)
                try:
                    run(log, submitters, min(0.3, seconds))  # warm-up
                    results = [run(log, submitters, seconds) for _ in range(repeats)]
                finally:
                    log.close()
                rate = statistics.median(r[0] for r in results)
                appends = sum(r[1] for r in results)
                commits = sum(r[2] for r in results)
                lats = sorted(x for r in results for x in r[3])
                p50, p99 = lats[len(lats) // 2], lats[min(len(lats) - 1, int(len(lats) * 0.99))]
                if max_batch == 1:
                    base_rate = rate
                ratio = rate / base_rate if base_rate else float("nan")
                print(
                    f"{submitters:>10} {mode:>14} {rate:>10,.0f} {commits // repeats:>8} "
                    f"{appends / max(commits, 1):>11.1f} {ratio:>10.2f}x {p50:>7.1f} {p99:>7.1f}"
                )
        with open_audit_log(target) as log:
            t = time.perf_counter()
            report = log.verify()
            took = time.perf_counter() - t
            assert report.ok, report.summary()
            print(
                f"verify: {report.checked:,} records in {took:.2f}s "
                f"({report.checked / took:,.0f} records/s)"
            )


def fsync_floor_ms(samples: int = 50) -> float:
    """Median time of a 4 KiB write + fsync on this disk: the floor under any durable commit."""
    with tempfile.TemporaryDirectory() as d:
        fd = os.open(Path(d) / "probe", os.O_WRONLY | os.O_CREAT)
        try:
            times = []
            for _ in range(samples):
                t = time.perf_counter()
                os.write(fd, b"x" * 4096)
                os.fsync(fd)
                times.append((time.perf_counter() - t) * 1000)
        finally:
            os.close(fd)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    print(
        f"audit append throughput, closed-loop submitters, median of {args.repeats} x "
        f"{args.seconds:.1f}s (commits = per repeat)"
    )
    print(f"disk floor: 4 KiB write + fsync, median {fsync_floor_ms():.2f} ms")
    bench_backend("SQLite (WAL, synchronous=FULL)", sqlite_target, args.seconds, args.repeats)
    if not args.no_postgres:
        bench_backend(
            "PostgreSQL (synchronous_commit default)", postgres_target, args.seconds, args.repeats
        )


if __name__ == "__main__":
    main()
