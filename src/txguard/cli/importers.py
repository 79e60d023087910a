"""``txguard import {handbook,paysim,ibm-aml,csv} SRC --out events.parquet``.

Each command maps a public data set (or any CSV, through a mapping file) to canonical events and
prints a summary. Bad rows fail the import, listed by line, unless ``--skip-invalid``; either way
the full list goes to ``<out>.rejects.csv`` beside the output (see docs/importers.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from txguard.datasets.importers.common import ImportResult

Out = Annotated[Path, typer.Option("--out", "-o", help="events file to write (.parquet or .jsonl)")]
Delay = Annotated[
    str,
    typer.Option(
        "--label-delay", help="time from a transaction to its fraud label being known: 7d, 36h, 0"
    ),
]
Skip = Annotated[
    bool,
    typer.Option(
        "--skip-invalid", help="import the good rows; write the bad ones to <out>.rejects.csv"
    ),
]
Src = Annotated[Path, typer.Argument(help="source file")]


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Map public data sets or any CSV to canonical events.", no_args_is_help=True
    )

    @sub.command("handbook")
    def handbook(src: Src, out: Out, label_delay: Delay = "7d", skip_invalid: Skip = False) -> None:
        """The Fraud Detection Handbook's simulated card payments (Parquet)."""
        from txguard.datasets.importers.handbook import import_handbook

        _run(import_handbook, src, out, label_delay, skip_invalid)

    @sub.command("paysim")
    def paysim(src: Src, out: Out, label_delay: Delay = "7d", skip_invalid: Skip = False) -> None:
        """PaySim mobile-money simulation (CSV); step 0 = 2016-01-01T00:00Z, amounts as USD."""
        from txguard.datasets.importers.paysim import import_paysim

        _run(import_paysim, src, out, label_delay, skip_invalid)

    @sub.command("ibm-aml")
    def ibm_aml(src: Src, out: Out, label_delay: Delay = "7d", skip_invalid: Skip = False) -> None:
        """IBM Transactions for Anti-Money Laundering (CSV); its zone-less times are read as UTC."""
        from txguard.datasets.importers.ibm_aml import import_ibm_aml

        _run(import_ibm_aml, src, out, label_delay, skip_invalid)

    @sub.command("csv")
    def csv(
        src: Src,
        out: Out,
        mapping: Annotated[
            Path, typer.Option("--mapping", "-m", help="YAML mapping: column -> canonical field")
        ],
        label_delay: Delay = "7d",
        skip_invalid: Skip = False,
    ) -> None:
        """Any CSV, through a mapping file (examples/mappings/*.yaml)."""
        from functools import partial

        from txguard.datasets.importers.csv import import_csv
        from txguard.datasets.importers.mapping import load_mapping

        _run(
            partial(import_csv, mapping=load_mapping(mapping)), src, out, label_delay, skip_invalid
        )

    app.add_typer(sub, name="import")


def _run(importer: object, src: Path, out: Path, label_delay: str, skip_invalid: bool) -> None:
    from txguard.datasets.importers.common import (
        ImportRejectedError,
        parse_duration,
        rejects_path,
        write_rejects,
    )
    from txguard.domain.clock import SystemClock
    from txguard.domain.errors import FieldError, ValidationError
    from txguard.io.events import events_from_table, write_events, write_jsonl

    if out.resolve() == src.resolve():
        raise ValidationError([FieldError("--out", "would overwrite the source file")])
    delay = parse_duration(label_delay)
    clock = SystemClock()
    started = clock.monotonic()
    try:
        result: ImportResult = importer(src, label_delay=delay, skip_invalid=skip_invalid)  # type: ignore[operator]
    except ImportRejectedError as e:
        path = rejects_path(out)
        write_rejects(path, e.rejects)
        e.title += f" (all of them in {path})"
        raise ImportRejectedError(e.source, e.rejects, e.kind, title=e.title) from None
    if out.suffix in (".jsonl", ".ndjson"):
        out.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(out, events_from_table(result.table))
    else:
        write_events(out, result.table, sort=False)  # already in replay order
    rejects = rejects_path(out)
    if result.rejects.num_rows:
        write_rejects(rejects, result.rejects)
    elif rejects.exists():
        rejects.unlink()  # a stale list from an earlier run would mislead
    _summary(result, out, delay_text=label_delay, seconds=clock.monotonic() - started)
    if result.rejects.num_rows:
        typer.echo(f"  rejects        {rejects}")


def _summary(r: ImportResult, out: Path, *, delay_text: str, seconds: float) -> None:
    typer.echo(f"imported {r.source} -> {out}")
    typer.echo(f"  rows read      {r.source_rows:>12,}")
    typer.echo(f"  transactions   {r.transactions:>12,}")
    typer.echo(
        f"  labels         {r.labels:>12,}  ({r.fraud_labels:,} fraud; known {delay_text} after)"
    )
    typer.echo(f"  rejected rows  {r.rejected_rows:>12,}")
    typer.echo(f"  time           {seconds:>12.1f} s")
