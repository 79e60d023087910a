"""``txguard demo`` (``make demo``): the whole main job on the embedded default, no servers.

1. simulate a population into ``$TXGUARD_HOME`` and summarise it (:func:`generate`,
   ``txguard.datasets.summary``);
2. train a model on it (time-ordered periods, label-delay gap), sign it into the registry and
   promote it;
3. warm the feature state with the days just before the streamed period (so velocity windows are
   not cold), create the API key the demo's own traffic uses, start ``txguard serve``;
4. stream the last days of simulated traffic through ``POST /v1/score`` (and the verdicts that
   become known through ``POST /v1/labels``), printing a live summary: decisions per action,
   alerts, how many were real fraud (ground truth the service never sees), p50/p99 latency;
5. leave the service up with its ``/docs`` link until Ctrl-C (``--duration`` bounds the run).

Streamed transaction ids get a per-run prefix, so a second demo against the same audit log makes
new decisions instead of idempotent replays.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from txguard.cli._common import Customers, Days, FraudRate, Seed

if TYPE_CHECKING:
    import pyarrow as pa

    from txguard.settings import Settings

DEMO_EVENTS = Path("data") / "simulated.parquet"


def generate(
    settings: Settings, *, customers: int, days: int, seed: int, fraud_rate: float
) -> tuple[Path, pa.Table]:
    """Simulate the demo population into ``<home>/data/simulated.parquet``; (path, table)."""
    from txguard.datasets.simulate import SimConfig, simulate_to_file

    path = settings.home / DEMO_EVENTS
    cfg = SimConfig(customers=customers, days=days, seed=seed, fraud_rate=fraud_rate)
    return path, simulate_to_file(path, cfg)


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(  # noqa: PLR0917 - one Typer option per parameter
        customers: Customers = 2000,
        days: Days = 30,
        seed: Seed = 7,
        fraud_rate: FraudRate = 0.01,
        duration: Annotated[
            float | None,
            typer.Option(help="stream for this many seconds, then stop (default: until Ctrl-C)"),
        ] = None,
        port: Annotated[int, typer.Option(help="service port (0: any free port)")] = 8000,
        stream_days: Annotated[float, typer.Option(help="days of traffic to stream")] = 5.0,
        warm_days: Annotated[
            float, typer.Option(help="days of history fed to the feature state first")
        ] = 2.0,
        concurrency: Annotated[int, typer.Option(min=1, max=256, help="requests in flight")] = 16,
    ) -> None:
        """Simulate, train, serve and stream traffic through the scoring API (no servers)."""
        import time

        from rich.console import Console

        from txguard.cli._common import settings as load
        from txguard.datasets.summary import render_summary, summarize
        from txguard.domain.errors import ValidationError

        if stream_days <= 0 or warm_days < 0 or stream_days + warm_days >= days:
            raise ValidationError([], "need 0 < stream-days and warm-days + stream-days < days")
        s = load()
        console = Console()
        t0 = time.perf_counter()
        path, table = generate(s, customers=customers, days=days, seed=seed, fraud_rate=fraud_rate)
        console.print(
            f"[bold]1/4[/] simulated {customers:,} customers x {days} days (seed {seed}) "
            f"in {time.perf_counter() - t0:.1f}s -> {path}"
        )
        render_summary(summarize(table), console)
        from txguard.cli._demo_run import run_demo

        run_demo(
            s,
            path,
            console=console,
            duration=duration,
            port=port,
            stream_days=stream_days,
            warm_days=warm_days,
            concurrency=concurrency,
        )
