"""``txguard evaluate``: a version's metrics on a period (default: its own test period), as JSON
and an offline HTML model card."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer


def parse_when(text: str | None, name: str) -> datetime | None:
    """``YYYY-MM-DD`` (midnight UTC) or an RFC 3339 timestamp with a zone."""
    from txguard.domain.errors import FieldError, ValidationError
    from txguard.domain.events import parse_timestamp

    if text is None:
        return None
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        return parse_timestamp(text)
    except ValueError as e:
        raise ValidationError([FieldError(name, str(e))]) from None


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate(  # noqa: PLR0917 - typer options
        events: Annotated[Path, typer.Option(help="events file (Parquet or .jsonl)")],
        model: Annotated[str, typer.Option(help="version id, or 'production'")] = "production",
        registry: Annotated[
            Path | None, typer.Option(help="registry directory (default: $TXGUARD_HOME/registry)")
        ] = None,
        start: Annotated[
            str | None, typer.Option("--from", help="period start (default: the test period's)")
        ] = None,
        end: Annotated[str | None, typer.Option("--to", help="period end, exclusive")] = None,
        out: Annotated[Path | None, typer.Option(help="write the JSON here too")] = None,
        card: Annotated[Path | None, typer.Option(help="write the HTML model card here")] = None,
    ) -> None:
        """AUC ROC, AP, CP@100, recall at 1 % / 5 % FPR, alerts/day and precision at the
        policy's thresholds."""
        import orjson

        from txguard.cli._common import settings
        from txguard.io.events import read_events
        from txguard.model.backtest import evaluate_period
        from txguard.model.card import booster_importance, render_card
        from txguard.model.pipeline import _jsonable
        from txguard.model.registry import Registry
        from txguard.model.train import _days, _labels

        s = settings()
        reg = Registry(registry or s.registry_dir, s.signing_key.get_secret_value())
        bundle = reg.load_production() if model == "production" else reg.load(model)
        lo, hi = parse_when(start, "from"), parse_when(end, "to")
        if lo is None and hi is None:
            test = bundle.meta.get("periods", {}).get("test")
            if test:
                lo, hi = (datetime.fromisoformat(test[0]), datetime.fromisoformat(test[1]))
        metrics, part, scores = evaluate_period(bundle, read_events(events), lo, hi)
        metrics["period"] = [lo.isoformat() if lo else None, hi.isoformat() if hi else None]
        text = orjson.dumps(_jsonable(metrics), option=orjson.OPT_INDENT_2).decode()
        if out:
            out.write_text(text + "\n")
        if card:
            card.write_text(
                render_card(
                    title=f"txguard model {bundle.version}",
                    scores=scores,
                    labels=_labels(part),
                    days=_days(part),
                    importance=booster_importance(bundle.booster),
                    policy=bundle.policy,
                    metrics=metrics,
                    meta={"period": metrics["period"], "events": str(events)},
                )
            )
        typer.echo(text)
