"""``txguard features``: offline feature build and spec inspection."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name="features", help="Feature specs and the offline feature build.", no_args_is_help=True
    )
    app.add_typer(group)

    @group.command("build")
    def build(
        events: Annotated[
            Path, typer.Option(help="events file (Parquet from io.events, or .jsonl)")
        ],
        out: Annotated[Path, typer.Option(help="where to write the feature table (Parquet)")],
        spec: Annotated[
            Path | None, typer.Option(help="feature spec YAML (default: built-in)")
        ] = None,
    ) -> None:
        """Replay events in time order and write one row per transaction with its features and
        training label (labels count only from the moment they were known)."""
        import time

        import pyarrow.parquet as pq

        from txguard.features.replay import build_features
        from txguard.features.spec import FeatureSpec, default_spec
        from txguard.io.events import read_events

        s = FeatureSpec.from_yaml(spec) if spec is not None else default_spec()
        started = time.perf_counter()
        table = read_events(events)
        result = build_features(table, s)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        pq.write_table(result, str(tmp), compression="zstd")
        tmp.replace(out)
        took = time.perf_counter() - started
        rate = table.num_rows / took if took > 0 else float("inf")
        typer.echo(
            f"{result.num_rows} transactions, {len(s.names)} features (spec {s.hash[:12]}) "
            f"from {table.num_rows} events in {took:.1f} s ({rate:,.0f} events/s) -> {out}"
        )

    @group.command("spec")
    def show_spec(
        spec: Annotated[
            Path | None, typer.Option(help="feature spec YAML (default: built-in)")
        ] = None,
        names: Annotated[bool, typer.Option(help="list the feature names instead")] = False,
    ) -> None:
        """Print the normalised spec (or its feature names) and its hash."""
        from txguard.features.spec import FeatureSpec, default_spec

        s = FeatureSpec.from_yaml(spec) if spec is not None else default_spec()
        if names:
            typer.echo("\n".join(s.names))
        else:
            typer.echo(f"# hash: {s.hash}\n" + s.to_yaml())
