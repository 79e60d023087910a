"""``txguard demo`` (``make demo``): simulate a population into ``$TXGUARD_HOME`` and show what
was generated. Provisional: the scoring demo extends it (``--duration``) and reuses
:func:`generate` and ``txguard.datasets.summary``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

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
    def demo(
        customers: Annotated[int, typer.Option(help="customers to simulate")] = 2000,
        days: Annotated[int, typer.Option(help="days to simulate")] = 30,
        seed: Annotated[int, typer.Option(help="random seed")] = 7,
        fraud_rate: Annotated[
            float, typer.Option("--fraud-rate", help="share of fraudulent transactions")
        ] = 0.01,
    ) -> None:
        """Simulate a population (embedded default, no servers) and summarise it."""
        import time

        from rich.console import Console

        from txguard.cli._common import settings
        from txguard.datasets.summary import render_summary, summarize

        console = Console()
        t0 = time.perf_counter()
        path, table = generate(
            settings(), customers=customers, days=days, seed=seed, fraud_rate=fraud_rate
        )
        console.print(
            f"simulated {customers:,} customers x {days} days (seed {seed}) "
            f"in {time.perf_counter() - t0:.1f}s -> {path}"
        )
        render_summary(summarize(table), console)
