"""``txguard backtest``: replay a period through a model version and its policy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("backtest")
    def backtest(  # noqa: PLR0917 - typer options
        events: Annotated[Path, typer.Option(help="events file (Parquet or .jsonl)")],
        model: Annotated[str, typer.Option(help="version id, or 'production'")] = "production",
        start: Annotated[str | None, typer.Option("--from", help="period start")] = None,
        end: Annotated[str | None, typer.Option("--to", help="period end, exclusive")] = None,
        registry: Annotated[
            Path | None, typer.Option(help="registry directory (default: $TXGUARD_HOME/registry)")
        ] = None,
        k: Annotated[int, typer.Option(min=1, help="k of Card Precision@k")] = 100,
        json_out: Annotated[bool, typer.Option("--json", help="print JSON only")] = False,
    ) -> None:
        """Alerts per day, precision, recall, CP@k and fraud amount caught."""
        import orjson

        from txguard.cli._common import settings
        from txguard.cli.evaluate import parse_when
        from txguard.io.events import read_events
        from txguard.model.backtest import backtest as run
        from txguard.model.pipeline import _jsonable
        from txguard.model.registry import Registry

        s = settings()
        reg = Registry(registry or s.registry_dir, s.signing_key.get_secret_value())
        bundle = reg.load_production() if model == "production" else reg.load(model)
        res = run(
            bundle, read_events(events), parse_when(start, "from"), parse_when(end, "to"), k=k
        )
        if json_out:
            typer.echo(orjson.dumps(_jsonable(res), option=orjson.OPT_INDENT_2).decode())
            return

        def pct(v: float | None) -> str:
            return "-" if v is None else f"{100 * v:.1f} %"

        typer.echo(f"model {res['model_version']}  policy {res['policy_version']}")
        typer.echo(
            f"{res['transactions']:,} transactions over {res['days']} days: {res['alerts']:,} "
            f"alerts ({res['alerts_per_day']:.1f}/day; {res['reviews']} review, "
            f"{res['rejects']} reject)"
        )
        typer.echo(
            f"precision {pct(res['precision'])}  recall {pct(res['recall'])}  "
            f"CP@{k} {res[f'cp_at_{k}']:.3f}  fraud amount caught "
            f"{res['fraud_amount_caught']:,.2f} of {res['fraud_amount']:,.2f} "
            f"({pct(res['amount_recall'])})"
        )
