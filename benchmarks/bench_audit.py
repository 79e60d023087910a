"""Audit log throughput: group commit vs one commit per record, SQLite and PostgreSQL; and the
CPU one record costs the process (caller + writer), ``append`` vs ``append_many``.

Closed-loop submitters (threads that each append and wait, like request handlers awaiting the
durable write) at 1, 8 and 64 concurrent; each configuration runs ``--seconds`` per repeat,
``--repeats`` times, and the median is printed. The baseline is the same writer with
``max_batch=1`` (one commit per record), measured in the same run.

The CPU table appends ``--cpu-records`` records built beforehand, on one event loop, with B
records in flight: ``append`` = B tasks each awaiting one record at a time, ``append_many`` =
micro-batches of B records awaited back to back (what the scoring pipeline does with the
concurrent requests it gathered); ``proc µs/rec`` is the process CPU (``time.process_time``
delta: event loop + writer thread + the database driver) per record, median of ``--repeats``.

On PostgreSQL the log commits ``append``/``append_many`` from the event loop (its loop writer);
the "thr" rows force the writer thread in the same run, and the "busy" rows hold the loop for
``BUSY_US`` of Python before each append, as scoring does (the GIL a writer thread must win
back for every batch).

    .venv/bin/python benchmarks/bench_audit.py [--seconds 0.7] [--repeats 3] [--no-postgres]
        [--baseline GIT_REF]   # also the audit code at GIT_REF, same harness, same run
        [--alternate N]        # with --baseline: N (baseline, current) rounds, process by process
        [--cpu-only] [--cpu-records 3000]
        [--paced 500,1000,1500]  # only: loop writer vs writer thread at fixed rates, busy loop

Env: TXGUARD_TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import math
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
from typing import Any

from txguard.audit.log import AuditLog, open_audit_log
from txguard.audit.records import AuditRecord

_ids = itertools.count()

# a feature vector shaped like the default spec's: 76 names of entity/aggregate/window length,
# 12 of them missing (NaN) as in real decisions — the canonical body is ~3.2 KB, as stored
_FEATURE_NAMES = [
    f"{entity}_{agg}_amount_usd_{window}"
    for entity in ("sender", "recipient", "device", "terminal")
    for agg in ("count", "sum", "mean", "max", "std", "distinct")
    for window in ("1h", "1d", "7d", "30d")
][:76]
_MISSING = frozenset(_FEATURE_NAMES[k] for k in range(0, 76, 6)[:12])


def make_record() -> AuditRecord:
    i = next(_ids)
    tid = f"bench-{i}"
    return AuditRecord(
        decision_id=uuid.uuid4().hex,
        transaction_id=tid,
        decided_at=datetime.now(UTC),
        event={
            "transaction_id": tid,
            "occurred_at": "2026-01-01T00:00:00.000000Z",
            "amount": 509,
            "currency": "USD",
            "sender": {"account_id": f"acct-{i % 1000}"},
            "recipient": {"account_id": f"r{i % 300}", "country": "FR"},
            "merchant_id": f"m{i % 50}",
            "terminal_id": f"x{i % 60}",
            "device_id": f"d{i % 1000}",
            "ip": "203.0.113.5",
        },
        features={
            name: math.nan if name in _MISSING else float(i % 97) * 1.37 + k
            for k, name in enumerate(_FEATURE_NAMES)
        },
        score=0.0123,
        risk_level="LOW",
        action="APPROVE",
        reasons=[{"kind": "feature", "code": "feature_01", "text": "x", "value": 0.2}],
        rule_hits=[],
        model_version="v20261123-160817-2e136cd3",
        policy_version="pol-758ca2429554",
        safe_mode=False,
        degraded=[],
        challenger=None,
        latency_ms=1.2,
        sender_account_id=f"acct-{i % 1000}",
    )


def writer_cpu_s() -> float:
    """CPU seconds used so far by this process's audit writer thread(s) (Linux schedstat: ns on
    CPU, user + system), found by thread name so the same code measures any version."""
    total = 0.0
    for t in threading.enumerate():
        if t.name == "audit-writer" and t.native_id is not None:
            try:
                with open(f"/proc/self/task/{t.native_id}/schedstat") as f:
                    total += int(f.read().split()[0]) / 1e9
            except OSError:
                pass
    return total


def backend_cpu_s(log: AuditLog) -> float:
    """CPU seconds used so far by the PostgreSQL backends serving the log's writer connections
    (the writer thread's and the loop writer's; ``/proc/<pid>/schedstat``: the server runs on
    this machine); NaN for other stores."""
    conns = [getattr(log.store, "_writer", None)]
    conns += [w.conn for w in getattr(log.store, "_loop_writers", ())]
    total, seen = 0.0, False
    for conn in conns:
        if conn is None or conn.closed:
            continue
        try:
            with open(f"/proc/{conn.info.backend_pid}/schedstat") as f:
                total += int(f.read().split()[0]) / 1e9
                seen = True
        except OSError:
            pass
    return total if seen else math.nan


def run(
    log: AuditLog, submitters: int, seconds: float
) -> tuple[float, int, int, list[float], float]:
    """(appends per second, appends, commits, latencies in ms, writer CPU seconds) for
    ``submitters`` closed-loop threads."""
    stop = time.perf_counter() + seconds
    counts = [0] * submitters
    lat: list[list[float]] = [[] for _ in range(submitters)]
    commits0 = log.commits
    cpu0 = writer_cpu_s()

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
    cpu = writer_cpu_s() - cpu0
    return total / elapsed, total, log.commits - commits0, [x for xs in lat for x in xs], cpu


def burn(us: float) -> None:
    """Hold the GIL for about ``us`` microseconds of Python, as scoring a decision does."""
    end = time.perf_counter() + us / 1e6
    while time.perf_counter() < end:
        pass


BUSY_US = 300.0  # the loop's own work per record in the "busy" modes


def run_asyncio(
    log: AuditLog, submitters: int, seconds: float, busy_us: float = 0.0
) -> tuple[float, int, int, list[float], float, float]:
    """Like ``run`` but as the HTTP service does it: ``submitters`` tasks on ONE event loop,
    each building a record and awaiting ``log.append`` (after ``busy_us`` of Python on the loop
    first: the decision's own work, which a writer thread must win the GIL back from). Also
    returns the whole process's CPU seconds (event loop + writer), what one service worker
    pays per decision for its audit."""
    import asyncio

    counts = [0] * submitters
    lat: list[float] = []

    async def worker(k: int, stop: float) -> None:
        n = 0
        while time.perf_counter() < stop:
            if busy_us:
                burn(busy_us)
            t = time.perf_counter()
            await log.append(make_record())
            lat.append((time.perf_counter() - t) * 1000)
            n += 1
        counts[k] = n

    async def main() -> None:
        stop = time.perf_counter() + seconds
        await asyncio.gather(*(worker(k, stop) for k in range(submitters)))

    commits0, cpu0, proc0 = log.commits, writer_cpu_s(), time.process_time()
    t0 = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - t0
    total = sum(counts)
    return (
        total / elapsed,
        total,
        log.commits - commits0,
        lat,
        writer_cpu_s() - cpu0,
        time.process_time() - proc0,
    )


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


# threads calling append_sync (one commit per record, then group commit), and asyncio tasks
# awaiting append on one event loop (group commit, as the HTTP service uses it): with the log's
# default writer (PostgreSQL: the loop writer, where the code has one) and with the writer
# thread; "busy" = BUSY_US of Python on the loop before each append
MODES = (
    ("1 per commit", 1),
    ("group commit", 256),
    ("asyncio", 256),
    ("asyncio thr", 256),
    ("busy", 256),
    ("busy thr", 256),
)


def open_log(target: str, mode: str, max_batch: int) -> AuditLog:
    """The log for ``mode``; "thr" modes force the writer thread (code without a loop writer
    has only that)."""
    import inspect

    kw: dict[str, Any] = {"max_batch": max_batch}
    if mode.endswith(" thr") and "loop_writer" in inspect.signature(open_audit_log).parameters:
        kw["loop_writer"] = False
    return open_audit_log(target, **kw)


def bench_backend(
    name: str,
    target_cm: Callable[[], AbstractContextManager[str]],
    seconds: float,
    repeats: int,
    out: dict[str, dict[str, float]],
) -> None:
    """Measure every (submitters, mode) on one backend into ``out`` (key "backend|n|mode")."""
    with target_cm() as target:
        for submitters in (1, 8, 64):
            for mode, max_batch in MODES:
                log = open_log(target, mode, max_batch)
                runner: Callable[..., tuple[Any, ...]] = run
                if mode.startswith(("asyncio", "busy")):
                    runner = functools.partial(
                        run_asyncio, busy_us=BUSY_US if mode.startswith("busy") else 0.0
                    )
                try:
                    runner(log, submitters, min(0.3, seconds))  # warm-up
                    results = [runner(log, submitters, seconds) for _ in range(repeats)]
                finally:
                    log.close()
                appends = sum(r[1] for r in results)
                commits = sum(r[2] for r in results)
                lats = sorted(x for r in results for x in r[3])
                out[f"{name}|{submitters}|{mode}"] = {
                    "rate": statistics.median(r[0] for r in results),
                    "commits": commits / repeats,
                    "per_commit": appends / max(commits, 1),
                    "cpu_us": statistics.median(r[4] / max(r[1], 1) * 1e6 for r in results),
                    "proc_us": statistics.median(
                        (r[5] if len(r) > 5 else float("nan")) / max(r[1], 1) * 1e6 for r in results
                    ),
                    "p50": lats[len(lats) // 2],
                    "p99": lats[min(len(lats) - 1, int(len(lats) * 0.99))],
                }
        with open_audit_log(target) as log:
            t = time.perf_counter()
            report = log.verify()
            took = time.perf_counter() - t
            assert report.ok, report.summary()
            out[f"{name}|verify"] = {"records": report.checked, "rate": report.checked / took}


CPU_IN_FLIGHT = (1, 8, 32)
# "thr": through the writer thread where the log would use its loop writer
CPU_MODES = ("append", "append_many", "append_many thr")


def cpu_per_record(
    log: AuditLog, mode: str, in_flight: int, n: int
) -> tuple[float, float, float, float]:
    """(process CPU µs per record, writer-thread CPU µs per record, records per commit,
    PostgreSQL backend CPU µs per record) for ``n`` prebuilt records appended with
    ``in_flight`` records in flight (see module doc)."""
    import asyncio

    recs = [make_record() for _ in range(n)]

    async def main() -> None:
        if mode == "append":
            it = iter(recs)

            async def worker() -> None:
                for r in it:
                    await log.append(r)

            await asyncio.gather(*(worker() for _ in range(in_flight)))
        else:
            for i in range(0, n, in_flight):
                await log.append_many(recs[i : i + in_flight])

    # the prebuilt records are frozen out of the collector: otherwise every full collection
    # the run triggers walks thousands of live records a service would not be holding
    gc.collect()
    gc.freeze()
    try:
        commits0, cpu0, proc0 = log.commits, writer_cpu_s(), time.process_time()
        pg0 = backend_cpu_s(log)
        asyncio.run(main())
        proc, cpu = time.process_time() - proc0, writer_cpu_s() - cpu0
        pg = backend_cpu_s(log) - pg0
    finally:
        gc.unfreeze()
    return proc / n * 1e6, cpu / n * 1e6, n / max(log.commits - commits0, 1), pg / n * 1e6


def bench_cpu(
    name: str,
    target_cm: Callable[[], AbstractContextManager[str]],
    n: int,
    repeats: int,
    out: dict[str, dict[str, float]],
) -> None:
    """Every (mode, in flight) on one backend into ``out`` (key "cpu|backend|mode|B"); a code
    version without ``append_many`` (an old baseline) measures ``append`` only."""
    with target_cm() as target:
        log = AuditLog(MemoryStore()) if target == MEMORY else open_audit_log(target)  # type: ignore[arg-type]
        # the writer thread beside the loop writer, on the same chain ("thr" rows)
        thr = open_log(target, "x thr", 256) if getattr(log, "loop_writer", False) else None
        try:
            cpu_per_record(log, "append", 8, min(n, 500))  # warm-up: connections, caches
            if thr is not None:
                cpu_per_record(thr, "append", 8, min(n, 500))
            # repeats outermost: drift in the machine's load or the disk hits every row alike
            configs = [
                (m, b)
                for m in CPU_MODES
                if hasattr(log, m.split()[0]) and (thr is not None or not m.endswith(" thr"))
                for b in CPU_IN_FLIGHT
            ]
            runs: dict[tuple[str, int], list[tuple[float, ...]]] = {c: [] for c in configs}
            for _ in range(repeats):
                for mode, b in configs:
                    which = thr if thr is not None and mode.endswith(" thr") else log
                    runs[(mode, b)].append(cpu_per_record(which, mode.split()[0], b, n))
            for (mode, b), rs in runs.items():
                out[f"cpu|{name}|{mode}|{b}"] = {
                    "proc_us": statistics.median(r[0] for r in rs),
                    "writer_us": statistics.median(r[1] for r in rs),
                    "per_commit": statistics.median(r[2] for r in rs),
                    "backend_us": statistics.median(r[3] for r in rs),
                }
        finally:
            log.close()
            if thr is not None:
                thr.close()


def print_cpu(cur: dict[str, dict[str, float]], base: dict[str, dict[str, float]] | None) -> None:
    if not any(k.startswith("cpu|") for k in cur):
        return
    print(
        "\nCPU per record: process_time delta / records (caller + writer + driver), records "
        "built beforehand, one event loop; B = records in flight; pg µs = the PostgreSQL "
        "backends of the writers' connections; thr = through the writer thread (PostgreSQL's log "
        "would use its loop writer)"
    )
    head = (
        f"{'backend':10} {'mode':>15} {'B':>3} {'recs/c':>6} {'proc µs/rec':>11} {'writer µs':>9}"
        f" {'pg µs':>6}"
    )
    if base:
        head += (
            f" | {'base recs/c':>11} {'base proc µs':>12} {'base writer':>11} {'base pg':>7}"
            f" {'proc ratio':>10} {'pg ratio':>8}"
        )
    print(head)
    nan = float("nan")
    for name in ("memory (no I/O)", *BACKENDS):
        short = name.split(" ")[0]
        for mode in CPU_MODES:
            for b in CPU_IN_FLIGHT:
                r = cur.get(f"cpu|{name}|{mode}|{b}")
                if r is None:
                    continue
                pg = r.get("backend_us", nan)
                line = (
                    f"{short:10} {mode:>15} {b:>3} {r['per_commit']:>6.1f} "
                    f"{r['proc_us']:>11.0f} {r['writer_us']:>9.0f} {pg:>6.0f}"
                )
                # the baseline's append_many row is its append (it has no append_many)
                bk = f"cpu|{name}|{mode}|{b}"
                old = (
                    (base or {}).get(bk)
                    or (base or {}).get(f"cpu|{name}|{mode.split()[0]}|{b}")
                    or (base or {}).get(f"cpu|{name}|append|{b}")
                )
                if old:
                    old_pg = old.get("backend_us", nan)
                    pg_ratio = "-" if math.isnan(pg / old_pg) else f"{pg / old_pg:.2f}x"
                    line += (
                        f" | {old['per_commit']:>11.1f} {old['proc_us']:>12.0f} "
                        f"{old['writer_us']:>11.0f} {old_pg:>7.0f} "
                        f"{r['proc_us'] / old['proc_us']:>9.2f}x {pg_ratio:>8}"
                    )
                print(line)


def print_tables(
    cur: dict[str, dict[str, float]], base: dict[str, dict[str, float]] | None
) -> None:
    for name in BACKENDS:
        if f"{name}|verify" not in cur:
            continue
        print(f"\n{name}")
        head = (
            f"{'subm':>4} {'mode':>12} {'appends/s':>9} {'vs 1/c':>6} {'recs/c':>6} "
            f"{'cpu µs/rec':>10} {'proc µs':>7} {'p50 ms':>6} {'p99 ms':>6}"
        )
        if base:
            head += (
                f" | {'base app/s':>10} {'recs/c':>6} {'cpu µs/rec':>10} {'proc µs':>7} "
                f"{'cpu ratio':>9}"
            )
        print(head)
        for submitters in (1, 8, 64):
            one = cur[f"{name}|{submitters}|1 per commit"]["rate"]
            for mode, _ in MODES:
                r = cur.get(f"{name}|{submitters}|{mode}")
                if r is None:
                    continue
                line = (
                    f"{submitters:>4} {mode:>12} {r['rate']:>9,.0f} {r['rate'] / one:>5.2f}x "
                    f"{r['per_commit']:>6.1f} {r['cpu_us']:>10.0f} {r['proc_us']:>7.0f} "
                    f"{r['p50']:>6.1f} {r['p99']:>6.1f}"
                )
                b = (base or {}).get(f"{name}|{submitters}|{mode}")
                if b:
                    line += (
                        f" | {b['rate']:>10,.0f} {b['per_commit']:>6.1f} {b['cpu_us']:>10.0f} "
                        f"{b.get('proc_us', float('nan')):>7.0f} "
                        f"{r['cpu_us'] / b['cpu_us']:>8.2f}x"
                    )
                print(line)
        v = cur[f"{name}|verify"]
        print(f"verify: {v['records']:,.0f} records ({v['rate']:,.0f} records/s)")


BACKENDS = {
    "SQLite (WAL, synchronous=FULL)": sqlite_target,
    "PostgreSQL (synchronous_commit default)": postgres_target,
}


MEMORY = "memory:"


@contextmanager
def memory_target() -> Iterator[str]:
    yield MEMORY


class MemoryStore:
    """A store that links batches and keeps nothing (no I/O): what is left in the CPU table is
    the Python of the log itself — prepare, queue, writer loop, chain linking, waking waiters."""

    def __init__(self) -> None:
        from txguard.audit.chain import GENESIS_HASH

        self.head = (0, GENESIS_HASH)

    def append_batch(self, items: Any) -> list[Any]:
        from txguard.audit.stores.base import plan_batch

        results, _, self.head = plan_batch(items, head=self.head, existing=())
        return results

    def close(self) -> None:
        pass


def run_paced(
    log: AuditLog, rate: float, seconds: float, busy_us: float
) -> tuple[list[float], list[float], int, float]:
    """Open loop on one event loop, as the service at a fixed rate: a decision arrives every
    1/``rate`` s, spends ``busy_us`` of Python on the loop, then awaits ``log.append`` of a
    record built beforehand. Returns (append latencies ms, latencies from the scheduled arrival
    ms — queueing on the loop included, commits, process CPU s)."""
    import asyncio

    n = int(rate * seconds)
    recs = [make_record() for _ in range(n)]
    audit: list[float] = []
    total: list[float] = []

    async def one(rec: AuditRecord, due: float) -> None:
        burn(busy_us)
        t = time.perf_counter()
        await log.append(rec)
        end = time.perf_counter()
        audit.append((end - t) * 1000)
        total.append((end - due) * 1000)

    async def main() -> None:
        tasks = []
        start = time.perf_counter()
        for i, rec in enumerate(recs):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(rec, due)))
        await asyncio.gather(*tasks)

    gc.collect()
    commits0, proc0 = log.commits, time.process_time()
    asyncio.run(main())
    return audit, total, log.commits - commits0, time.process_time() - proc0


def bench_paced(rates: list[float], seconds: float, repeats: int) -> None:
    """The loop writer and the writer thread on PostgreSQL, alternating run by run, at each
    fixed rate with BUSY_US of loop work per decision; prints p50/p99 of the append and of the
    whole decision (from its scheduled arrival)."""
    print(
        f"\nPostgreSQL at a fixed rate, open loop on one event loop, {BUSY_US:.0f} µs of Python "
        f"on the loop per decision before its append; {repeats} x {seconds:.1f}s per row, the two "
        "writers alternated run by run; latencies pooled over the runs"
    )
    print(
        f"{'rate/s':>6} {'writer':>7} {'recs/c':>6} {'proc µs/rec':>11} {'append p50':>10} "
        f"{'p99':>6} {'p99.9':>6} {'decision p50':>12} {'p99':>6}"
    )
    q = statistics.quantiles
    with postgres_target() as target:
        for rate in rates:
            logs = {"loop": open_log(target, "x", 256), "thread": open_log(target, "x thr", 256)}
            got: dict[str, list[tuple[list[float], list[float], int, float]]] = {
                k: [] for k in logs
            }
            try:
                for log in logs.values():
                    run_paced(log, rate, 0.5, BUSY_US)  # warm-up: connections
                for _ in range(repeats):
                    for name, log in logs.items():
                        got[name].append(run_paced(log, rate, seconds, BUSY_US))
            finally:
                for log in logs.values():
                    log.close()
            for name, runs in got.items():
                audit = [x for r in runs for x in r[0]]
                total = [x for r in runs for x in r[1]]
                n, commits = len(audit), sum(r[2] for r in runs)
                a, t = q(audit, n=1000), q(total, n=100)
                print(
                    f"{rate:>6.0f} {name:>7} {n / max(commits, 1):>6.1f} "
                    f"{sum(r[3] for r in runs) / n * 1e6:>11.0f} {statistics.median(audit):>10.2f} "
                    f"{a[989]:>6.2f} {a[998]:>6.2f} {statistics.median(total):>12.2f} {t[98]:>6.2f}"
                )


def measure(
    seconds: float, repeats: int, postgres: bool, *, cpu_records: int = 3000, cpu_only: bool = False
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    if cpu_records:
        bench_cpu("memory (no I/O)", memory_target, cpu_records, repeats, out)
    for name, target_cm in BACKENDS.items():
        if postgres or target_cm is sqlite_target:
            if not cpu_only:
                bench_backend(name, target_cm, seconds, repeats, out)
            if cpu_records:
                bench_cpu(name, target_cm, cpu_records, repeats, out)
    return out


def _emit(argv: list[str], pythonpath: str | None = None) -> dict[str, dict[str, float]]:
    """Run this script with ``--emit-json`` in a subprocess (``pythonpath``: another ``src``)."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else None
    done = subprocess.run(
        [sys.executable, __file__, *argv, "--emit-json"],
        check=True,
        capture_output=True,
        env=env,
        text=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure_baseline(ref: str, argv: list[str]) -> dict[str, dict[str, float]]:
    """Run this script against ``src/`` as of git ``ref`` (a temporary export of the tree) in a
    subprocess: the old audit code measured by the same harness, on the same machine, now."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as d:
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", ref, "src"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", d], input=archive, check=True)
        return _emit(argv, str(Path(d) / "src"))


def median_of_runs(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per configuration and figure, the median over whole runs (NaN-tolerant: a figure some
    runs lack is the median of those that have it)."""
    out: dict[str, dict[str, float]] = {}
    for key in runs[0]:
        rows = [r[key] for r in runs if key in r]
        out[key] = {
            f: statistics.median(v for r in rows if (v := r.get(f)) is not None) for f in rows[0]
        }
    return out


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
    import json
    import sys

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=0.7)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument(
        "--baseline",
        metavar="GIT_REF",
        default=None,
        help="also measure the audit code as of this git ref (e.g. 31a3594) in the same run",
    )
    ap.add_argument(
        "--cpu-records", type=int, default=3000, help="records per CPU run (0: no CPU table)"
    )
    ap.add_argument("--cpu-only", action="store_true", help="only the CPU-per-record table")
    ap.add_argument(
        "--alternate",
        type=int,
        default=1,
        metavar="N",
        help="with --baseline: N rounds of (baseline, current), each in its own process, "
        "medians over the rounds (a shared machine's load drifts between two long runs)",
    )
    ap.add_argument(
        "--paced",
        metavar="RATES",
        default=None,
        help="only the fixed-rate table: comma-separated decisions/s (e.g. 500,1000,1500), the "
        "loop writer vs the writer thread on PostgreSQL with a busy event loop",
    )
    ap.add_argument("--emit-json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.paced:
        bench_paced([float(r) for r in args.paced.split(",")], args.seconds, args.repeats)
        return
    opts = {"cpu_records": args.cpu_records, "cpu_only": args.cpu_only}
    if args.emit_json:  # the baseline subprocess
        print(json.dumps(measure(args.seconds, args.repeats, not args.no_postgres, **opts)))
        return
    argv = [f"--seconds={args.seconds}", f"--repeats={args.repeats}"]
    argv += ["--no-postgres"] if args.no_postgres else []
    argv += [f"--cpu-records={args.cpu_records}"] + (["--cpu-only"] if args.cpu_only else [])
    print(
        f"audit append throughput, closed-loop submitters, median of {args.repeats} x "
        f"{args.seconds:.1f}s; recs/c = records per commit; cpu µs/rec = audit writer thread "
        f"CPU (user+system) per record"
    )
    print(f"disk floor: 4 KiB write + fsync, median {fsync_floor_ms():.2f} ms")
    base: dict[str, dict[str, float]] | None = None
    if args.baseline and args.alternate > 1:
        base_runs, cur_runs = [], []
        for _ in range(args.alternate):
            base_runs.append(measure_baseline(args.baseline, argv))
            cur_runs.append(_emit(argv))
        base, cur = median_of_runs(base_runs), median_of_runs(cur_runs)
        print(
            f"baseline columns: the audit code at {args.baseline}; {args.alternate} rounds of "
            "(baseline, current) alternated process by process, medians over the rounds"
        )
    else:
        if args.baseline:
            base = measure_baseline(args.baseline, argv)
            print(
                f"baseline columns: the audit code at {args.baseline}, measured first in this run"
            )
        cur = measure(args.seconds, args.repeats, not args.no_postgres, **opts)
    print_tables(cur, base)
    print_cpu(cur, base)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
