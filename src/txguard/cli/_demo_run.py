"""The scoring part of ``txguard demo``: train, warm the state, serve, stream, summarise live.

Kept apart from ``cli/demo.py`` (which the simulator owns the first step of) so each stays small.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from txguard.domain.errors import ConfigurationError
from txguard.settings import Settings

LABEL_DELAY = timedelta(days=7)


@dataclass
class Stats:
    """What the live summary shows. ``fraud`` is simulator ground truth the service never sees."""

    started: float = field(default_factory=time.perf_counter)
    actions: Counter[str] = field(default_factory=Counter)
    frauds: int = 0
    frauds_flagged: int = 0
    alerts_fraud: int = 0
    labels: int = 0
    errors: int = 0
    safe_mode: bool = False
    latency: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    server_ms: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    last_alert: str = ""

    def add(self, d: dict[str, Any], *, is_fraud: bool, seconds: float) -> None:
        action = d["action"]
        self.actions[action] += 1
        flagged = action != "APPROVE"
        self.frauds += is_fraud
        self.frauds_flagged += is_fraud and flagged
        self.alerts_fraud += is_fraud and flagged
        self.safe_mode = self.safe_mode or d["safe_mode"]
        self.latency.append(seconds * 1000)
        self.server_ms.append(d["latency_ms"])
        if flagged:
            words = "; ".join(r["text"] for r in d["reasons"][:3])
            self.last_alert = f"{d['transaction_id']} {action} score {d['score']:.3f}: {words}"


def _pct(values: deque[float], q: float) -> str:
    if not values:
        return "-"
    v = sorted(values)
    return f"{v[min(len(v) - 1, int(len(v) * q))]:.1f}"


def render(st: Stats, *, title: str) -> Table:
    n = sum(st.actions.values())
    alerts = st.actions["REVIEW"] + st.actions["REJECT"]
    elapsed = time.perf_counter() - st.started
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value", justify="right")
    t.add_row("decisions", f"{n:,}  ({n / max(elapsed, 1e-9):,.0f}/s)")
    for a in ("APPROVE", "REVIEW", "REJECT"):
        t.add_row(f"  {a}", f"{st.actions[a]:,}  ({st.actions[a] / max(n, 1):.1%})")
    t.add_row("alerts (REVIEW + REJECT)", f"{alerts:,}")
    t.add_row(
        "  of which real fraud", f"{st.alerts_fraud:,}  ({st.alerts_fraud / max(alerts, 1):.0%})"
    )
    t.add_row("frauds flagged", f"{st.frauds_flagged:,} of {st.frauds:,}")
    t.add_row(
        "latency p50 / p99 (client, ms)", f"{_pct(st.latency, 0.5)} / {_pct(st.latency, 0.99)}"
    )
    t.add_row(
        "latency p50 / p99 (server, ms)", f"{_pct(st.server_ms, 0.5)} / {_pct(st.server_ms, 0.99)}"
    )
    t.add_row("labels sent", f"{st.labels:,}")
    t.add_row("errors", f"{st.errors:,}")
    t.add_row("safe mode", "YES" if st.safe_mode else "no")
    if st.last_alert:
        t.add_row("latest alert", st.last_alert[:110])
    return t


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train(settings: Settings, table: Any, console: Console) -> Any:
    from txguard.features.spec import default_spec
    from txguard.model.pipeline import train_events
    from txguard.model.registry import Registry
    from txguard.model.train import StageTimer

    reg = Registry(settings.registry_dir, settings.signing_key.get_secret_value())
    t0 = time.perf_counter()
    run = train_events(
        table, default_spec(), reg, label_delay=LABEL_DELAY, promote=True, timer=StageTimer()
    )
    m = run.result.metrics
    shown = ", ".join(
        f"{k} {m[k]:.3f}"
        for k in ("auc_roc", "average_precision", "cp_at_100")
        if isinstance(m.get(k), int | float)
    )
    console.print(
        f"[bold]2/4[/] trained, signed and promoted model [cyan]{run.version}[/] in "
        f"{time.perf_counter() - t0:.0f}s (test period: {shown or 'see txguard models show'})"
    )
    return reg.load(run.version)


def split(table: Any, *, stream_days: float, warm_days: float) -> tuple[list[Any], list[Any]]:
    """(warm-up events, streamed events), each in replay order."""
    import pyarrow.compute as pc

    from txguard.domain.events import TransactionEvent
    from txguard.io.events import events_from_table

    tmax = pc.max(table["occurred_at"]).as_py()
    cut = tmax - timedelta(days=stream_days)
    warm_from = cut - timedelta(days=warm_days)
    warm: list[Any] = []
    stream: list[Any] = []
    for e in events_from_table(table):
        at = e.occurred_at if isinstance(e, TransactionEvent) else e.known_at
        if at < warm_from:
            continue
        (warm if at < cut else stream).append(e)
    return warm, stream


def warm_state(settings: Settings, bundle: Any, events: list[Any]) -> int:
    """Feed the days before the stream into a MemoryStore and snapshot it where the service
    restores its state from."""
    from txguard.domain.events import TransactionEvent
    from txguard.features.engine import FeatureEngine
    from txguard.features.stores.memory import MemoryStore

    store = MemoryStore()
    engine = FeatureEngine(bundle.spec, store)
    for e in events:
        if isinstance(e, TransactionEvent):
            engine.process_transaction(e)
        else:
            engine.apply_label(e)
    store.snapshot(settings.state_snapshot_path)
    return len(events)


def start_service(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    """``txguard serve`` on the demo's home; the example rules (when run from the repository)
    unless TXGUARD_RULES_PATH says otherwise."""
    env = dict(os.environ, TXGUARD_HOME=str(settings.home.resolve()), TXGUARD_PORT=str(port))
    rules = Path("examples") / "rules.yaml"
    if "TXGUARD_RULES_PATH" not in env and rules.exists():
        env["TXGUARD_RULES_PATH"] = str(rules.resolve())
    log = (settings.home / "demo-server.log").open("wb")
    cmd = [sys.executable, "-m", "txguard.cli.main", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


async def wait_ready(proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=1) as c:
        for _ in range(600):
            if proc.poll() is not None:
                raise ConfigurationError(f"the service exited: {log.read_text()[-800:]}")
            try:
                if (await c.get("/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise ConfigurationError("the service did not become ready in 120 s")


async def stream(
    base: str,
    key: str,
    events: list[Any],
    *,
    concurrency: int,
    duration: float | None,
    console: Console,
) -> Stats:
    import httpx
    import orjson

    from txguard.domain.events import TransactionEvent, label_to_dict, transaction_to_dict

    run = f"demo{int(time.time()) % 100000:05d}-"
    streamed = {e.transaction_id for e in events if isinstance(e, TransactionEvent)}
    st = Stats()
    it = iter(events)
    stop = False

    async def worker(c: httpx.AsyncClient) -> None:
        for e in it:
            if stop:
                return
            try:
                if isinstance(e, TransactionEvent):
                    body = transaction_to_dict(e)
                    body.pop("metadata", None)  # ground truth stays with the demo
                    body["transaction_id"] = run + e.transaction_id
                    t = time.perf_counter()
                    r = await c.post("/v1/score", content=orjson.dumps(body))
                    if r.status_code == 200:
                        is_fraud = bool(e.metadata.get("typology"))
                        st.add(r.json(), is_fraud=is_fraud, seconds=time.perf_counter() - t)
                    else:
                        st.errors += 1
                else:
                    lab = label_to_dict(e)
                    if e.transaction_id in streamed:
                        lab["transaction_id"] = run + e.transaction_id
                    r = await c.post("/v1/labels", content=orjson.dumps({"labels": [lab]}))
                    st.labels += r.status_code == 200
                    st.errors += r.status_code != 200
            except httpx.HTTPError:
                st.errors += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as c:
        tasks = [asyncio.create_task(worker(c)) for _ in range(concurrency)]
        title = f"txguard live — {base}/docs"
        with Live(render(st, title=title), console=console, refresh_per_second=4) as live:
            while not all(t.done() for t in tasks):
                await asyncio.sleep(0.25)
                live.update(render(st, title=title))
                if duration is not None and time.perf_counter() - st.started >= duration:
                    stop = True
            await asyncio.gather(*tasks)
            live.update(render(st, title=title))
    return st


def run_demo(
    settings: Settings,
    path: Path,
    *,
    console: Console,
    duration: float | None,
    port: int,
    stream_days: float,
    warm_days: float,
    concurrency: int,
) -> None:
    from txguard.domain.clock import SystemClock
    from txguard.domain.errors import ValidationError
    from txguard.io.events import read_events
    from txguard.security.keys import parse_roles
    from txguard.security.keystore import open_key_store

    table = read_events(path)
    try:
        bundle = train(settings, table, console)
    except ValidationError as e:
        # a population too short to train on is still a valid simulate-and-summarise request
        console.print(
            f"[yellow]not training, serving or streaming:[/] {e}\n"
            "simulate more days (the default 30 works) for the full demo"
        )
        return
    warm, streamed = split(table, stream_days=stream_days, warm_days=warm_days)
    t0 = time.perf_counter()
    n = warm_state(settings, bundle, warm)
    key, _, _ = open_key_store(settings, clock=SystemClock()).create_key(
        name="demo-traffic", roles=parse_roles(["scorer", "analyst", "auditor"])
    )
    port = port or _free_port()
    base = f"http://127.0.0.1:{port}"
    console.print(
        f"[bold]3/4[/] warmed the feature state with {n:,} events ({warm_days:g} days) in "
        f"{time.perf_counter() - t0:.0f}s; starting the service on {base} ..."
    )
    proc = start_service(settings, port)
    try:
        asyncio.run(wait_ready(proc, base, settings.home / "demo-server.log"))
        console.print(
            f"[bold]4/4[/] streaming {stream_days:g} days of traffic "
            f"({len(streamed):,} events) through {base}/v1/score"
            + (f" for {duration:g}s" if duration is not None else "")
        )
        st = asyncio.run(
            stream(base, key, streamed, concurrency=concurrency, duration=duration, console=console)
        )
        console.print()
        console.print(
            f"done: {sum(st.actions.values()):,} decisions, all in the audit log "
            f"(check: txguard audit verify). API docs: [link]{base}/docs[/]  "
            f"demo API key (scorer, analyst, auditor): {key}"
        )
        if duration is None:
            console.print("the service stays up — Ctrl-C to stop")
            proc.wait()
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
