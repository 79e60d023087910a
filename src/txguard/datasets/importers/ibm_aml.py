"""IBM "Transactions for Anti-Money Laundering" (Altman et al., 2023; Kaggle) -> canonical events.

The CSV layout (``HI-Small_Trans.csv`` and its siblings) has a duplicated ``Account`` header::

    Timestamp,From Bank,Account,To Bank,Account,Amount Received,Receiving Currency,
    Amount Paid,Payment Currency,Payment Format,Is Laundering

so columns are taken by position after the header is checked. Mapping:

==================  ===============================================================
(line number)       ``transaction_id`` = ``ibm-<line>`` (the data has no id)
Timestamp           ``occurred_at``; ``2022/09/01 00:20`` has no zone and is read as UTC
From Bank, Account  ``sender_account_id`` = ``<bank>:<account>``; ``metadata.from_bank``
To Bank, Account    ``recipient_account_id`` = ``<bank>:<account>``, ``recipient_bank``
Amount Paid         ``amount`` in Payment Currency (the sender's side of the payment);
                    ``amount_usd`` by the static reference rate
Amount Received     ``metadata.amount_received`` in ``metadata.receiving_currency``
Payment Format      ``type`` (see FORMATS) and ``metadata.payment_format``
Is Laundering = 1   a LabelEvent (``is_fraud`` true, known at occurred_at + label delay)
==================  ===============================================================

Accounts are keyed by bank *and* account so that one account has one id whether it sends or
receives. Currency names ("US Dollar", "Euro", "Bitcoin" ...) map to codes (CURRENCIES); an
unknown name rejects the row. Only laundering rows get labels, as for the other importers.
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
    amount_checks,
    csv_checks,
    finish,
    flag_check,
    json_object,
    known_check,
    number,
    quoted,
    read_csv_text,
    required_check,
    split_rejects,
    src_text,
)
from txguard.domain.errors import FieldError, ValidationError
from txguard.domain.money import USD_RATES

# Position-unique names used inside the importer and in reject reports: the file's own header
# (HEADER, checked before reading) names both account columns "Account".
NAMES = [
    "Timestamp",
    "From Bank",
    "Account (from)",
    "To Bank",
    "Account (to)",
    "Amount Received",
    "Receiving Currency",
    "Amount Paid",
    "Payment Currency",
    "Payment Format",
    "Is Laundering",
]
HEADER = [n.removesuffix(" (from)").removesuffix(" (to)") for n in NAMES]
TIMESTAMP_FORMAT = "%Y/%m/%d %H:%M"

CURRENCIES = {
    "US Dollar": "USD",
    "Euro": "EUR",
    "UK Pound": "GBP",
    "Yuan": "CNY",
    "Yen": "JPY",
    "Rupee": "INR",
    "Ruble": "RUB",
    "Canadian Dollar": "CAD",
    "Australian Dollar": "AUD",
    "Swiss Franc": "CHF",
    "Mexican Peso": "MXN",
    "Brazil Real": "BRL",
    "Saudi Riyal": "SAR",
    "Shekel": "ILS",
    "Bitcoin": "BTC",
}
FORMATS = {
    "ACH": "transfer",
    "Wire": "transfer",
    "Reinvestment": "transfer",
    "Cheque": "payment",
    "Credit Card": "card",
    "Cash": "cash_out",
    "Bitcoin": "crypto_transfer",
}


def import_ibm_aml(
    src: Path,
    *,
    label_delay: timedelta = DEFAULT_LABEL_DELAY,
    skip_invalid: bool = False,
) -> ImportResult:
    """Read an IBM AML transactions CSV and map it to canonical events (module docstring)."""
    src = Path(src)
    _check_header(src)
    df = read_csv_text(src, names=NAMES)
    good, rejects = split_rejects(df, _checks(), structural=csv_checks(df))

    code = src_text("Payment Currency").replace_strict(CURRENCIES, default=None)
    rate = code.replace_strict(USD_RATES, default=None, return_dtype=pl.Float64)
    tx = good.select(
        pl.col(LINE),
        pl.format("ibm-{}", pl.col(LINE)).alias("transaction_id"),
        _timestamp().alias("occurred_at"),
        number("Amount Paid").alias("amount"),
        code.alias("currency"),
        (number("Amount Paid") * rate).alias("amount_usd"),
        src_text("Payment Format").replace_strict(FORMATS, default=None).alias("type"),
        pl.format("{}:{}", src_text("From Bank"), src_text("Account (from)")).alias(
            "sender_account_id"
        ),
        pl.format("{}:{}", src_text("To Bank"), src_text("Account (to)")).alias(
            "recipient_account_id"
        ),
        src_text("To Bank").alias("recipient_bank"),
        json_object(
            {
                "from_bank": src_text("From Bank"),
                "amount_received": number("Amount Received"),
                "receiving_currency": src_text("Receiving Currency").replace_strict(
                    CURRENCIES, default=None
                ),
                "payment_format": src_text("Payment Format"),
            }
        ).alias("metadata"),
        (src_text("Is Laundering") == "1").alias("_fraud"),
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


def _check_header(src: Path) -> None:
    if not src.is_file():
        raise ValidationError([FieldError(str(src), "no such file")])
    with src.open(encoding="utf-8-sig", errors="replace") as f:  # -sig: tolerate a BOM
        header = [h.strip() for h in f.readline().rstrip("\r\n").split(",")]
    errors = [
        FieldError(f"column {i + 1}", f"expected {want!r}, found {got!r}", row=1)
        for i, (want, got) in enumerate(zip(HEADER, header, strict=False))
        if want.lower() != got.lower()
    ]
    if len(header) != len(HEADER):
        errors.append(
            FieldError("header", f"expected {len(HEADER)} columns, found {len(header)}", row=1)
        )
    if errors:
        raise ValidationError(errors, f"{src}: not the IBM AML transactions layout")


def _timestamp() -> pl.Expr:
    return (
        src_text("Timestamp")
        .str.to_datetime(TIMESTAMP_FORMAT, strict=False, time_unit="us")
        .dt.replace_time_zone("UTC")
    )


def _checks() -> list[Check]:
    checks = [required_check(c) for c in NAMES if c not in ("Amount Received", "Amount Paid")]
    ts = src_text("Timestamp")
    checks.append(
        Check(
            "Timestamp",
            ts.is_not_null() & _timestamp().is_null(),
            pl.format("expected a time like 2022/09/01 00:20, got {}", quoted(ts)),
        )
    )
    checks += amount_checks("Amount Paid") + amount_checks("Amount Received")
    checks += [
        known_check("Payment Currency", list(CURRENCIES), "currency"),
        known_check("Receiving Currency", list(CURRENCIES), "currency"),
        known_check("Payment Format", list(FORMATS), "payment format"),
        flag_check("Is Laundering"),
    ]
    return checks
