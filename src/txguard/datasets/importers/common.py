"""What every importer shares: the result type, the bad-row policy, labels, durations.

An importer turns a source file into the canonical event table (``txguard.io.events``) column-wise
with polars, never row by row: the handbook file has 1.75 M rows. Each importer declares its
checks as :class:`Check` (a boolean "this row is bad" expression and a reason expression);
:func:`split_rejects` evaluates them all at once and returns the good rows and one reject per bad
field, each with the source line (or row) number.

Bad-row policy (never silent): by default one bad row fails the whole import, and the error lists
every bad row (the first 20 in the message, the full list in ``rejects``); with
``skip_invalid=True`` the good rows are imported and the bad ones come back in
:attr:`ImportResult.rejects` (the CLI writes them to ``<out>.rejects.csv``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from txguard.domain.errors import FieldError, ValidationError
from txguard.domain.events import MAX_AMOUNT
from txguard.io.events import KIND_LABEL, KIND_TRANSACTION, conform

DEFAULT_LABEL_DELAY = timedelta(days=7)
LINE = "_line"  # the column holding each row's source line (CSV) or row (Parquet) number
SHOWN_REJECTS = 20
MAX_FIELD_ERRORS = 1000

REJECTS_SCHEMA = pa.schema(
    [
        pa.field("line", pa.int64(), nullable=False),
        pa.field("field", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True, slots=True)
class Check:
    """One rule over a whole frame: ``bad`` is true on rows that break it; ``reason`` (a string
    expression, evaluated on those rows only) says why; ``field`` is named in the report."""

    field: str
    bad: pl.Expr
    reason: pl.Expr


@dataclass(frozen=True, slots=True)
class ImportResult:
    """An imported data set. ``table`` conforms to ``EVENT_SCHEMA`` and is in replay order;
    ``rejects`` has columns ``line``, ``field``, ``reason`` (one row per bad field, by line)."""

    source: str
    table: pa.Table
    source_rows: int
    transactions: int
    labels: int
    fraud_labels: int
    rejects: pa.Table = field(default_factory=REJECTS_SCHEMA.empty_table)

    @property
    def rejected_rows(self) -> int:
        """How many source rows were left out (a row with two bad fields counts once)."""
        if self.rejects.num_rows == 0:
            return 0
        return int(pc.count_distinct(self.rejects.column("line")).as_py())

    def summary(self) -> str:
        return (
            f"{self.source}: {self.source_rows:,} rows -> {self.transactions:,} transactions, "
            f"{self.labels:,} labels ({self.fraud_labels:,} fraud), "
            f"{self.rejected_rows:,} rows rejected"
        )


class ImportRejectedError(ValidationError):
    """Rows that cannot be mapped, with the default policy (fail the whole import).

    The message lists the first 20 bad fields and the counts; ``rejects`` holds all of them and
    ``errors`` the first 1,000 as FieldErrors (a file where every one of millions of rows is bad
    should not need millions of Python objects to say so)."""

    def __init__(
        self, source: str, rejects: pa.Table, kind: str = "line", title: str | None = None
    ) -> None:
        self.source = source
        self.rejects = rejects
        self.kind = kind
        self.bad_rows = int(pc.count_distinct(rejects.column("line")).as_py())
        head = rejects.slice(0, MAX_FIELD_ERRORS).to_pydict()
        errors = [
            FieldError(f, r, row=n)
            for n, f, r in zip(head["line"], head["field"], head["reason"], strict=True)
        ]
        super().__init__(errors, title or f"{source}: rows that cannot be imported")

    def _message(self) -> str:
        shown = "\n".join(
            f"  {self.kind} {e.row}: {e.loc}: {e.message}" for e in self.errors[:SHOWN_REJECTS]
        )
        total = self.rejects.num_rows
        more = total - SHOWN_REJECTS
        tail = f"\n  ... and {more:,} more" if more > 0 else ""
        return (
            f"{self.title}: {self.bad_rows:,} bad row{'s' if self.bad_rows != 1 else ''} "
            f"({total:,} problems); nothing imported "
            f"(use --skip-invalid to import the good rows)\n{shown}{tail}"
        )


# --------------------------------------------------------------------------- durations

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhms])\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str) -> timedelta:
    """``7d``, ``36h``, ``90m``, ``30s`` or ``0`` to a timedelta; ValidationError otherwise.

    >>> parse_duration("36h")
    datetime.timedelta(days=1, seconds=43200)
    >>> parse_duration("0")
    datetime.timedelta(0)
    """
    if text.strip() == "0":
        return timedelta(0)
    m = _DURATION.match(text)
    if not m:
        raise ValidationError(
            [FieldError("label_delay", f"expected e.g. 7d, 36h, 90m, 30s or 0, got {text!r}")]
        )
    return timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})


def check_delay(label_delay: timedelta) -> None:
    if label_delay < timedelta(0):
        raise ValidationError([FieldError("label_delay", f"must not be negative: {label_delay}")])


# --------------------------------------------------------------------------- checks


def missing_columns(source: str, present: list[str], required: list[str]) -> None:
    """Fail naming every required column the source lacks (its header is line 1)."""
    absent = [c for c in required if c not in present]
    if absent:
        raise ValidationError(
            [FieldError(c, "column missing from the header", row=1) for c in absent],
            f"{source}: missing columns",
        )


def split_rejects(
    df: pl.DataFrame, checks: list[Check], *, structural: list[Check] | None = None
) -> tuple[pl.DataFrame, pa.Table]:
    """Evaluate every check over ``df`` (which has a :data:`LINE` column); return the rows that
    pass all of them and the rejects table, sorted by line then check order.

    Rows failing a ``structural`` check (an empty line, too many fields) are reported for that
    alone: their field values mean nothing."""
    if structural:
        df, first = split_rejects(df, structural)
        good, rest = split_rejects(df, checks)
        if first.num_rows == 0:
            return good, rest
        both = pa.concat_tables([first, rest])
        return good, both.take(pc.sort_indices(both, [("line", "ascending")]))
    if not checks or df.height == 0:
        return df, REJECTS_SCHEMA.empty_table()
    flags = df.select(
        [c.bad.fill_null(False).alias(f"_bad{i}") for i, c in enumerate(checks)]
    )  # one pass over the frame for all checks
    any_bad = flags.select(pl.any_horizontal(pl.all()).alias("b")).to_series()
    if not any_bad.any():
        return df, REJECTS_SCHEMA.empty_table()
    bad_rows = df.filter(any_bad)
    bad_flags = flags.filter(any_bad)
    parts = []
    for i, c in enumerate(checks):
        mask = bad_flags.get_column(f"_bad{i}")
        if not mask.any():
            continue
        part = bad_rows.filter(mask).select(
            pl.col(LINE).cast(pl.Int64).alias("line"),
            pl.lit(c.field).alias("field"),
            c.reason.fill_null("invalid").cast(pl.String).alias("reason"),
            pl.lit(i).alias("_order"),
        )
        parts.append(part)
    rejects = pl.concat(parts).sort(["line", "_order"]).drop("_order")
    return df.filter(~any_bad), rejects.to_arrow().cast(REJECTS_SCHEMA)


def finish(
    source: str,
    *,
    transactions: pl.DataFrame,
    fraud: pl.Expr,
    source_rows: int,
    rejects: pa.Table,
    label_delay: timedelta,
    skip_invalid: bool,
    label_metadata: pl.Expr | None = None,
    negatives: pl.Expr | None = None,
    reject_kind: str = "line",
) -> ImportResult:
    """Apply the bad-row policy, derive labels from the transactions and build the result.

    ``transactions`` holds event-table columns plus helper columns named ``_*`` (dropped here);
    ``fraud`` is true on rows whose source says fraud: each becomes a ``LabelEvent``
    (``is_fraud=True``, ``known_at = occurred_at + label_delay``, source ``import``). Sources
    without negative verdicts get only those; ``negatives`` (when given) marks rows that get an
    ``is_fraud=False`` label.
    """
    check_delay(label_delay)
    if rejects.num_rows and not skip_invalid:
        raise ImportRejectedError(source, rejects, reject_kind)
    delay_us = int(label_delay / timedelta(microseconds=1))
    labelled = fraud if negatives is None else fraud | negatives
    labels = transactions.filter(labelled.fill_null(False)).select(
        pl.lit(KIND_LABEL).alias("kind"),
        pl.col("transaction_id"),
        fraud.fill_null(False).alias("is_fraud"),
        (pl.col("occurred_at") + pl.duration(microseconds=delay_us)).alias("known_at"),
        pl.lit("import").alias("label_source"),
        (label_metadata if label_metadata is not None else pl.lit(None, pl.String)).alias(
            "metadata"
        ),
    )
    tx = transactions.select(
        pl.lit(KIND_TRANSACTION).alias("kind"),
        *[pl.col(c) for c in transactions.columns if not c.startswith("_")],
    )
    # Replay order as ``io.events.sort_for_replay`` defines it (event time, transactions before
    # labels, then input order), done by polars' parallel sort: twice as fast as Arrow's take.
    both = pl.concat([tx, labels], how="diagonal_relaxed").sort(
        pl.coalesce("occurred_at", "known_at"),
        pl.col("kind") == KIND_LABEL,
        maintain_order=True,
    )
    table = conform(both.to_arrow())
    n_fraud = int(labels.get_column("is_fraud").sum()) if labels.height else 0
    return ImportResult(
        source=source,
        table=table,
        source_rows=source_rows,
        transactions=tx.height,
        labels=labels.height,
        fraud_labels=n_fraud,
        rejects=rejects,
    )


def rejects_path(out: Path) -> Path:
    """``events.parquet`` -> ``events.rejects.csv`` (beside the output)."""
    return out.with_name(out.stem + ".rejects.csv")


def write_rejects(path: Path, rejects: pa.Table) -> None:
    """The full reject list as CSV (``line,field,reason``), for fixing the source."""
    pl.from_arrow(rejects).write_csv(path)  # type: ignore[union-attr]


# --------------------------------------------------------------------------- expressions


def json_object(pairs: dict[str, pl.Expr]) -> pl.Expr:
    """A JSON object text per row from named expressions; null when every value is null.

    Built with ``struct.json_encode`` so 1 M rows take milliseconds, not a Python loop."""
    text = pl.struct([e.alias(k) for k, e in pairs.items()]).struct.json_encode()
    return pl.when(pl.any_horizontal([e.is_not_null() for e in pairs.values()])).then(text)


def src_text(column: str) -> pl.Expr:
    """A text column, stripped, empty as null."""
    s = pl.col(column).cast(pl.String).str.strip_chars()
    return pl.when(s == "").then(None).otherwise(s)


def quoted(e: pl.Expr, width: int = 40) -> pl.Expr:
    """A value as it appears in a reject reason: quoted and cut to ``width`` characters."""
    return pl.format("'{}'", e.cast(pl.String).str.slice(0, width))


# --------------------------------------------------------------------------- CSV input


def read_csv_text(src: Path, *, names: list[str] | None = None) -> pl.DataFrame:
    """A CSV file with every column as text (stripped by the caller) and a :data:`LINE` column
    holding each record's line number (the header is line 1).

    ``names`` renames the columns by position (for headers with duplicated names). Line numbers
    assume one record per line: a quoted field spanning lines shifts the numbers after it.
    Records with more fields than the header are rejected by line (``$`` field). Trailing
    empty lines are dropped; other empty lines are kept (and rejected by :func:`csv_checks`)."""
    if not src.is_file():
        raise ValidationError([FieldError(str(src), "no such file")])
    ragged: list[tuple[int, int]] = []
    try:
        df = pl.read_csv(src, infer_schema=False)
    except pl.exceptions.NoDataError:
        raise ValidationError([FieldError(str(src), "empty file: no header")]) from None
    except pl.exceptions.ComputeError as e:
        if "more fields" not in str(e):
            raise ValidationError([FieldError(str(src), f"not a readable CSV file: {e}")]) from None
        ragged = _ragged_lines(src)
        df = pl.read_csv(src, infer_schema=False, truncate_ragged_lines=True)
    if names is not None:
        if len(names) != df.width:
            raise ValidationError(
                [FieldError("header", f"expected {len(names)} columns, found {df.width}", row=1)],
                f"{src}: unexpected header",
            )
        df.columns = names
    blank = pl.all_horizontal([pl.col(c).is_null() for c in df.columns]).alias("_blank")
    df = df.with_row_index(LINE, offset=2).with_columns(blank)
    # Empty lines at the very end are not records (editors and exports add them); empty lines
    # between records are rejected by csv_checks.
    filled = df.get_column("_blank").not_()
    last = filled.len() - 1 - int(filled.reverse().arg_max() or 0) if filled.any() else -1
    df = df.head(last + 1)
    if ragged:
        bad = pl.DataFrame({LINE: [n for n, _ in ragged], "_fields": [k for _, k in ragged]})
        df = df.join(bad, on=LINE, how="left", coalesce=True).sort(LINE)
    else:
        df = df.with_columns(pl.lit(None, pl.Int64).alias("_fields"))
    return df


def _ragged_lines(src: Path) -> list[tuple[int, int]]:
    """(line, field count) of every record longer than the header: the slow path, run only when
    the fast reader refused the file."""
    import csv

    out: list[tuple[int, int]] = []
    with src.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        width = len(next(reader, []))
        for record in reader:
            if len(record) > width:
                out.append((reader.line_num, len(record)))
    return out


def csv_checks(df: pl.DataFrame) -> list[Check]:
    """Structural checks of a frame from :func:`read_csv_text`: records with more fields than
    the header, and empty lines (rejected rather than skipped unnoticed)."""
    width = len([c for c in df.columns if c not in (LINE, "_fields", "_blank")])
    return [
        Check(
            "$",
            pl.col("_fields").is_not_null(),
            pl.format("{} fields, the header has {}", pl.col("_fields"), pl.lit(width)),
        ),
        Check("$", pl.col("_blank"), pl.lit("empty line")),
    ]


def number(column: str) -> pl.Expr:
    """A text column parsed as a float (null where it does not parse)."""
    return src_text(column).cast(pl.Float64, strict=False)


def amount_checks(column: str, *, required: bool = True) -> list[Check]:
    """Missing (if required), not a number, not finite, negative or absurd."""
    raw = src_text(column)
    x = number(column)
    checks = []
    if required:
        checks.append(Check(column, raw.is_null(), pl.lit("missing value")))
    checks.append(
        Check(
            column,
            raw.is_not_null()
            & (x.is_null() | x.is_nan() | x.is_infinite() | (x < 0) | (x > MAX_AMOUNT)),
            pl.format("not a valid amount: {}", quoted(raw)),
        )
    )
    return checks


def required_check(column: str) -> Check:
    return Check(column, src_text(column).is_null(), pl.lit("missing value"))


def flag_check(column: str) -> Check:
    """A present value that is not ``0`` or ``1`` (the fraud flags of the public data sets)."""
    v = src_text(column)
    return Check(
        column,
        v.is_not_null() & ~v.is_in(["0", "1"]),
        pl.format("expected 0 or 1, got {}", quoted(v)),
    )


def known_check(column: str, allowed: list[str], what: str) -> Check:
    """A present value outside ``allowed``, reported as ``unknown <what> '<value>'``."""
    v = src_text(column)
    return Check(
        column, v.is_not_null() & ~v.is_in(allowed), pl.format(f"unknown {what} {{}}", quoted(v))
    )
