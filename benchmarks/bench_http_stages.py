"""Where one decision's time goes, in-process (no HTTP): the pipeline's stage histograms and the
process CPU per decision, with and without the audit log, on memory+SQLite and Redis+PostgreSQL.

32 decisions in flight (like 32 HTTP connections), real adapters (the production wiring from
``txguard.bootstrap``), a small real LightGBM model. Medians over repeated runs.

    .venv/bin/python benchmarks/bench_http_stages.py [--repeats 3] [--n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

STAGES = ("features", "model", "rules", "policy", "explain", "audit")


class _NoAudit:
    """Stands in for the audit log to measure the pipeline without it (baseline)."""

    async def append(self, record: Any) -> Any:
        return record

    async def append_many(self, records: list[Any], *, return_exceptions: bool) -> list[Any]:
        return records

    def get_by_transaction(self, transaction_id: str) -> Any:
        return None


def _stage_sums(metrics: Any) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for metric in metrics.stage_seconds.collect():
        for s in metric.samples:
            if s.name.endswith("_sum"):
                out[(s.labels["stage"], "sum")] = s.value
            elif s.name.endswith("_count"):
                out[(s.labels["stage"], "count")] = s.value
    return out


def measure(mode: str, *, n: int, repeats: int) -> dict[str, float]:
    import orjson
    import psycopg
    from test_service_support import later, register_model, tx

    from txguard.bootstrap import build_services
    from txguard.settings import Settings

    dsn = os.environ.get("TXGUARD_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"txgbench_{uuid.uuid4().hex[:10]}"
    kw: dict[str, Any] = {}
    if mode.startswith("rds"):
        kw["redis_url"] = os.environ.get("TXGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f'create schema "{schema}"')
        kw["database_url"] = f"{dsn}?options=-csearch_path%3D{schema}"
    prefix = f"txgbench:{uuid.uuid4().hex[:10]}:"
    tmp = Path(tempfile.mkdtemp(prefix="txg-stages-"))
    s = Settings(home=tmp / "h", **kw)
    register_model(s)
    svc = build_services(s.model_copy(update={"snapshot_interval_s": 0, "redis_prefix": prefix}))
    if mode.endswith("no-audit"):
        svc.pipeline._audit = _NoAudit()  # type: ignore[assignment]
    total = n * (repeats + 1)
    bodies = [
        orjson.dumps(
            tx(
                f"t{k}",
                10 + k % 500,
                sender=f"s{k % 1000}",
                merchant_id=f"m{k % 50}",
                terminal_id=f"x{k % 70}",
                device_id=f"d{k % 1000}",
                ip="203.0.113.5",
                recipient={"account_id": f"r{k % 300}", "country": "FR"},
                at=later(k / 100),
            )
        )
        for k in range(total)
    ]

    async def run(lo: int, hi: int, conc: int = 32) -> None:
        it = iter(range(lo, hi))

        async def worker() -> None:
            for k in it:
                await svc.pipeline.score(orjson.loads(bodies[k]))

        await asyncio.gather(*(worker() for _ in range(conc)))

    rates: list[float] = []
    cpus: list[float] = []
    stage: dict[str, list[float]] = {k: [] for k in STAGES}
    try:
        asyncio.run(run(0, n))  # warm-up
        for r in range(1, repeats + 1):
            a = _stage_sums(svc.metrics)
            t, cpu = time.perf_counter(), time.process_time()
            asyncio.run(run(r * n, (r + 1) * n))
            dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
            b = _stage_sums(svc.metrics)
            rates.append(n / dt)
            cpus.append(dcpu / n * 1e6)
            for st in STAGES:
                c = b.get((st, "count"), 0) - a.get((st, "count"), 0)
                if c:
                    stage[st].append((b[(st, "sum")] - a.get((st, "sum"), 0)) / c * 1e6)
    finally:
        svc.close()
        if "database_url" in kw:
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute(f'drop schema if exists "{schema}" cascade')
        if "redis_url" in kw:
            import redis

            cl = redis.Redis.from_url(kw["redis_url"])
            keys = list(cl.scan_iter(match=prefix + "*", count=1000))
            for i in range(0, len(keys), 1000):
                cl.delete(*keys[i : i + 1000])
            cl.close()
    out = {"rate": statistics.median(rates), "cpu_us": statistics.median(cpus)}
    for st, v in stage.items():
        if v:
            out[st] = statistics.median(v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=1500)
    args = ap.parse_args()
    from txguard.settings import Settings

    sys.setswitchinterval(Settings().gil_switch_interval_s)  # as in a server process
    print(
        f"# bench_http_stages: {args.n} decisions x {args.repeats} runs, 32 in flight, medians; "
        f"{os.cpu_count()} cores (load avg {os.getloadavg()[0]:.1f}); stage = wall time per decision"
    )
    head = f"{'config':18} {'dec/s':>7} {'CPU µs/dec':>11}" + "".join(f" {s:>9}" for s in STAGES)
    print(head)
    for mode in ("mem+sql no-audit", "mem+sql", "rds+pg no-audit", "rds+pg"):
        r = measure(mode, n=args.n, repeats=args.repeats)
        cells = "".join(f" {r[s]:9.0f}" if s in r else f" {'-':>9}" for s in STAGES)
        print(f"{mode:18} {r['rate']:7.0f} {r['cpu_us']:11.0f}{cells}")
    print("stage columns: µs of wall time per decision (audit = waiting for the group commit)")


if __name__ == "__main__":
    main()
