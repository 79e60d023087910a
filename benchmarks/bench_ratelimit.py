"""Two uvicorn workers behind one Redis enforce ONE rate limit.

Starts two separate uvicorn processes of the real app (SQLite keys shared through one
TXGUARD_HOME), gives one analyst key a limit of RATE req/s with burst BURST, and fires a bounded
loopback burst of N requests alternating between the two ports from a few threads. A token
bucket allows at most ``BURST + RATE * elapsed`` of them; the rest must be 429 with Retry-After.

Phase "redis": both workers share the Redis bucket -> allowed / expected ~= 1.0.
Phase "in-process" (baseline, same run, no Redis): each worker has its own bucket, so the pair
lets through about twice the limit -> ratio ~= 2.0. That contrast is the point of the Lua script.

Before that, the in-process cost of one ``acquire`` on the Redis limiter, bare (one EVALSHA per
request) and behind ``LeasedRateLimiter`` (one EVALSHA per lease), same session, median over
repeats; and of one ``authenticate`` through the gate.

Run: .venv/bin/python benchmarks/bench_ratelimit.py   (needs Redis on 127.0.0.1:6379)
     .venv/bin/python benchmarks/bench_ratelimit.py limiter   (the per-acquire cost only)
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REDIS_URL = os.environ.get("TXGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RATE, BURST = 50.0, 100.0
N_REQUESTS = 480
THREADS = 6
REPEATS = 3
VENV_BIN = Path(sys.executable).parent


def app_factory() -> object:
    """What each uvicorn worker runs: the real app and gate, with only the gate on Redis (the
    rate limiter and replay cache; feature state stays in-process so this measures limits
    alone)."""
    import redis as redis_lib

    from txguard.api.app import create_app
    from txguard.domain.clock import SystemClock
    from txguard.security.gate import build_security_gate
    from txguard.settings import load_settings

    settings = load_settings()
    url = os.environ.get("BENCH_RL_REDIS_URL")
    client = redis_lib.Redis.from_url(url, socket_timeout=1.0) if url else None
    gate = build_security_gate(
        settings, clock=SystemClock(), redis_client=client, redis_prefix="txguard-bench:"
    )
    return create_app(settings, authorizer=gate)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_workers(home: Path, *, redis: bool) -> tuple[list[subprocess.Popen[bytes]], list[int]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TXGUARD_")}
    env["TXGUARD_HOME"] = str(home)
    env["TXGUARD_KEY_CACHE_TTL_SECONDS"] = "0.5"  # new keys visible fast
    env["TXGUARD_RATE_LIMITS"] = f'{{"analyst": [{RATE}, {BURST}], "anonymous": [1000, 1000]}}'
    if redis:
        env["BENCH_RL_REDIS_URL"] = REDIS_URL
    ports = [free_port(), free_port()]
    procs = [
        subprocess.Popen(
            [
                str(VENV_BIN / "uvicorn"),
                "bench_ratelimit:app_factory",
                "--factory",
                "--app-dir",
                str(Path(__file__).resolve().parent),
                "--host",
                "127.0.0.1",
                "--port",
                str(p),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for p in ports
    ]
    deadline = time.monotonic() + 60
    for p, proc in zip(ports, procs, strict=True):
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"worker on port {p} exited: {err[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{p}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker on port {p} did not start in 60 s")
            time.sleep(0.2)
    return procs, ports


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def new_key(home: Path) -> str:
    from txguard.domain.clock import SystemClock
    from txguard.security.keystore import open_key_store
    from txguard.security.roles import Role
    from txguard.settings import Settings

    store = open_key_store(Settings(home=home), clock=SystemClock())
    key, _, _ = store.create_key(name="bench", roles=[Role.ANALYST])
    return key


def burst(ports: list[int], key: str) -> tuple[int, int, int, float, bool]:
    """(allowed, limited, other, elapsed s, every 429 had Retry-After)."""
    counts = {"ok": 0, "429": 0, "other": 0}
    retry_after_ok = [True]
    lock = threading.Lock()
    per_thread = N_REQUESTS // THREADS

    def run(t: int) -> None:
        with httpx.Client(headers={"X-API-Key": key}, timeout=10) as client:
            for i in range(per_thread):
                port = ports[(t + i) % 2]
                r = client.get(f"http://127.0.0.1:{port}/v1/decisions/bench-{t}-{i}")
                with lock:
                    if r.status_code == 429:
                        counts["429"] += 1
                        if not r.headers.get("retry-after"):
                            retry_after_ok[0] = False
                    elif r.status_code == 404:  # authenticated, allowed, no such decision
                        counts["ok"] += 1
                    else:
                        counts["other"] += 1

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    return counts["ok"], counts["429"], counts["other"], elapsed, retry_after_ok[0]


def phase(name: str, *, redis: bool) -> float:
    home = Path(tempfile.mkdtemp(prefix=f"bench-rl-{name}-"))
    procs, ports = start_workers(home, redis=redis)
    ratios = []
    try:
        for _ in range(REPEATS):
            key = new_key(home)  # a fresh identity: a full bucket
            time.sleep(1.0)  # let both workers' key caches (TTL 0.5 s here) see the new key
            ok, limited, other, elapsed, ra = burst(ports, key)
            expected = BURST + RATE * elapsed
            ratios.append(ok / expected)
            print(
                f"  {name:<10} sent={N_REQUESTS - N_REQUESTS % THREADS} allowed={ok} 429={limited} "
                f"other={other} elapsed={elapsed:.2f}s expected_max={expected:.0f} "
                f"allowed/expected={ok / expected:.2f} retry-after-on-every-429={ra}"
            )
    finally:
        stop(procs)
    return statistics.median(ratios)


def limiter_cost() -> None:
    """Median us per ``acquire`` over repeats: the bare Redis limiter vs the same limiter behind
    token leasing, on limits that never run dry (the allowed path) and on one that is
    exhausted (the refused path of a client hammering past its limit). Bare and leased runs
    alternate, so both see the same machine load; the script calls per 1000 acquires are
    counted, since they do not depend on load."""
    import uuid

    import redis as redis_lib

    from txguard.domain.clock import SystemClock
    from txguard.security.ratelimit import (
        LeasedRateLimiter,
        RateLimiter,
        RedisRateLimiter,
        lease_size,
    )

    class Counting(RedisRateLimiter):
        calls = 0

        def acquire_many(self, key: str, n: int, *, rate: float, burst: float) -> tuple[int, float]:
            self.calls += 1
            return super().acquire_many(key, n, rate=rate, burst=burst)

    client = redis_lib.Redis.from_url(REDIS_URL)
    clock = SystemClock()
    prefix = f"txguard-bench:{uuid.uuid4().hex[:8]}:"
    bare = Counting(client, clock=clock, prefix=prefix)
    leased_inner = Counting(client, clock=clock, prefix=prefix)
    limiters: dict[str, RateLimiter] = {
        "bare": bare,
        "leased": LeasedRateLimiter(leased_inner, clock=clock),
    }
    counters = {"bare": bare, "leased": leased_inner}
    n, repeats = 2000, 9
    cases = [  # (label, rate, burst): bursts large enough that the allowed cases stay allowed
        ("allowed, rate 500/s", 500.0, 1e9),
        ("allowed, rate 1e6/s", 1e6, 1e9),
        ("refused, rate 1/s  ", 1.0, 1.0),
    ]
    pings = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            client.ping()
        pings.append((time.perf_counter() - t0) / n * 1e6)
    print(f"  baseline: Redis PING round trip {statistics.median(pings):7.1f} us")
    for label, rate, burst in cases:
        runs: dict[str, list[float]] = {"bare": [], "leased": []}
        calls = {name: c.calls for name, c in counters.items()}
        for _ in range(repeats):
            for name, lim in limiters.items():
                key = f"{name}:{label}"
                t0 = time.perf_counter()
                for _ in range(n):
                    lim.acquire(key, rate=rate, burst=burst)
                runs[name].append((time.perf_counter() - t0) / n * 1e6)
        med = {name: statistics.median(r) for name, r in runs.items()}
        per_k = {
            name: (c.calls - calls[name]) / (n * repeats) * 1000 for name, c in counters.items()
        }
        print(
            f"  acquire, {label} (lease {lease_size(rate, burst):2d}): "
            f"bare {med['bare']:7.1f} us ({per_k['bare']:4.0f} calls/1k)  "
            f"leased {med['leased']:6.2f} us ({per_k['leased']:4.1f} calls/1k)  "
            f"-> x{med['bare'] / med['leased']:.0f}"
        )
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def gate_cost() -> None:
    """In-process cost of one ``authenticate`` (API key, hot cache): in-process limiter vs the
    Redis Lua script vs a signed admin request (HMAC + replay SET NX on Redis)."""
    import redis as redis_lib

    from txguard.domain.clock import SystemClock
    from txguard.security.gate import build_security_gate
    from txguard.security.keystore import open_key_store
    from txguard.security.roles import Role
    from txguard.security.signing import sign_request
    from txguard.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="bench-gate-"))
    settings = Settings(home=home, rate_limits={"scorer": (1e9, 1e9), "admin": (1e9, 1e9)})
    clock = SystemClock()
    store = open_key_store(settings, clock=clock)
    key, secret, _ = store.create_key(name="bench", roles=[Role.SCORER, Role.ADMIN])
    assert secret is not None
    client = redis_lib.Redis.from_url(REDIS_URL)
    gates = {
        "in-process": build_security_gate(settings, clock=clock, key_store=store),
        "redis": build_security_gate(
            settings,
            clock=clock,
            key_store=store,
            redis_client=client,
            redis_prefix="txguard-bench:",
        ),
    }
    n = 1000
    body = b'{"transaction_id": "t-1"}'
    pings = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            client.ping()
        pings.append((time.perf_counter() - t0) / n * 1e6)
    ping = statistics.median(pings)
    print(f"  baseline: Redis PING round trip {ping:7.1f} us (machine load shows here)")
    for name, gate in gates.items():
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                gate.authenticate(
                    method="POST",
                    path="/v1/score",
                    headers={"x-api-key": key},
                    body=body,
                    client_ip="127.0.0.1",
                    role=Role.SCORER,
                )
            runs.append((time.perf_counter() - t0) / n * 1e6)
        signed_runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            for i in range(n // 4):
                ts = int(time.time())
                nonce = f"{name[:2]}{i}-{time.perf_counter_ns()}"
                sig = sign_request(
                    secret,
                    method="POST",
                    path="/v1/models/reload",
                    timestamp=ts,
                    body=body,
                    nonce=nonce,
                )
                gate.authenticate(
                    method="POST",
                    path="/v1/models/reload",
                    body=body,
                    client_ip="127.0.0.1",
                    headers={
                        "x-api-key": key,
                        "x-txguard-timestamp": str(ts),
                        "x-txguard-signature": sig,
                        "x-txguard-nonce": nonce,
                    },
                    role=Role.ADMIN,
                )
            signed_runs.append((time.perf_counter() - t0) / (n // 4) * 1e6)
        print(
            f"  authenticate, {name:<10} limiter: key {statistics.median(runs):7.1f} us/call; "
            f"signed admin (incl. client signing) {statistics.median(signed_runs):7.1f} us/call"
        )
    client.close()


def main() -> None:
    print("Redis rate limiter cost per acquire (median of 9 runs of 2000, alternating):")
    limiter_cost()
    if sys.argv[1:] == ["limiter"]:
        return
    print("gate cost per request (median of 5 runs):")
    gate_cost()
    print(
        f"token bucket: rate {RATE:g}/s, burst {BURST:g}; two uvicorn workers; "
        f"{N_REQUESTS} requests from {THREADS} threads alternating ports; {REPEATS} repeats"
    )
    shared = phase("redis", redis=True)
    local = phase("in-process", redis=False)
    print(
        f"median allowed/expected: redis-shared {shared:.2f}  in-process (baseline) {local:.2f}"
        f"  -> sharing cuts over-admission by x{local / shared:.2f}"
    )


if __name__ == "__main__":
    main()
