from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from txguard.domain.errors import ValidationError
from txguard.domain.events import parse_label, parse_transaction
from txguard.io import (
    EVENT_SCHEMA,
    iter_events,
    read_jsonl,
    table_from_events,
    write_events,
    write_jsonl,
)


def _events():
    tx1 = parse_transaction(
        {
            "transaction_id": "t1",
            "occurred_at": "2026-01-01T10:00:00Z",
            "amount": 3,
            "currency": "EUR",
            "sender": {"account_id": "a"},
            "recipient": {"account_id": "b"},
            "metadata": {"k": 1},
        }
    )
    tx2 = parse_transaction(
        {
            "transaction_id": "t2",
            "occurred_at": "2026-01-02T10:00:00Z",
            "amount": 4,
            "currency": "USD",
            "sender": {"account_id": "a"},
        }
    )
    lab = parse_label(
        {"transaction_id": "t1", "is_fraud": True, "known_at": "2026-01-02T10:00:00Z"}
    )
    return tx1, tx2, lab


def test_parquet_round_trip_in_replay_order(tmp_path: Path) -> None:
    tx1, tx2, lab = _events()
    write_events(tmp_path / "e.parquet", table_from_events([lab, tx2, tx1]))
    assert pq.read_schema(tmp_path / "e.parquet").equals(EVENT_SCHEMA, check_metadata=False)
    # the label known at the same instant as tx2 comes after it
    assert list(iter_events(tmp_path / "e.parquet")) == [tx1, tx2, lab]


def test_parquet_writes_are_byte_identical(tmp_path: Path) -> None:
    t = table_from_events(_events())
    write_events(tmp_path / "a.parquet", t)
    write_events(tmp_path / "b.parquet", t)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_jsonl_round_trip_and_line_numbers(tmp_path: Path) -> None:
    evs = list(_events())
    write_jsonl(tmp_path / "e.jsonl", evs)
    assert list(read_jsonl(tmp_path / "e.jsonl")) == evs
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"transaction_id": "x"}\nnot json\n')
    with pytest.raises(ValidationError) as ei:
        read_jsonl(bad)
    rows = {e.row for e in ei.value.errors}
    assert rows == {1, 2}
