"""Two commits of the scoring service under the same load, alternating: decisions/s and the CPU
per decision of every process (server, Redis, PostgreSQL, wrk, whole machine).

A shared machine drifts by tens of percent within minutes (see docs/benchmarks.md), so a figure
measured now against one from an hour ago says little; this script puts a baseline commit and
the current tree side by side in the same minutes. Each side runs from a git worktree with its
own venv (``make .venv/.synced``), on Redis + PostgreSQL, one worker, one server at a time:

    .venv/bin/python benchmarks/bench_http_ab.py [--baseline 0ec4059] [--pairs 3] [--seconds 6]
        [--fixed 450,600]

``--fixed`` adds, in each run after the saturation figure, p50/p99 latency at those fixed rates
(bench_http's open-loop generator, 4 s each: latency from the scheduled send time).

Each side gets its own PostgreSQL schema and Redis prefix (dropped at the end); every run sends
new transactions (bench_http.lua), after a 2 s warm-up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import uuid
from pathlib import Path

import uvloop
from bench_http import (
    LUA,
    REPO,
    bodies,
    free_port,
    open_loop,
    others_cpu_s,
    run_wrk,
    start,
    tree_cpu_s,
    wait_ready,
)

SETUP = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_service_support import make_key, register_model
from txguard.settings import Settings
s = Settings(home=Path({home!r}), redis_url={redis!r}, database_url={pg!r})
register_model(s)
print(make_key(s, "scorer")[0])
"""


def side(tree: Path, tmp: Path, name: str, redis_url: str, pg_dsn: str) -> dict[str, object]:
    """Model, key, schema and environment of one side (its own venv runs the set-up)."""
    import psycopg

    schema = f"txgbench_ab_{name}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(f'create schema "{schema}"')
    pg_url = f"{pg_dsn}?options=-csearch_path%3D{schema}"
    home = tmp / name
    code = SETUP.format(
        tests=str(tree / "tests" / "integration"), home=str(home), redis=redis_url, pg=pg_url
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TXGUARD_")}
    key = subprocess.run(
        [str(tree / ".venv" / "bin" / "python"), "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
    ).stdout.split()[-1]
    env |= {
        "TXGUARD_HOME": str(home),
        "TXGUARD_REDIS_URL": redis_url,
        "TXGUARD_DATABASE_URL": pg_url,
        "TXGUARD_REDIS_PREFIX": f"txgbench:{name}:{uuid.uuid4().hex[:6]}:",
        "TXGUARD_RATE_LIMITS": '{"scorer": [1000000, 1000000]}',
    }
    return {"tree": tree, "env": env, "key": key, "schema": schema, "name": name}


def run_once(
    s: dict[str, object], tmp: Path, seconds: int, redis_pid: int, rates: list[float]
) -> dict[str, float]:
    port = free_port()
    tree = s["tree"]
    assert isinstance(tree, Path)
    log = tmp / f"{s['name']}.log"
    env = s["env"]
    assert isinstance(env, dict)
    proc = start([str(tree / ".venv" / "bin" / "txguard"), "serve", "--port", str(port)], env, log)
    try:
        wait_ready(port, "/ready", proc, log)
        url = f"http://127.0.0.1:{port}/v1/score"
        key = str(s["key"])
        run_wrk(url, key=key, conns=32, seconds=2, run=f"warm-{uuid.uuid4().hex[:6]}")
        c0, o0 = tree_cpu_s(proc.pid), others_cpu_s(redis_pid)
        w = run_wrk(url, key=key, conns=32, seconds=seconds, run=f"ab-{uuid.uuid4().hex[:6]}")
        c1, o1 = tree_cpu_s(proc.pid), others_cpu_s(redis_pid)
        fixed: dict[str, float] = {}
        for rate in rates:
            f = uvloop.run(
                open_loop(
                    port,
                    "/v1/score",
                    key=key,
                    rate=rate,
                    seconds=4,
                    payloads=bodies(int(rate * 4) + 1, f"fx-{uuid.uuid4().hex[:6]}"),
                )
            )
            fixed[f"p50@{rate:g}"], fixed[f"p99@{rate:g}"] = f["p50_ms"], f["p99_ms"]
            fixed["errors"] = fixed.get("errors", 0.0) + f["errors"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    n = w["rps"] * seconds
    out = {"rps": w["rps"], "server": (c1 - c0) / n * 1e6}
    out |= {k: (o1[k] - o0[k]) / n * 1e6 for k in o1}
    out |= fixed
    out["errors"] = w["non2xx"] + fixed.get("errors", 0.0)
    return out


def _cell(v: float, col: str) -> str:
    """A latency column in ms with a decimal, the others as whole numbers."""
    return f"{v:9.2f}" if col.startswith("p") and "@" in col else f"{v:9,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--baseline",
        default="HEAD",
        help="commit to compare the working tree with (default HEAD: the uncommitted change, "
        "or with a clean tree an A/A run that shows the machine's noise)",
    )
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument(
        "--fixed", default="", help="comma-separated fixed rates (req/s) for p50/p99 latency"
    )
    args = ap.parse_args()
    rates = [float(x) for x in args.fixed.split(",") if x]

    import psycopg
    import redis

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk (make bench installs it)")
    assert LUA.exists()
    pg_dsn = os.environ.get(
        "TXGUARD_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    redis_url = os.environ.get("TXGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    tmp = Path(tempfile.mkdtemp(prefix="txg-bench-ab-"))
    base_tree = tmp / "baseline"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "-f", str(base_tree), args.baseline],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    sides: list[dict[str, object]] = []
    r = redis.Redis.from_url(redis_url)
    try:
        subprocess.run(["make", ".venv/.synced"], cwd=base_tree, check=True, capture_output=True)
        sides = [
            side(base_tree, tmp, "baseline", redis_url, pg_dsn),
            side(REPO, tmp, "current", redis_url, pg_dsn),
        ]
        redis_pid = int(r.info("server")["process_id"])
        results: dict[str, list[dict[str, float]]] = {"baseline": [], "current": []}
        for _ in range(args.pairs):
            for s in sides:
                results[str(s["name"])].append(run_once(s, tmp, args.seconds, redis_pid, rates))
        print(
            f"# bench_http_ab: {args.pairs} alternating pairs of {args.seconds} s, 32 connections, "
            f"Redis + PostgreSQL, 1 worker; baseline {args.baseline}; {os.cpu_count()} cores"
        )
        lat = [f"p{q}@{r:g}" for r in rates for q in (50, 99)]
        cols = ("rps", "server", "redis", "postgres", "wrk", "machine", *lat)
        print(f"{'side':9} " + " ".join(f"{c:>9}" for c in cols) + "   (CPU in µs per decision)")
        for name, runs in results.items():
            for run in runs:
                print(f"{name:9} " + " ".join(_cell(run[c], c) for c in cols))
        med = {
            n: {c: statistics.median(x[c] for x in runs) for c in cols}
            for n, runs in results.items()
        }
        print(
            "medians: "
            + "  ".join(
                f"{c} {_cell(med['baseline'][c], c).strip()} -> {_cell(med['current'][c], c).strip()}"
                for c in cols
            )
        )
        if lat:
            print("(p50@R / p99@R: latency in ms at R requests/s, open loop)")
        if any(x["errors"] for runs in results.values() for x in runs):
            print("WARNING: some answers were not 200")
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as c:
            for s in sides:
                c.execute(f'drop schema if exists "{s["schema"]}" cascade')
        for s in sides:
            env = s["env"]
            assert isinstance(env, dict)
            keys = list(r.scan_iter(match=env["TXGUARD_REDIS_PREFIX"] + "*", count=1000))
            for i in range(0, len(keys), 1000):
                r.delete(*keys[i : i + 1000])
        r.close()
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(base_tree)], cwd=REPO, check=False
        )
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
