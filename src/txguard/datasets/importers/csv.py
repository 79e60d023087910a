"""Any CSV -> canonical events, through a mapping file (format in ``mapping``).

Every mapped value is checked the way ``domain.events.parse_transaction`` checks an API call
(required fields, amounts, currency codes, enum values, countries, KYC level, IP addresses,
lengths), but column-wise, so a million rows take about a second. A bad value rejects its row
with the line number and the source column; with ``skip_invalid`` the other rows are imported.

Times: with no ``timestamp.format`` the values must be RFC 3339 (``2026-01-01T10:00:00Z``, a
space instead of ``T`` is accepted). A value without an offset is read in ``timestamp.zone``;
without a zone in the mapping such a value is rejected ("timestamp has no time zone") rather
than guessed. Local times that do not exist or are ambiguous in the zone (DST changes) are
rejected too. ``transaction_id`` defaults to ``<id_prefix or "csv-"><line>``; ``amount_usd``,
when not mapped, comes from the static reference rates (null for currencies without one).
"""

from __future__ import annotations

import ipaddress
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
    json_object,
    missing_columns,
    quoted,
    read_csv_text,
    split_rejects,
    src_text,
)
from txguard.datasets.importers.mapping import (
    AMOUNT_FIELDS,
    COUNTRY_FIELDS,
    REQUIRED,
    TEXT_FIELDS,
    TIME_FIELDS,
    CsvMapping,
    has_offset,
    load_mapping,
)
from txguard.domain.errors import ConfigurationError
from txguard.domain.events import MAX_TEXT_LENGTH, MAX_YEAR, MIN_YEAR, Channel, TransactionType
from txguard.domain.money import KNOWN_CURRENCIES, USD_RATES

RFC3339_AWARE = "%Y-%m-%dT%H:%M:%S%.f%z"
RFC3339_NAIVE = "%Y-%m-%dT%H:%M:%S%.f"


def import_csv(
    src: Path,
    *,
    mapping: CsvMapping | Path,
    label_delay: timedelta = DEFAULT_LABEL_DELAY,
    skip_invalid: bool = False,
) -> ImportResult:
    """Read ``src`` and map it with ``mapping`` (a :class:`CsvMapping` or a YAML file path)."""
    src = Path(src)
    m = mapping if isinstance(mapping, CsvMapping) else load_mapping(Path(mapping))
    df = read_csv_text(src)
    missing_columns(str(src), df.columns, m.source_columns)
    _check_constants(m)
    # One text column per canonical field: the source column (recoded) or the constant.
    fields = {f: _value(m, f) for f in [*m.fields, *m.constants]}
    frame = df.select(
        pl.col(LINE, "_fields", "_blank"),
        *[e.alias(f) for f, e in fields.items()],
        *[src_text(col).alias(f"_meta_{k}") for k, col in m.metadata.items()],
        *([src_text(m.label.column).str.to_lowercase().alias("_label")] if m.label else []),
    )
    frame = frame.with_columns(_normalise(set(fields))).with_columns(
        parse_times(m, pl.col(f)).alias(f"_t_{f}") for f in TIME_FIELDS if f in fields
    )
    good, rejects = split_rejects(frame, _checks(m, frame), structural=csv_checks(df))
    return finish(
        str(src),
        transactions=good.select(pl.col(LINE), *_columns(m, set(fields)), *_label_cols(m)),
        fraud=pl.col("_fraud"),
        negatives=pl.col("_legit"),  # all false unless the mapping names false values
        source_rows=df.height,
        rejects=rejects,
        label_delay=label_delay,
        skip_invalid=skip_invalid,
    )


def _value(m: CsvMapping, f: str) -> pl.Expr:
    if f in m.constants:
        return pl.lit(str(m.constants[f]))
    v = src_text(m.fields[f])
    if f in m.values:
        v = v.replace(m.values[f])
    return v


def _normalise(present: set[str]) -> list[pl.Expr]:
    """Codes are case-insensitive in files: currency and countries upper, enums lower."""
    upper = [pl.col(c).str.to_uppercase() for c in ("currency", *COUNTRY_FIELDS) if c in present]
    lower = [pl.col(c).str.to_lowercase() for c in ("type", "channel") if c in present]
    return upper + lower


def _name(m: CsvMapping, f: str) -> str:
    """How a field is named in reject reports: its source column, or ``constants.<field>``."""
    return m.fields.get(f, f"constants.{f}")


def _check_constants(m: CsvMapping) -> None:
    """Constants are checked once, with the row checks, on a one-row frame."""
    if not m.constants:
        return
    one = pl.DataFrame({LINE: [0], **{f: [str(v)] for f, v in m.constants.items()}})
    one = one.with_columns(_normalise(set(m.constants)))
    checks = [c for f in m.constants for c in _field_checks(m, f, one)]
    _, bad = split_rejects(one, checks)
    if bad.num_rows:
        r = bad.to_pylist()[0]
        raise ConfigurationError(f"mapping: {r['field']}: {r['reason']}")


# --------------------------------------------------------------------------- checks


def _checks(m: CsvMapping, frame: pl.DataFrame) -> list[Check]:
    checks: list[Check] = []
    for f in m.fields:
        checks += _field_checks(m, f, frame)
    if "transaction_id" in m.fields:
        tid = pl.col("transaction_id")
        checks.append(
            Check(
                m.fields["transaction_id"],
                tid.is_not_null() & ~tid.is_first_distinct(),
                pl.format("duplicate transaction id {}", quoted(tid)),
            )
        )
    for k in m.metadata:
        v = pl.col(f"_meta_{k}")
        checks.append(
            Check(
                m.metadata[k],
                v.str.len_chars() > MAX_TEXT_LENGTH,
                pl.format(
                    "too long for metadata.{}: over {} characters",
                    pl.lit(k),
                    pl.lit(MAX_TEXT_LENGTH),
                ),
            )
        )
    if m.label is not None and m.label.false_values is not None:
        allowed = sorted(m.label.true_values | m.label.false_values)
        v = pl.col("_label")
        checks.append(
            Check(
                m.label.column,
                v.is_not_null() & ~v.is_in(allowed),
                pl.format(
                    "label value {} is neither true nor false ({})",
                    quoted(v),
                    pl.lit(", ".join(allowed)),
                ),
            )
        )
    return checks


def _field_checks(m: CsvMapping, f: str, frame: pl.DataFrame | None = None) -> list[Check]:
    name = _name(m, f)
    v = pl.col(f)
    out: list[Check] = []
    if f in REQUIRED:
        out.append(Check(name, v.is_null(), pl.lit(f"missing value for {f}")))
    if f in AMOUNT_FIELDS:
        out += [Check(name, c.bad, c.reason) for c in amount_checks(f, required=False)]
    elif f in TIME_FIELDS:
        out.append(_time_check(m, f, name))
    elif f in TEXT_FIELDS:
        n = TEXT_FIELDS[f]
        out.append(
            Check(
                name,
                v.str.len_chars() > n,
                pl.format("too long for {}: over {} characters", pl.lit(f), pl.lit(n)),
            )
        )
        out.append(
            Check(name, v.str.contains(r"[\x00-\x1f\x7f]"), pl.lit(f"control characters in {f}"))
        )
    elif f in COUNTRY_FIELDS:
        out.append(
            _set_check(
                name, v, ~v.str.contains(r"^[A-Z]{2}$"), "not an ISO 3166-1 alpha-2 country code"
            )
        )
    elif f == "currency":
        out.append(_set_check(name, v, ~v.is_in(sorted(KNOWN_CURRENCIES)), "unknown currency code"))
    elif f == "type":
        out.append(_enum_check(name, v, [t.value for t in TransactionType]))
    elif f == "channel":
        out.append(_enum_check(name, v, [c.value for c in Channel]))
    elif f == "sender_kyc_level":
        k = v.cast(pl.Int8, strict=False)
        out.append(
            _set_check(name, v, k.is_null() | (k < 0) | (k > 3), "expected a KYC level 0..3")
        )
    elif f == "ip":
        out.append(_set_check(name, v, v.is_in(_bad_ips(frame, f)), "not an IPv4 or IPv6 address"))
    return out


def _set_check(name: str, v: pl.Expr, bad: pl.Expr, message: str) -> Check:
    return Check(name, v.is_not_null() & bad, pl.format("{}: {}", pl.lit(message), quoted(v)))


def _enum_check(name: str, v: pl.Expr, allowed: list[str]) -> Check:
    return Check(
        name,
        v.is_not_null() & ~v.is_in(allowed),
        pl.format("unknown value {}; one of {}", quoted(v), pl.lit(", ".join(allowed))),
    )


def _bad_ips(frame: pl.DataFrame | None, f: str) -> list[str]:
    """IP addresses are checked by the standard library once per distinct value."""
    if frame is None:
        return []
    bad = []
    for x in frame.get_column(f).drop_nulls().unique().to_list():
        try:
            ipaddress.ip_address(x)
        except ValueError:
            bad.append(x)
    return bad


# --------------------------------------------------------------------------- times


def parse_times(m: CsvMapping, v: pl.Expr) -> pl.Expr:
    """A text column to aware UTC datetimes (null where it does not parse)."""
    if m.timestamp_format is not None:
        fmt = m.timestamp_format
        if has_offset(fmt):
            return v.str.to_datetime(fmt, strict=False, time_unit="us").dt.convert_time_zone("UTC")
        assert m.zone is not None  # the mapping loader requires it
        return _localise(v.str.to_datetime(fmt, strict=False, time_unit="us"), m.zone)
    t = _rfc3339(v)
    aware = t.str.to_datetime(RFC3339_AWARE, strict=False, time_unit="us", time_zone="UTC")
    if m.zone is None:
        return aware
    naive = t.str.to_datetime(RFC3339_NAIVE, strict=False, time_unit="us")
    return pl.coalesce([aware, _localise(naive, m.zone)])


def _rfc3339(v: pl.Expr) -> pl.Expr:
    """``Z`` as ``+00:00`` and a space as ``T``: the spellings polars' %z and format expect."""
    return v.str.replace(r"^(\d{4}-\d\d-\d\d) ", "${1}T").str.replace(r"[Zz]$", "+00:00")


def _localise(naive: pl.Expr, zone: str) -> pl.Expr:
    return naive.dt.replace_time_zone(
        zone, ambiguous="null", non_existent="null"
    ).dt.convert_time_zone("UTC")


def _time_check(m: CsvMapping, f: str, name: str) -> Check:
    """Uses the parsed column ``_t_<field>`` (parsed once, in ``import_csv``). The reason, which
    re-parses to tell "no zone" from "no timestamp", runs on the bad rows only."""
    v = pl.col(f)
    t = pl.col(f"_t_{f}")
    year = t.dt.year()
    if m.timestamp_format is None and m.zone is None:
        naive = _rfc3339(v).str.to_datetime(RFC3339_NAIVE, strict=False).is_not_null()
    else:
        naive = pl.lit(False)
    fmt = m.timestamp_format or "RFC 3339"
    where = f" in {m.zone}" if m.zone else ""
    reason = (
        pl.when(t.is_null() & naive)
        .then(
            pl.format(
                "timestamp has no time zone: {} (add an offset, or set timestamp.zone in the mapping)",
                quoted(v),
            )
        )
        .when(t.is_null())
        .then(
            pl.format(
                "not a {} timestamp{} (or not a valid local time): {}",
                pl.lit(fmt),
                pl.lit(where),
                quoted(v),
            )
        )
        .otherwise(pl.format("year {} outside {}..{}", year, pl.lit(MIN_YEAR), pl.lit(MAX_YEAR)))
    )
    bad = v.is_not_null() & (t.is_null() | (year < MIN_YEAR) | (year > MAX_YEAR))
    return Check(name, bad, reason)


# --------------------------------------------------------------------------- output columns


def _columns(m: CsvMapping, present: set[str]) -> list[pl.Expr]:
    out: list[pl.Expr] = []
    if "transaction_id" in present:
        tid = pl.col("transaction_id")
        out.append((pl.lit(m.id_prefix) + tid if m.id_prefix else tid).alias("transaction_id"))
    else:
        out.append(
            pl.format("{}{}", pl.lit(m.id_prefix or "csv-"), pl.col(LINE)).alias("transaction_id")
        )
    for f in sorted(present - {"transaction_id"}):
        v = pl.col(f)
        if f in AMOUNT_FIELDS:
            v = v.cast(pl.Float64)
        elif f in TIME_FIELDS:
            v = pl.col(f"_t_{f}")
        elif f == "sender_kyc_level":
            v = v.cast(pl.Int8)
        out.append(v.alias(f))
    if "amount_usd" not in present:
        rate = pl.col("currency").replace_strict(USD_RATES, default=None, return_dtype=pl.Float64)
        out.append((pl.col("amount").cast(pl.Float64) * rate).alias("amount_usd"))
    if m.metadata:
        out.append(json_object({k: pl.col(f"_meta_{k}") for k in m.metadata}).alias("metadata"))
    return out


def _label_cols(m: CsvMapping) -> list[pl.Expr]:
    if m.label is None:
        return [pl.lit(False).alias("_fraud"), pl.lit(False).alias("_legit")]
    v = pl.col("_label")
    return [
        v.is_in(sorted(m.label.true_values)).fill_null(False).alias("_fraud"),
        v.is_in(sorted(m.label.false_values or ())).fill_null(False).alias("_legit"),
    ]
