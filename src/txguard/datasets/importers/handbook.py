"""The Fraud Detection Handbook's simulated card payments -> canonical events.

Source: *Reproducible Machine Learning for Credit Card Fraud Detection — Practical Handbook*
(Le Borgne et al., ULB), raw generator output as one Parquet file (``shared/data/handbook``).

Mapping (one transaction per row):

==================  ==============================================================
TRANSACTION_ID      ``transaction_id`` = ``hb-<id>``
TX_DATETIME         ``occurred_at``; the file's times are naive and are read as UTC
CUSTOMER_ID         ``sender_account_id`` (decimal text)
TERMINAL_ID         ``terminal_id`` (decimal text; no ``merchant_id``: a terminal is all we know)
TX_AMOUNT           ``amount``, currency USD, ``amount_usd`` = amount
(constant)          ``type`` = card, ``channel`` = pos
TX_FRAUD = 1        a LabelEvent, ``is_fraud`` true, ``known_at`` = occurred_at + label delay
TX_FRAUD_SCENARIO   ``metadata.typology`` on fraud transactions and their labels
==================  ==============================================================

Only fraud rows get labels: the data has no negative verdicts (a row with TX_FRAUD = 0 is "not
known to be fraud", which the training code treats as legitimate by absence of a label).
``typology`` is ground truth for evaluation and must never be a feature. TX_TIME_SECONDS and
TX_TIME_DAYS are derived from TX_DATETIME and are not imported.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl

from txguard.datasets.importers.common import (
    DEFAULT_LABEL_DELAY,
    LINE,
    Check,
    ImportResult,
    finish,
    json_object,
    missing_columns,
    quoted,
    split_rejects,
)
from txguard.domain.errors import FieldError, ValidationError
from txguard.domain.events import MAX_AMOUNT

COLUMNS = [
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_FRAUD",
    "TX_FRAUD_SCENARIO",
]

TYPOLOGIES = {1: "scenario_1_amount", 2: "scenario_2_terminal", 3: "scenario_3_customer"}


def import_handbook(
    src: Path,
    *,
    label_delay: timedelta = DEFAULT_LABEL_DELAY,
    skip_invalid: bool = False,
) -> ImportResult:
    """Read the handbook Parquet file and map it to canonical events (see the module docstring).

    Bad rows are named by their 1-based row number in the file."""
    src = Path(src)
    df = _read(src)
    missing_columns(str(src), df.columns, COLUMNS)
    _check_types(str(src), df)
    df = df.select(COLUMNS).with_row_index(LINE, offset=1)
    good, rejects = split_rejects(df, _checks())

    typology = pl.col("TX_FRAUD_SCENARIO").replace_strict(
        TYPOLOGIES, default=None, return_dtype=pl.String
    )
    meta = pl.when(typology.is_not_null()).then(json_object({"typology": typology}))
    tx = good.select(
        pl.col(LINE),
        pl.format("hb-{}", pl.col("TRANSACTION_ID")).alias("transaction_id"),
        _as_utc(pl.col("TX_DATETIME"), df.schema["TX_DATETIME"]).alias("occurred_at"),
        pl.col("TX_AMOUNT").cast(pl.Float64).alias("amount"),
        pl.lit("USD").alias("currency"),
        pl.col("TX_AMOUNT").cast(pl.Float64).alias("amount_usd"),
        pl.lit("card").alias("type"),
        pl.lit("pos").alias("channel"),
        pl.col("CUSTOMER_ID").cast(pl.String).alias("sender_account_id"),
        pl.col("TERMINAL_ID").cast(pl.String).alias("terminal_id"),
        meta.alias("metadata"),
        (pl.col("TX_FRAUD") == 1).alias("_fraud"),
    )
    return finish(
        str(src),
        transactions=tx,
        fraud=pl.col("_fraud"),
        source_rows=df.height,
        rejects=rejects,
        label_delay=label_delay,
        skip_invalid=skip_invalid,
        label_metadata=pl.col("metadata"),
        reject_kind="row",
    )


def _read(src: Path) -> pl.DataFrame:
    if not src.is_file():
        raise ValidationError([FieldError(str(src), "no such file")])
    try:
        return pl.read_parquet(src)
    except (pl.exceptions.ComputeError, OSError) as e:
        raise ValidationError([FieldError(str(src), f"not a readable Parquet file: {e}")]) from None


def _check_types(source: str, df: pl.DataFrame) -> None:
    """Column types as the generator writes them; anything else is another file."""
    errors = []
    for c in COLUMNS:
        t = df.schema[c]
        if c == "TX_DATETIME":
            ok = isinstance(t, pl.Datetime)
        elif c == "TX_AMOUNT":
            ok = t.is_numeric()
        else:
            ok = t.is_integer()
        if not ok:
            errors.append(FieldError(c, f"unexpected column type {t}", row=1))
    if errors:
        raise ValidationError(errors, f"{source}: not the handbook layout")


def _as_utc(e: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Naive times are UTC by this importer's contract; aware ones are converted."""
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return e.dt.convert_time_zone("UTC").cast(pl.Datetime("us", "UTC"))
    return e.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def _checks() -> list[Check]:
    amount = pl.col("TX_AMOUNT")
    checks = [
        Check(c, pl.col(c).is_null(), pl.lit("missing value"))
        for c in ("TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT")
    ]
    checks += [
        Check(
            "TX_AMOUNT",
            amount.is_nan() | amount.is_infinite() | (amount < 0) | (amount > MAX_AMOUNT),
            pl.format("not a non-negative finite amount: {}", amount),
        ),
        Check(
            "TX_FRAUD",
            ~pl.col("TX_FRAUD").is_in([0, 1]) | pl.col("TX_FRAUD").is_null(),
            pl.format("expected 0 or 1, got {}", quoted(pl.col("TX_FRAUD"))),
        ),
        Check(
            "TX_FRAUD_SCENARIO",
            ~pl.col("TX_FRAUD_SCENARIO").is_in([0, *TYPOLOGIES]),
            pl.format("expected 0..3, got {}", quoted(pl.col("TX_FRAUD_SCENARIO"))),
        ),
        Check(
            "TRANSACTION_ID",
            ~pl.col("TRANSACTION_ID").is_first_distinct(),
            pl.format("duplicate transaction id {}", pl.col("TRANSACTION_ID")),
        ),
    ]
    return checks
