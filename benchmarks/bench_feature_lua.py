"""Redis CPU per transaction of the feature script (``UPDATE_LUA``), this tree against a baseline
commit's script in the same session, and Redis memory per entity.

    .venv/bin/python benchmarks/bench_feature_lua.py [--redis redis://127.0.0.1:6379/0]
        [--warm 20000] [--measure 2000] [--repeats 5] [--baseline <commit>]

Two workloads, default spec, transactions one second apart (~6 h of event time):

* ``realistic``: 5,000 senders, 300 recipients/merchants, 700 terminals, 250 IPs (what a
  wrk-driven HTTP benchmark sends);
* ``hot-ip``: the same but 1,000 senders that all share one IP (its distinct-senders set holds
  ~1,000 values).

Each workload is replayed into two key prefixes, one through this tree's ``RedisStore`` and one
through the baseline's script (loaded with ``git show <commit>:src/txguard/features/stores/
redis.py``, sent with that commit's payload: ``[t, ttl, ops]``), ``--warm`` transactions first.
Then ``--repeats`` rounds of ``--measure`` further transactions, old and new alternating (the
same transactions to both), batches of 64 (``process_many``, as the service sends them). Server
time per EVALSHA is the delta of ``INFO commandstats`` (``cmdstat_evalsha``): it counts every
client's EVALSHA, so run it on a Redis nobody else is using (``redis-server --port 6391
--save ''`` and ``--redis redis://127.0.0.1:6391/0``) for clean figures. On such a private
server the server's main-thread CPU time per EVALSHA (``INFO cpu``; every command counts, so
only there) is printed too: unlike commandstats it does not grow when the server waits for a
core on a busy machine. Printed: the median and range per store, and the ratio of medians.

Deterministic (instructions, not time — what to use on a shared, noisy machine): run the
private server under callgrind with instrumentation off, e.g.
``valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg/out.%p
redis-server --port 6392 --save ''`` and pass ``--callgrind /tmp/cg/out.<pid>`` (the pid is in
the file name pattern): instrumentation is switched on around each measured round and the
server's instructions per EVALSHA are printed too. Warm-up runs ~10x slower under valgrind. Memory: ``MEMORY USAGE`` of every entity's state
(for this tree including its distinct sets' sorted sets) after the last round, median and max
per entity type. Keys are deleted at the end.
"""

from __future__ import annotations

import argparse
import ast
import glob
import hashlib
import os
import re
import statistics
import subprocess
import uuid
from pathlib import Path
from typing import Any

import msgspec
import redis
from bench_http import transaction  # the same workload as the HTTP benchmark

from txguard.domain.events import TransactionEvent, parse_transaction
from txguard.features.engine import FeatureEngine
from txguard.features.ports import EntityOp
from txguard.features.spec import default_spec
from txguard.features.stores.redis import RedisStore

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "3497676de0321fe7bd316725d42bb3324287dd38"  # layout 2: msgpack state, nested payload
_encode = msgspec.msgpack.Encoder()


def event(i: int, *, hot: bool) -> TransactionEvent:
    # bench_http's workload; the hot one: 1,000 senders all on one IP
    if hot:
        return parse_transaction(transaction(i, f"w{i}", senders=1000, ip="203.0.113.5"))
    return parse_transaction(transaction(i, f"w{i}"))


def baseline_script(commit: str) -> str:
    source = subprocess.run(
        ["git", "show", f"{commit}:src/txguard/features/stores/redis.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "UPDATE_LUA":
            return str(ast.literal_eval(node.value))
    raise SystemExit(f"no UPDATE_LUA in {commit}")


class BaselineStore(RedisStore):
    """This tree's client with the baseline's script and payload (``[t, ttl, ops]``)."""

    def __init__(self, client: redis.Redis[bytes], *, prefix: str, script: str) -> None:
        super().__init__(client, prefix=prefix)
        self._script = script
        self._update_sha = hashlib.sha1(script.encode()).hexdigest()
        client.execute_command("SCRIPT", "LOAD", script)

    def _command(
        self, tx_id: str, t_us: int, tx_ttl_ms: int, ops: list[EntityOp]
    ) -> tuple[Any, ...]:
        keys = [self._tx_prefix + tx_id] + [self._entity_prefix + op[0] for op in ops]
        payload = _encode.encode([t_us, tx_ttl_ms, ops])
        return ("EVALSHA", self._update_sha, len(keys), *keys, payload)

    def memory_usage(self, key: str) -> int:
        return int(self.client.memory_usage(self.entity_key(key)) or 0)


def evalsha_usec(client: redis.Redis[bytes]) -> tuple[int, int, float]:
    """EVALSHA calls, their µs (commandstats: wall time inside the command) and the server's
    main-thread CPU µs (every command of every client)."""
    st = client.info("commandstats").get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    cpu = client.info("cpu")
    used = cpu["used_cpu_user_main_thread"] + cpu["used_cpu_sys_main_thread"]
    return int(st["calls"]), int(st["usec"]), used * 1e6


def feed(engine: FeatureEngine, events: list[TransactionEvent]) -> None:
    for k in range(0, len(events), 64):
        engine.process_many(events[k : k + 64])


class Callgrind:
    """Instructions executed by a redis-server run under callgrind (``out`` = its
    ``--callgrind-out-file`` with the pid filled in): counters are dumped (and so zeroed)
    before a round, collected while instrumentation is on, dumped and read after it."""

    def __init__(self, out: str) -> None:
        self.out, self.pid = out, out.rsplit(".", 1)[-1]

    def _control(self, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, self.pid], check=True, capture_output=True)

    def _dump(self) -> int:
        before = set(glob.glob(self.out + "*"))
        self._control("-d")
        new = set(glob.glob(self.out + "*")) - before
        newest = max(new or before, key=os.path.getmtime)
        with open(newest) as f:
            found = re.search(r"^totals:\s+(\d+)", f.read(), re.M)
        return int(found.group(1)) if found else 0

    def start(self) -> None:
        self._dump()
        self._control("-i", "on")

    def stop(self) -> int:
        self._control("-i", "off")
        return self._dump()


def timed(
    engine: FeatureEngine, events: list[TransactionEvent], cg: Callgrind | None
) -> tuple[float, float, float]:
    """(commandstats µs, server CPU µs, server instructions) per EVALSHA while ``events`` are
    fed (instructions 0 without callgrind)."""
    client = engine.store.client  # type: ignore[attr-defined]
    c0 = evalsha_usec(client)
    if cg:
        cg.start()
    feed(engine, events)
    ins = cg.stop() if cg else 0
    c1 = evalsha_usec(client)
    calls = max(1, c1[0] - c0[0])
    return (c1[1] - c0[1]) / calls, (c1[2] - c0[2]) / calls, ins / calls


def entity_keys(store: RedisStore) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    head = len(store.prefix) + 2  # "{prefix}e:"
    for k in store.client.scan_iter(match=f"{store.prefix}e:*", count=1000):
        key = k.decode()[head:]
        out.setdefault(key.split(":", 1)[0], []).append(key)
    return out


def run(client: redis.Redis[bytes], args: argparse.Namespace, *, hot: bool, old_lua: str) -> None:
    name = "hot-ip" if hot else "realistic"
    tag = uuid.uuid4().hex[:8]
    spec = default_spec()
    new = RedisStore(client, prefix=f"txgluabench:{tag}:new:")
    old = BaselineStore(client, prefix=f"txgluabench:{tag}:old:", script=old_lua)
    engines = {"baseline": FeatureEngine(spec, old), "this tree": FeatureEngine(spec, new)}
    n, m = args.warm, args.measure
    try:
        warm = [event(i, hot=hot) for i in range(n)]
        for eng in engines.values():
            feed(eng, warm)
        cg = Callgrind(args.callgrind) if args.callgrind else None
        times: dict[str, list[tuple[float, float, float]]] = {k: [] for k in engines}
        for r in range(args.repeats):
            batch = [event(i, hot=hot) for i in range(n + r * m, n + (r + 1) * m)]
            order = list(engines) if r % 2 == 0 else list(reversed(engines))
            for k in order:
                times[k].append(timed(engines[k], batch, cg))
        print(f"{name}: µs per EVALSHA, median (min–max) of {args.repeats} x {m}")
        metrics = ["commandstats µs", "server CPU µs (private server only)"]
        if cg:
            metrics.append("server instructions, thousands (callgrind)")
        for i, what in enumerate(metrics):
            print(f"  {what}")
            scale = 1000 if i == 2 else 1
            for k, pairs in times.items():
                xs = [x[i] / scale for x in pairs]
                print(f"    {k:10} {statistics.median(xs):6.0f}  ({min(xs):.0f}–{max(xs):.0f})")
            old_x, new_x = ([x[i] for x in times[k]] for k in engines)
            ratio = statistics.median(old_x) / statistics.median(new_x)
            print(f"    ratio baseline / this tree: {ratio:.2f}x")
        print(f"{name}: MEMORY USAGE per entity, bytes: median / max (baseline → this tree)")
        for ent, keys in sorted(entity_keys(new).items()):
            sample = sorted(keys)[:: max(1, len(keys) // 400)]  # at most ~400 per entity type
            a = sorted(old.memory_usage(k) for k in sample)
            b = sorted(new.memory_usage(k) for k in sample)
            print(
                f"  {ent:10} n={len(keys):5}  {a[len(a) // 2]:6} / {a[-1]:6}"
                f"  →  {b[len(b) // 2]:6} / {b[-1]:6}"
            )
    finally:
        for prefix in (new.prefix, old.prefix):
            found: list[Any] = list(client.scan_iter(match=prefix + "*", count=1000))
            for i in range(0, len(found), 1000):
                client.delete(*found[i : i + 1000])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--warm", type=int, default=20_000)
    ap.add_argument("--measure", type=int, default=2_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline", default=BASELINE, help="commit whose UPDATE_LUA is the baseline")
    ap.add_argument("--workload", choices=["realistic", "hot-ip", "both"], default="both")
    ap.add_argument("--callgrind", help="the server's callgrind output file (see above)")
    args = ap.parse_args()
    if args.warm + args.measure * args.repeats > 12 * 3600:
        raise SystemExit("at most 12 h of one-second transactions (the clock wraps)")
    client: redis.Redis[bytes] = redis.Redis.from_url(args.redis)
    old_lua = baseline_script(args.baseline)
    for hot in (False, True):
        if args.workload in ("both", "hot-ip" if hot else "realistic"):
            run(client, args, hot=hot, old_lua=old_lua)


if __name__ == "__main__":
    main()
