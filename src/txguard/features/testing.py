"""Event streams for parity tests and benchmarks: a seeded generator and a handbook loader.

The handbook loader is a deliberately tiny mapping of the raw Fraud-Detection-Handbook columns
(the full importer lives in ``txguard.datasets``): customer -> sender, terminal -> terminal, USD,
and a fraud label known 7 days after each fraudulent transaction.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from txguard.domain.events import LabelEvent, Recipient, Sender, TransactionEvent
from txguard.io.events import EVENT_SCHEMA, KIND_LABEL, KIND_TRANSACTION, sort_for_replay

HANDBOOK_LABEL_DELAY = timedelta(days=7)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def handbook_events(
    path: str | Path, *, rows: int | None = None, customers: int | None = None
) -> pa.Table:
    """Events (replay order) from the handbook's raw parquet: optionally only its first ``rows``,
    or only customers ``0..customers-1`` (their whole six months, so 7-day labels come into play)."""
    raw = pq.read_table(
        str(path),
        columns=[
            "TRANSACTION_ID",
            "TX_DATETIME",
            "CUSTOMER_ID",
            "TERMINAL_ID",
            "TX_AMOUNT",
            "TX_FRAUD",
        ],
    )
    if customers is not None:
        raw = raw.filter(pc.less(raw.column("CUSTOMER_ID"), customers))
    if rows is not None:
        raw = raw.slice(0, rows)
    n = raw.num_rows
    at = pc.assume_timezone(raw.column("TX_DATETIME").cast(pa.timestamp("us")), "UTC")
    tid = pc.cast(raw.column("TRANSACTION_ID"), pa.string())
    txs = {
        "kind": pa.array([KIND_TRANSACTION] * n, pa.string()),
        "transaction_id": tid,
        "occurred_at": at,
        "amount": raw.column("TX_AMOUNT"),
        "currency": pa.array(["USD"] * n, pa.string()),
        "sender_account_id": pc.cast(raw.column("CUSTOMER_ID"), pa.string()),
        "terminal_id": pc.cast(raw.column("TERMINAL_ID"), pa.string()),
    }
    fraud = pc.equal(raw.column("TX_FRAUD"), 1)
    lab_at = pc.filter(at, fraud)
    nl = len(lab_at)
    delay = pa.scalar(HANDBOOK_LABEL_DELAY, pa.duration("us"))
    labels = {
        "kind": pa.array([KIND_LABEL] * nl, pa.string()),
        "transaction_id": pc.filter(tid, fraud),
        "is_fraud": pa.array([True] * nl),
        "known_at": pc.add(lab_at, delay),
        "label_source": pa.array(["chargeback"] * nl, pa.string()),
    }
    return sort_for_replay(pa.concat_tables([_conform(txs), _conform(labels)]))


def _conform(cols: dict[str, pa.Array | pa.ChunkedArray]) -> pa.Table:
    n = len(next(iter(cols.values())))
    arrays = []
    for f in EVENT_SCHEMA:
        a = cols.get(f.name)
        arrays.append(pa.nulls(n, f.type) if a is None else a.cast(f.type))
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def generate_stream(
    n: int,
    *,
    seed: int = 0,
    accounts: int = 40,
    span: timedelta = timedelta(days=60),
    label_rate: float = 0.1,
    currencies: Sequence[str] = ("USD", "EUR", "BTC"),
) -> list[TransactionEvent | LabelEvent]:
    """A random event stream in replay order: bursts at equal times, optional fields often
    missing, labels (some flipped) known hours to weeks after their transaction."""
    rnd = random.Random(seed)
    step = span / max(n, 1)
    t = T0
    events: list[tuple[datetime, int, int, TransactionEvent | LabelEvent]] = []
    for i in range(n):
        if rnd.random() > 0.15:  # otherwise the same instant as the previous one (a burst)
            t += step * rnd.expovariate(1.0)
        s = f"a{rnd.randrange(accounts)}"
        opt = rnd.random
        tx = TransactionEvent(
            transaction_id=f"tx{i}",
            occurred_at=t.replace(microsecond=rnd.randrange(1_000_000)) if opt() < 0.3 else t,
            amount=round(rnd.choice([rnd.uniform(1, 300), rnd.uniform(9000, 9999), 50.0]), 2),
            currency=rnd.choice(list(currencies)),
            amount_usd=None if opt() < 0.7 else round(rnd.uniform(1, 500), 2),
            sender=Sender(
                s,
                created_at=T0 - timedelta(days=rnd.randrange(1, 900)) if opt() < 0.5 else None,
                country=rnd.choice(["DE", "FR", None]),
                kyc_level=rnd.choice([0, 1, 2, 3, None]),
            ),
            recipient=Recipient(
                account_id=f"r{rnd.randrange(15)}" if opt() < 0.7 else None,
                country=rnd.choice(["DE", "GB", "NG", None]),
                wallet_address=f"w{rnd.randrange(5)}" if opt() < 0.2 else None,
            ),
            merchant_id=f"m{rnd.randrange(6)}" if opt() < 0.5 else None,
            terminal_id=f"T{rnd.randrange(10)}" if opt() < 0.8 else None,
            device_id=f"d{rnd.randrange(12)}" if opt() < 0.6 else None,
            ip=f"10.0.0.{rnd.randrange(8)}" if opt() < 0.5 else None,
        )
        events.append((tx.occurred_at, 0, len(events), tx))
        if rnd.random() < label_rate:
            known = tx.occurred_at + timedelta(hours=rnd.choice([0, 1, 30, 24 * 7, 24 * 20]))
            events.append((known, 1, len(events), LabelEvent(tx.transaction_id, True, known)))
            if rnd.random() < 0.2:
                later = known + timedelta(days=rnd.choice([0, 2]))
                events.append((later, 1, len(events), LabelEvent(tx.transaction_id, False, later)))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    return [e[3] for e in events]


def shuffle_locally(
    events: Sequence[TransactionEvent | LabelEvent], *, seed: int = 0, distance: int = 5
) -> Iterator[TransactionEvent | LabelEvent]:
    """The stream with each event moved up to ``distance`` places: out-of-order arrival."""
    rnd = np.random.default_rng(seed)
    keys = np.arange(len(events)) + rnd.uniform(0, distance, len(events))
    for i in np.argsort(keys, kind="stable"):
        yield events[int(i)]
