"""``txguard simulate``: write a realistic population's transactions and labels to Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from txguard.cli._common import Customers, Days, FraudRate, Seed


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate(  # noqa: PLR0917 - Typer maps each parameter to an option
        out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write")],
        customers: Customers = 2000,
        days: Days = 30,
        seed: Seed = 0,
        fraud_rate: FraudRate = 0.01,
        start: Annotated[
            str, typer.Option(help="first day of the window (UTC), YYYY-MM-DD")
        ] = "2026-01-01",
        summary: Annotated[
            bool, typer.Option(help="print a summary of what was generated")
        ] = False,
    ) -> None:
        """Simulate customers, merchants, fraud and laundering typologies; write events."""
        import time
        from datetime import UTC, datetime

        from txguard.datasets.simulate import SimConfig, simulate_to_file
        from txguard.domain.errors import FieldError, ValidationError

        try:
            first = datetime.strptime(start, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise ValidationError(
                [FieldError("start", f"expected YYYY-MM-DD, got {start!r}")]
            ) from None
        cfg = SimConfig(
            customers=customers, days=days, seed=seed, fraud_rate=fraud_rate, start=first
        )
        t0 = time.perf_counter()
        table = simulate_to_file(out, cfg)
        elapsed = time.perf_counter() - t0
        import pyarrow.compute as pc

        labels = int(
            pc.sum(pc.equal(pc.cast(table.column("kind"), "string"), "label")).as_py() or 0
        )
        typer.echo(
            f"wrote {table.num_rows - labels:,} transactions and {labels:,} labels "
            f"to {out} in {elapsed:.1f}s"
        )
        if summary:
            from txguard.datasets.summary import render_summary, summarize

            render_summary(summarize(table))
