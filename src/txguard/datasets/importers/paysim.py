"""PaySim mobile-money simulation (Lopez-Rojas et al., 2016) -> canonical events.

Mapping (one transaction per CSV record; line numbers count the header as line 1):

================  ==================================================================
(line number)     ``transaction_id`` = ``ps-<line>``: PaySim has no transaction id
step              ``occurred_at`` = PAYSIM_EPOCH + step hours. PaySim's step is one simulated
                  hour and the data has no calendar; the epoch 2016-01-01T00:00Z is our choice.
                  Records of one step share a timestamp and keep file order.
type              ``type``: PAYMENT, TRANSFER, CASH_OUT, CASH_IN, DEBIT -> payment, transfer,
                  cash_out, cash_in, debit
amount            ``amount``; currency: PaySim's unnamed local currency is imported as USD by
                  default (``currency=`` to choose), ``amount_usd`` by the static rate
nameOrig          ``sender_account_id``
nameDest          ``recipient_account_id``; names starting ``M`` (merchants) also ``merchant_id``
balances          ``metadata`` (oldbalanceOrg, newbalanceOrig, oldbalanceDest, newbalanceDest):
                  the simulator's books, not fields a payment flow would send
isFlaggedFraud    ``metadata.isFlaggedFraud`` (the simulator's own rule, kept for comparison)
isFraud = 1       a LabelEvent (``is_fraud`` true, known at occurred_at + label delay)
(constant)        ``channel`` = mobile
================  ==================================================================

Only fraud rows get labels, as for the handbook: isFraud = 0 is "not found to be fraud".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from txguard.datasets.importers.common import (
    DEFAULT_LABEL_DELAY,
    LINE,
    Check,
    ImportResult,
    amount_checks,
    csv_checks,
    finish,
    flag_check,
    json_object,
    missing_columns,
    number,
    quoted,
    read_csv_text,
    required_check,
    split_rejects,
    src_text,
)
from txguard.domain.errors import FieldError, ValidationError
from txguard.domain.money import KNOWN_CURRENCIES, USD_RATES

PAYSIM_EPOCH = datetime(2016, 1, 1, tzinfo=UTC)
MAX_STEP = 24 * 366 * 10  # ten years of hours: far beyond PaySim's 744, yet catches garbage

COLUMNS = [
    "step",
    "type",
    "amount",
    "nameOrig",
    "oldbalanceOrg",
    "newbalanceOrig",
    "nameDest",
    "oldbalanceDest",
    "newbalanceDest",
    "isFraud",
    "isFlaggedFraud",
]
BALANCES = ["oldbalanceOrg", "newbalanceOrig", "oldbalanceDest", "newbalanceDest"]
TYPES = {
    "PAYMENT": "payment",
    "TRANSFER": "transfer",
    "CASH_OUT": "cash_out",
    "CASH_IN": "cash_in",
    "DEBIT": "debit",
}


def import_paysim(
    src: Path,
    *,
    label_delay: timedelta = DEFAULT_LABEL_DELAY,
    skip_invalid: bool = False,
    currency: str = "USD",
    epoch: datetime = PAYSIM_EPOCH,
) -> ImportResult:
    """Read a PaySim CSV and map it to canonical events (see the module docstring)."""
    src = Path(src)
    if currency not in KNOWN_CURRENCIES:
        raise ValidationError([FieldError("currency", f"unknown currency code {currency!r}")])
    if epoch.tzinfo is None:
        raise ValidationError([FieldError("epoch", "needs a time zone")])
    df = read_csv_text(src)
    missing_columns(str(src), df.columns, COLUMNS)
    good, rejects = split_rejects(df, _checks(), structural=csv_checks(df))

    step = src_text("step").cast(pl.Int64, strict=False)
    dest = src_text("nameDest")
    rate = USD_RATES.get(currency)
    balances = {c: number(c) for c in BALANCES}
    balances["isFlaggedFraud"] = src_text("isFlaggedFraud").cast(pl.Int64, strict=False)
    tx = good.select(
        pl.col(LINE),
        pl.format("ps-{}", pl.col(LINE)).alias("transaction_id"),
        (pl.lit(epoch.astimezone(UTC)) + pl.duration(hours=step)).alias("occurred_at"),
        number("amount").alias("amount"),
        pl.lit(currency).alias("currency"),
        (number("amount") * rate if rate is not None else pl.lit(None, pl.Float64)).alias(
            "amount_usd"
        ),
        src_text("type").replace_strict(TYPES, default=None).alias("type"),
        pl.lit("mobile").alias("channel"),
        src_text("nameOrig").alias("sender_account_id"),
        dest.alias("recipient_account_id"),
        pl.when(dest.str.starts_with("M")).then(dest).alias("merchant_id"),
        json_object(balances).alias("metadata"),
        (src_text("isFraud") == "1").alias("_fraud"),
    )
    return finish(
        str(src),
        transactions=tx,
        fraud=pl.col("_fraud"),
        source_rows=df.height,
        rejects=rejects,
        label_delay=label_delay,
        skip_invalid=skip_invalid,
    )


def _checks() -> list[Check]:
    step = src_text("step")
    step_n = step.cast(pl.Int64, strict=False)
    checks = [required_check(c) for c in ("step", "type", "nameOrig", "nameDest", "isFraud")]
    checks += [
        Check(
            "step",
            step.is_not_null() & (step_n.is_null() | (step_n < 0) | (step_n > MAX_STEP)),
            pl.format("expected an hour number 0..{}, got {}", pl.lit(MAX_STEP), quoted(step)),
        ),
        Check(
            "type",
            src_text("type").is_not_null() & ~src_text("type").is_in(list(TYPES)),
            pl.format(
                "unknown type {}; one of {}", quoted(src_text("type")), pl.lit(", ".join(TYPES))
            ),
        ),
        *amount_checks("amount"),
    ]
    for c in BALANCES:
        checks += amount_checks(c, required=False)
    checks += [flag_check("isFraud"), flag_check("isFlaggedFraud")]
    return checks
