"""HTTP throughput and latency of /v1/score, side by side with a bare FastAPI echo, in one session.

Configurations (each a real server process on loopback):
  echo     a bare FastAPI endpoint taking the same body (orjson in, orjson out) — the ceiling
  mem+sql  `txguard serve`, MemoryStore feature state + SQLite audit log (embedded default)
  rds+pg   `txguard serve`, Redis feature state + PostgreSQL audit log, 1 worker
  rds+pg×2 the same with 2 workers

For each: requests/s at saturation with wrk (a Lua script makes every request a new transaction;
median of repeated runs), then p50/p99 at a fixed rate of half that throughput with a small
open-loop generator (latency counted from the scheduled send time, so a stall is not hidden by
coordinated omission; median of repeated runs). Every decision is in the audit log (durable)
before its response. Bounded: ~2 minutes.

    .venv/bin/python benchmarks/bench_http.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import uvloop

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
LUA = REPO / "benchmarks" / "bench_http.lua"
sys.path.insert(0, str(REPO / "tests" / "integration"))

ECHO_APP = """
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI()


@app.post("/echo")
async def echo(request: Request) -> Response:
    return Response(orjson.dumps(orjson.loads(await request.body())), media_type="application/json")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, path: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            r = httpx.request(
                "GET" if path != "/echo" else "POST",
                f"http://127.0.0.1:{port}{path}",
                content=b"{}",
                timeout=1,
            )
            if r.status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server on {port} not ready:\n{log.read_text()[-3000:]}")


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(stat[11]) + int(stat[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def others_cpu_s(redis_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of what serves the service on this host: the Redis server, every
    PostgreSQL process (the backends the service and the audit writer use, the WAL writer, ...),
    the load generator (this script's finished children: wrk), and the whole machine."""
    tick = os.sysconf("SC_CLK_TCK")

    def proc_s(pid: int) -> float:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            return 0.0
        return (int(stat[11]) + int(stat[12])) / tick

    import pwd
    import resource

    try:
        pg_uid = pwd.getpwnam("postgres").pw_uid
    except KeyError:
        pg_uid = -1
    pg = 0.0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if d.stat().st_uid == pg_uid:
                    pg += proc_s(int(d.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    busy = sum(int(x) for i, x in enumerate(fields[:8]) if i not in {3, 4})  # not idle, iowait
    return {
        "redis": proc_s(redis_pid) if redis_pid else 0.0,
        "postgres": pg,
        "wrk": kids.ru_utime + kids.ru_stime,
        "machine": busy / tick,
    }


def run_wrk(url: str, *, key: str | None, conns: int, seconds: int, run: str) -> dict[str, float]:
    env = dict(os.environ, TXG_RUN=run)
    if key:
        env["TXG_KEY"] = key
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(LUA), url],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    return {
        "rps": rps,
        "non2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": 1.0 if errs else 0.0,
    }


_BUCKET = re.compile(
    r"^txguard_(stage_seconds|request_seconds|event_loop_lag_seconds)_bucket\{(.*?)\} (\S+)$", re.M
)


def scrape_stages(mport: int | None) -> dict[tuple[str, float], float]:
    """Cumulative bucket counts of the stage, request and event-loop lag histograms:
    (stage, le) → count."""
    if mport is None:
        return {}
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[tuple[str, float], float] = {}
    for m in _BUCKET.finditer(text):
        kind, labels, v = m.groups()
        le_m = re.search(r'le="([^"]+)"', labels)
        if le_m is None:
            continue
        le = le_m.group(1)
        label = re.search(r'(?:stage|route)="([^"]+)"', labels)
        if kind == "event_loop_lag_seconds":
            stage = "loop lag"  # how late a 10 ms timer ran: what every request waited too
        else:
            stage = "request" if kind == "request_seconds" else (label.group(1) if label else "?")
        if kind == "request_seconds" and label and label.group(1) != "/v1/score":
            continue
        key = (stage, float(le))
        out[key] = out.get(key, 0.0) + float(v)
    return out


def stage_quantiles(
    a: dict[tuple[str, float], float], b: dict[tuple[str, float], float]
) -> dict[str, tuple[float, float, float]]:
    """Per stage between two scrapes: (count, p50, p99) as bucket upper bounds in ms."""
    per: dict[str, list[tuple[float, float]]] = {}
    for (stage, le), v in b.items():
        per.setdefault(stage, []).append((le, v - a.get((stage, le), 0.0)))
    out: dict[str, tuple[float, float, float]] = {}
    for stage, cum in per.items():
        cum.sort()
        n = cum[-1][1]
        if n <= 0:
            continue

        def q(p: float, cum: list[tuple[float, float]] = cum, n: float = n) -> float:
            return next(le for le, c in cum if c >= p * n) * 1000

        out[stage] = (n, q(0.5), q(0.99))
    return out


def transaction(i: int, tid: str, *, senders: int = 5000, ip: str | None = None) -> dict[str, Any]:
    """The i-th transaction of the benchmark workload (what bench_http.lua sends too): senders
    cycle over ``senders`` accounts, 300 merchants (also the recipients), 700 terminals, 250 IPs
    (or all on ``ip``), amounts 5-2,505 USD, one second apart."""
    s = (i * 7) % senders
    return {
        "transaction_id": tid,
        "occurred_at": f"2026-03-01T{10 + (i // 3600) % 12:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z",
        "amount": 5 + (i * 7919) % 2500 + 0.25,
        "currency": "USD",
        "type": "card",
        "channel": "ecommerce",
        "sender": {"account_id": f"acct-{s}", "country": "FR", "kyc_level": 2},
        "recipient": {"account_id": f"m-{s % 300}", "country": "FR"},
        "merchant_id": f"m-{s % 300}",
        "terminal_id": f"term-{s % 700}",
        "device_id": f"dev-{s}",
        "ip": ip or f"203.0.113.{s % 250}",
    }


def bodies(n: int, run: str) -> list[bytes]:
    import orjson

    return [orjson.dumps(transaction(i, f"{run}-{i}")) for i in range(n)]


async def open_loop(
    port: int,
    path: str,
    *,
    key: str | None,
    rate: float,
    seconds: float,
    payloads: list[bytes],
    conns: int = 64,
) -> dict[str, float]:
    """Send at a fixed rate whatever the server does; latency from the scheduled send time."""
    n = int(rate * seconds)
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    lat: list[float] = []
    errors = 0
    auth = f"Authorization: Bearer {key}\r\n" if key else ""

    async def conn_worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                i, t_sched = item
                body = payloads[i % len(payloads)]
                writer.write(
                    (
                        f"POST {path} HTTP/1.1\r\nHost: b\r\n{auth}Content-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n"
                    ).encode()
                    + body
                )
                head = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"content-length:\s*(\d+)", head, re.I)
                await reader.readexactly(int(m.group(1)) if m else 0)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
                lat.append(time.perf_counter() - t_sched)
        finally:
            writer.close()

    workers = [asyncio.create_task(conn_worker()) for _ in range(conns)]
    t0 = time.perf_counter() + 0.05
    for i in range(n):
        t = t0 + i / rate
        delay = t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((i, t))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    lat.sort()
    return {
        "p50_ms": lat[len(lat) // 2] * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        "errors": float(errors),
        "achieved": len(lat) / (time.perf_counter() - t0),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1 repetition, shorter runs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated config names (default: all)")
    args = ap.parse_args()
    repeats = 1 if args.quick else args.repeats
    secs = 2 if args.quick else args.seconds

    import psycopg
    import redis
    from test_service_support import make_key, register_model

    from txguard.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="txg-bench-http-"))
    (tmp / "echo_app.py").write_text(ECHO_APP)
    pg_dsn = os.environ.get(
        "TXGUARD_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    redis_url = os.environ.get("TXGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    schema = f"txgbench_{uuid.uuid4().hex[:10]}"
    prefix = f"txgbench:{uuid.uuid4().hex[:10]}:"
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(f'create schema "{schema}"')
    pg_url = f"{pg_dsn}?options=-csearch_path%3D{schema}"

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("TXGUARD_")}
    base_env["TXGUARD_RATE_LIMITS"] = (
        '{"scorer": [1000000, 1000000]}'  # measure scoring, not limits
    )
    configs: dict[str, dict[str, Any]] = {}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # the model and keys, then every server started at once (start-up is slow under load)
        sa = Settings(home=tmp / "a")
        register_model(sa)
        key_a, _ = make_key(sa, "scorer")
        sb = Settings(home=tmp / "b", redis_url=redis_url, database_url=pg_url)
        register_model(sb)
        key_b, _ = make_key(sb, "scorer")
        env_a = dict(base_env, TXGUARD_HOME=str(tmp / "a"), TXGUARD_SNAPSHOT_INTERVAL_S="0")
        env_b = dict(
            base_env,
            TXGUARD_HOME=str(tmp / "b"),
            TXGUARD_REDIS_URL=redis_url,
            TXGUARD_DATABASE_URL=pg_url,
            TXGUARD_REDIS_PREFIX=prefix,
        )
        plan = [
            (
                "echo",
                [
                    str(BIN / "uvicorn"),
                    "echo_app:app",
                    "--app-dir",
                    str(tmp),
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                base_env,
                None,
                "/echo",
            ),
            ("mem+sql", [str(BIN / "txguard"), "serve"], env_a, key_a, "/v1/score"),
            ("rds+pg", [str(BIN / "txguard"), "serve"], env_b, key_b, "/v1/score"),
            (
                "rds+pg×2",
                [str(BIN / "txguard"), "serve", "--workers", "2"],
                env_b,
                key_b,
                "/v1/score",
            ),
        ]
        wanted = set(args.only.split(",")) if args.only else None
        for name, cmd, env, key, path in plan:
            if wanted is not None and name not in wanted and name != "echo":
                continue
            port = free_port()
            log = tmp / f"{name}.log"
            mport = free_port() if name != "echo" else None
            # /metrics open on its own port: the stage breakdown below
            run_env = env if mport is None else dict(env, TXGUARD_METRICS_PORT=str(mport))
            p = start([*cmd, "--port", str(port)], run_env, log)
            procs.append(p)
            configs[name] = {
                "port": port,
                "key": key,
                "path": path,
                "proc": p,
                "log": log,
                "mport": mport,
            }
        for cfg in configs.values():
            wait_ready(
                cfg["port"],
                "/ready" if cfg["path"] != "/echo" else "/echo",
                cfg["proc"],
                cfg["log"],
            )

        print(
            f"# bench_http: {repeats} run(s) of {secs} s per figure; 1 wrk thread; loopback; "
            f"{os.cpu_count()} cores (load avg {os.getloadavg()[0]:.1f})"
        )
        redis_pid = int(redis.Redis.from_url(redis_url).info("server")["process_id"])
        results: dict[str, dict[str, float]] = {}
        stages: dict[str, dict[str, tuple[float, float, float]]] = {}
        sat_stages: dict[str, dict[str, tuple[float, float, float]]] = {}
        for name, cfg in configs.items():
            url = f"http://127.0.0.1:{cfg['port']}{cfg['path']}"
            conns = 64 if "×2" in name else 32
            run_wrk(url, key=cfg["key"], conns=conns, seconds=1, run=f"warm-{name}")
            sat = []
            cpu_per_req = []
            others: list[dict[str, float]] = []
            sat_before = scrape_stages(cfg["mport"])
            for r in range(repeats):
                c0 = tree_cpu_s(cfg["proc"].pid)
                o0 = others_cpu_s(redis_pid)
                w = run_wrk(
                    url,
                    key=cfg["key"],
                    conns=conns,
                    seconds=secs,
                    run=f"sat{r}-{uuid.uuid4().hex[:6]}",
                )
                sat.append(w)
                # the server's CPU per request (all its processes; a steadier figure than
                # req/s on a shared machine): wrk's own Requests/sec times its duration
                cpu_per_req.append((tree_cpu_s(cfg["proc"].pid) - c0) / (w["rps"] * secs) * 1e6)
                o1 = others_cpu_s(redis_pid)
                others.append({k: (o1[k] - o0[k]) / (w["rps"] * secs) * 1e6 for k in o1})
            sat_stages[name] = stage_quantiles(sat_before, scrape_stages(cfg["mport"]))
            rps = statistics.median(s["rps"] for s in sat)
            non2xx = sum(s["non2xx"] for s in sat)
            rate = max(50.0, rps / 2)
            before = scrape_stages(cfg["mport"])
            fixed = [
                uvloop.run(  # the generator's own loop delays count in its latencies: the lean loop
                    open_loop(
                        cfg["port"],
                        cfg["path"],
                        key=cfg["key"],
                        rate=rate,
                        seconds=secs,
                        payloads=bodies(int(rate * secs) + 1, f"fx{r}-{uuid.uuid4().hex[:6]}"),
                    )
                )
                for r in range(repeats)
            ]
            stages[name] = stage_quantiles(before, scrape_stages(cfg["mport"]))
            results[name] = {
                "cpu_us": statistics.median(cpu_per_req),
                **{f"{k}_us": statistics.median(o[k] for o in others) for k in others[0]},
                "rps": rps,
                "non2xx": non2xx,
                "rate": rate,
                "p50": statistics.median(f["p50_ms"] for f in fixed),
                "p99": statistics.median(f["p99_ms"] for f in fixed),
                "errors": sum(f["errors"] for f in fixed),
            }
        echo = results["echo"]["rps"]
        print(
            f"{'config':10} {'req/s (sat.)':>13} {'vs echo':>8} {'fixed rate':>11} {'p50 ms':>7} "
            f"{'p99 ms':>7} {'non-200':>8} {'server CPU µs/req':>18}"
        )
        for name, r in results.items():
            print(
                f"{name:10} {r['rps']:13,.0f} {r['rps'] / echo:8.0%} {r['rate']:11,.0f} "
                f"{r['p50']:7.2f} {r['p99']:7.2f} {r['non2xx'] + r['errors']:8.0f} "
                f"{r['cpu_us']:18,.0f}"
            )
        print(
            "goals: rds+pg ≥ 1,500 decisions/s on 1 worker; p99 ≤ 10 ms at half that rate; "
            "decisions ≥ 50 % of echo"
        )
        print(
            "\nCPU per request at saturation, every process on this host (µs; machine = all "
            "cores busy, including anything else running):"
        )
        for name, r in results.items():
            parts = "  ".join(
                f"{k} {r[k + '_us']:,.0f}" for k in ("redis", "postgres", "wrk", "machine")
            )
            print(f"{name:10} server {r['cpu_us']:,.0f}  {parts}")
        for title, per_config in (
            ("at saturation (the wrk runs)", sat_stages),
            ("at the fixed rate (the open-loop runs)", stages),
        ):
            print(
                f"\nwhere the time goes {title}: server-side stage histograms, p50/p99 as the "
                "upper bound of their bucket, in ms"
            )
            for name, per in per_config.items():
                if per:
                    print(
                        f"{name:10} "
                        + "  ".join(f"{st} {q50:g}/{q99:g}" for st, (_, q50, q99) in per.items())
                    )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        with psycopg.connect(pg_dsn, autocommit=True) as c:
            c.execute(f'drop schema if exists "{schema}" cascade')
        r = redis.Redis.from_url(redis_url)
        keys = list(r.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 1000):
            r.delete(*keys[i : i + 1000])
        r.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
