"""One table holds both kinds of event, one row each, in replay order.

Column ``kind`` says which: ``transaction`` rows use the transaction columns, ``label`` rows use
``transaction_id``, ``is_fraud``, ``known_at``, ``label_source`` and ``metadata``. Files are written
sorted by *event time* (``occurred_at`` for transactions, ``known_at`` for labels); at equal times a
transaction comes before a label, so a label known at t is not visible to a transaction at t.
``metadata`` is a JSON text column (ground truth such as a simulator's ``typology`` lives there and
is never a feature).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from txguard.domain.errors import FieldError, ValidationError
from txguard.domain.events import (
    SCHEMA_VERSION,
    Channel,
    LabelEvent,
    LabelSource,
    Recipient,
    Sender,
    TransactionEvent,
    TransactionType,
    label_to_dict,
    parse_label,
    parse_transaction,
    transaction_to_dict,
)

KIND_TRANSACTION = "transaction"
KIND_LABEL = "label"

_TS = pa.timestamp("us", tz="UTC")
_DICT = pa.dictionary(pa.int32(), pa.string())

EVENT_SCHEMA = pa.schema(
    [
        pa.field("kind", _DICT, nullable=False),
        pa.field("transaction_id", pa.string(), nullable=False),
        pa.field("occurred_at", _TS),
        pa.field("amount", pa.float64()),
        pa.field("currency", _DICT),
        pa.field("amount_usd", pa.float64()),
        pa.field("type", _DICT),
        pa.field("channel", _DICT),
        pa.field("sender_account_id", pa.string()),
        pa.field("sender_created_at", _TS),
        pa.field("sender_country", _DICT),
        pa.field("sender_kyc_level", pa.int8()),
        pa.field("recipient_account_id", pa.string()),
        pa.field("recipient_country", _DICT),
        pa.field("recipient_bank", pa.string()),
        pa.field("recipient_wallet_address", pa.string()),
        pa.field("merchant_id", pa.string()),
        pa.field("terminal_id", pa.string()),
        pa.field("device_id", pa.string()),
        pa.field("ip", pa.string()),
        pa.field("jurisdiction", _DICT),
        pa.field("metadata", pa.string()),
        pa.field("is_fraud", pa.bool_()),
        pa.field("known_at", _TS),
        pa.field("label_source", _DICT),
    ],
    metadata={b"txguard.schema_version": SCHEMA_VERSION.encode()},
)

COLUMNS = tuple(EVENT_SCHEMA.names)


def conform(table: pa.Table) -> pa.Table:
    """Cast a table to EVENT_SCHEMA: missing columns become nulls, extra columns are refused."""
    extra = set(table.column_names) - set(COLUMNS)
    if extra:
        raise ValidationError([FieldError(c, "unknown column") for c in sorted(extra)])
    cols = []
    for f in EVENT_SCHEMA:
        if f.name in table.column_names:
            col = table.column(f.name)
            if col.type != f.type:
                col = col.cast(f.type)
        else:
            col = pa.nulls(table.num_rows, f.type)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=EVENT_SCHEMA)


def sort_for_replay(table: pa.Table) -> pa.Table:
    """Order rows by event time, transactions before labels at equal times, stable otherwise."""
    kind = pc.cast(table.column("kind"), pa.string())
    is_label = pc.equal(kind, KIND_LABEL)
    t = pc.if_else(is_label, table.column("known_at"), table.column("occurred_at"))
    idx = pa.array(range(table.num_rows), pa.int64())
    aux = pa.table({"t": t, "l": pc.cast(is_label, pa.int8()), "i": idx})
    order = pc.sort_indices(
        aux, sort_keys=[("t", "ascending"), ("l", "ascending"), ("i", "ascending")]
    )
    return table.take(order)


def write_events(path: str | Path, table: pa.Table, *, sort: bool = True) -> None:
    """Write an event table as Parquet (zstd), conformed to EVENT_SCHEMA and in replay order.

    Output is byte-identical for identical input (no timestamps or writer ids vary)."""
    table = conform(table)
    if sort:
        table = sort_for_replay(table)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, str(path), compression="zstd", row_group_size=256 * 1024)


def read_events(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Read an events file (Parquet, or JSONL by suffix ``.jsonl``) as an Arrow table."""
    p = Path(path)
    if not p.exists():
        raise ValidationError([FieldError(str(p), "no such file")])
    if p.suffix in (".jsonl", ".ndjson"):
        table = table_from_events(read_jsonl(p))
    else:
        try:
            table = conform(pq.read_table(str(p)))
        except pa.ArrowInvalid as e:
            raise ValidationError(
                [FieldError(str(p), f"not a readable events file: {e}")]
            ) from None
    return table.select(columns) if columns else table


# --------------------------------------------------------------------------- objects <-> table


def table_from_events(events: Iterable[TransactionEvent | LabelEvent]) -> pa.Table:
    """Build an event table from domain objects (slow path: tests, JSONL, small inputs)."""
    cols: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for e in events:
        row = _row(e)
        for c in COLUMNS:
            cols[c].append(row.get(c))
    return pa.Table.from_pydict(cols, schema=EVENT_SCHEMA)


def _row(e: TransactionEvent | LabelEvent) -> dict[str, Any]:
    if isinstance(e, LabelEvent):
        return {
            "kind": KIND_LABEL,
            "transaction_id": e.transaction_id,
            "is_fraud": e.is_fraud,
            "known_at": e.known_at,
            "label_source": e.source.value,
            "metadata": orjson.dumps(dict(e.metadata)).decode() if e.metadata else None,
        }
    r = e.recipient or Recipient()
    return {
        "kind": KIND_TRANSACTION,
        "transaction_id": e.transaction_id,
        "occurred_at": e.occurred_at,
        "amount": e.amount,
        "currency": e.currency,
        "amount_usd": e.amount_usd,
        "type": e.type.value if e.type else None,
        "channel": e.channel.value if e.channel else None,
        "sender_account_id": e.sender.account_id,
        "sender_created_at": e.sender.created_at,
        "sender_country": e.sender.country,
        "sender_kyc_level": e.sender.kyc_level,
        "recipient_account_id": r.account_id,
        "recipient_country": r.country,
        "recipient_bank": r.bank,
        "recipient_wallet_address": r.wallet_address,
        "merchant_id": e.merchant_id,
        "terminal_id": e.terminal_id,
        "device_id": e.device_id,
        "ip": e.ip,
        "jurisdiction": e.jurisdiction,
        "metadata": orjson.dumps(dict(e.metadata)).decode() if e.metadata else None,
    }


def events_from_table(
    table: pa.Table, *, batch_size: int = 65536
) -> Iterator[TransactionEvent | LabelEvent]:
    """Domain objects from an event table, in table order. Trusts the table (it was validated
    when written); use :func:`iter_events` with ``validate=True`` for untrusted files."""
    table = conform(table)
    for batch in table.to_batches(max_chunksize=batch_size):
        d = batch.to_pydict()
        n = batch.num_rows
        for i in range(n):
            if d["kind"][i] == KIND_LABEL:
                md = d["metadata"][i]
                yield LabelEvent(
                    transaction_id=d["transaction_id"][i],
                    is_fraud=bool(d["is_fraud"][i]),
                    known_at=d["known_at"][i].astimezone(UTC),
                    source=LabelSource(d["label_source"][i] or "import"),
                    metadata=orjson.loads(md) if md else {},
                )
                continue
            rid = d["recipient_account_id"][i]
            rc = d["recipient_country"][i]
            rb = d["recipient_bank"][i]
            rw = d["recipient_wallet_address"][i]
            md = d["metadata"][i]
            tt = d["type"][i]
            ch = d["channel"][i]
            yield TransactionEvent(
                transaction_id=d["transaction_id"][i],
                occurred_at=d["occurred_at"][i],
                amount=d["amount"][i],
                currency=d["currency"][i],
                amount_usd=d["amount_usd"][i],
                type=TransactionType(tt) if tt else None,
                channel=Channel(ch) if ch else None,
                sender=Sender(
                    account_id=d["sender_account_id"][i],
                    created_at=d["sender_created_at"][i],
                    country=d["sender_country"][i],
                    kyc_level=d["sender_kyc_level"][i],
                ),
                recipient=(Recipient(rid, rc, rb, rw) if (rid or rc or rb or rw) else None),
                merchant_id=d["merchant_id"][i],
                terminal_id=d["terminal_id"][i],
                device_id=d["device_id"][i],
                ip=d["ip"][i],
                jurisdiction=d["jurisdiction"][i],
                metadata=orjson.loads(md) if md else {},
            )


def iter_events(path: str | Path) -> Iterator[TransactionEvent | LabelEvent]:
    """Events of a file in replay order."""
    yield from events_from_table(sort_for_replay(read_events(path)))


# --------------------------------------------------------------------------- JSONL


def write_jsonl(path: str | Path, events: Iterable[TransactionEvent | LabelEvent]) -> int:
    """One JSON object per line; label lines carry ``"kind": "label"``. Returns lines written."""
    n = 0
    with open(path, "wb") as f:
        for e in events:
            if isinstance(e, LabelEvent):
                d = {"kind": KIND_LABEL, **label_to_dict(e)}
            else:
                d = {"kind": KIND_TRANSACTION, **transaction_to_dict(e)}
            f.write(orjson.dumps(d))
            f.write(b"\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> Iterator[TransactionEvent | LabelEvent]:
    """Parse and validate a JSONL events file; errors name the line number."""
    errors: list[FieldError] = []
    out: list[TransactionEvent | LabelEvent] = []
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                d = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                errors.append(FieldError("$", f"malformed JSON: {e}", row=lineno))
                continue
            if not isinstance(d, dict):
                errors.append(FieldError("$", "expected an object", row=lineno))
                continue
            kind = d.pop("kind", KIND_TRANSACTION)
            try:
                out.append(parse_label(d) if kind == KIND_LABEL else parse_transaction(d))
            except ValidationError as e:
                errors.extend(FieldError(x.loc, x.message, row=lineno) for x in e.errors)
    if errors:
        raise ValidationError(errors, f"{path}: invalid events")
    return iter(out)
