"""``txguard benchmark handbook``: the handbook's evaluation protocol with txguard's model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import pyarrow as pa

bench_app = typer.Typer(help="Reproduce published benchmarks.", no_args_is_help=True)


def load_handbook_events(path: Path) -> pa.Table:
    """Canonical events of a file in the handbook's raw layout (Parquet, or CSV converted to it)
    through the importer every txguard path uses, fraud labels known 7 days later (the book's
    delay period)."""
    import tempfile

    import polars as pl

    from txguard.datasets.importers import import_handbook
    from txguard.domain.errors import FieldError, ValidationError
    from txguard.model.benchmark_handbook import LABEL_DELAY

    p = Path(path)
    if not p.is_file():
        raise ValidationError([FieldError("data", f"no such file: {p}")])
    if p.suffix.lower() != ".csv":
        return import_handbook(p, label_delay=LABEL_DELAY).table
    try:
        df = pl.read_csv(p, try_parse_dates=True)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise ValidationError([FieldError("data", f"not a readable CSV file: {e}")]) from None
    with tempfile.TemporaryDirectory() as tmp:
        converted = Path(tmp) / f"{p.stem}.parquet"
        df.write_parquet(converted)
        return import_handbook(converted, label_delay=LABEL_DELAY).table


@bench_app.command("handbook")
def handbook(
    data: Annotated[
        Path, typer.Option(help="file in the handbook's raw layout (Parquet or CSV)")
    ] = Path("../shared/data/handbook/transactions.parquet"),
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    quick: Annotated[
        bool, typer.Option(help="one parameter set instead of the validation search")
    ] = False,
    anomaly: Annotated[
        bool, typer.Option(help="add an Isolation Forest score as a feature")
    ] = True,
) -> None:
    """Chapter-5 protocol (prequential, 4 weekly test folds, 7-day label delay, parameters
    chosen on validation folds); AUC ROC / AP / CP@100 beside the book's published numbers."""
    import orjson

    from txguard.model.benchmark_handbook import BOOK, DEFAULT_GRID, run
    from txguard.model.train import StageTimer

    grid = DEFAULT_GRID[1:2] if quick else DEFAULT_GRID
    timer = StageTimer()
    say = None if json_out else (lambda m: typer.echo(m, err=True))
    with timer.stage("import"):
        events = load_handbook_events(data)
    res = run(events, grid=grid, anomaly=anomaly, timer=timer, progress=say)
    if json_out:
        typer.echo(orjson.dumps(res, option=orjson.OPT_SERIALIZE_NUMPY).decode())
        return
    typer.echo(f"\n{'model':<28}{'AUC ROC':>9}{'AP':>8}{'CP@100':>9}")
    for name, m in BOOK.items():
        typer.echo(
            f"{'book: ' + name:<28}{m['auc_roc']:9.3f}{m['average_precision']:8.3f}"
            f"{m['cp_at_100']:9.3f}"
        )
    typer.echo(
        f"{'txguard (LightGBM)':<28}{res['auc_roc']:9.3f}{res['average_precision']:8.3f}"
        f"{res['cp_at_100']:9.3f}"
    )
    typer.echo("\nper test fold:")
    for f in res["folds"]:
        typer.echo(
            f"  {f['assess']}  AUC {f['auc_roc']:.3f}  AP {f['average_precision']:.3f}  "
            f"CP@100 {f['cp_at_100']:.3f}"
        )
    typer.echo(f"chosen on validation: {res['chosen']}")
    typer.echo("time:\n" + timer.report())


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="benchmark")
