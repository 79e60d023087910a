from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pytest

from txguard.datasets.importers.common import ImportRejectedError
from txguard.datasets.importers.paysim import PAYSIM_EPOCH, import_paysim
from txguard.domain.errors import ValidationError
from txguard.domain.events import LabelEvent, TransactionEvent
from txguard.io.events import EVENT_SCHEMA, events_from_table, sort_for_replay

HEADER = (
    "step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,"
    "newbalanceDest,isFraud,isFlaggedFraud"
)


def _csv(tmp_path: Path, *rows: str) -> Path:
    p = tmp_path / "paysim.csv"
    p.write_text("\n".join([HEADER, *rows]) + "\n")
    return p


def test_real_sample_counts(shared_data: Path) -> None:
    r = import_paysim(shared_data / "paysim" / "sample_10k.csv", label_delay=timedelta(days=7))
    assert (r.source_rows, r.transactions, r.labels, r.fraud_labels) == (10_000, 10_000, 500, 500)
    assert r.rejected_rows == 0
    assert r.table.schema == EVENT_SCHEMA
    assert r.table.equals(sort_for_replay(r.table))
    types = set(pc.unique(pc.cast(r.table.column("type"), "string")).to_pylist()) - {None}
    assert types == {"payment", "transfer", "cash_out", "cash_in", "debit"}


def test_mapping_of_rows(tmp_path: Path) -> None:
    src = _csv(
        tmp_path,
        "3,PAYMENT,19.5,C1,100.0,80.5,M77,0.0,0.0,0,0",
        "5,TRANSFER,1000,C2,1000.0,0.0,C9,0.0,0.0,1,1",
    )
    r = import_paysim(src, label_delay=timedelta(hours=2))
    events = list(events_from_table(r.table))
    pay, transfer = (e for e in events if isinstance(e, TransactionEvent))
    (label,) = (e for e in events if isinstance(e, LabelEvent))
    assert pay.transaction_id == "ps-2"
    assert pay.occurred_at == PAYSIM_EPOCH + timedelta(hours=3)
    assert pay.occurred_at == datetime(2016, 1, 1, 3, tzinfo=UTC)
    assert (pay.amount, pay.currency, pay.amount_usd) == (19.5, "USD", 19.5)
    assert (pay.type, pay.channel) == ("payment", "mobile")
    assert pay.sender.account_id == "C1"
    assert pay.recipient is not None
    assert pay.recipient.account_id == "M77"
    assert pay.merchant_id == "M77"
    assert pay.metadata == {
        "oldbalanceOrg": 100.0,
        "newbalanceOrig": 80.5,
        "oldbalanceDest": 0.0,
        "newbalanceDest": 0.0,
        "isFlaggedFraud": 0,
    }
    assert transfer.merchant_id is None
    assert transfer.type == "transfer"
    assert label.transaction_id == "ps-3"
    assert label.is_fraud is True
    assert label.known_at == transfer.occurred_at + timedelta(hours=2)


def test_other_currency_converts_amount_usd(tmp_path: Path) -> None:
    src = _csv(tmp_path, "1,CASH_IN,100,C1,0,100,C2,0,0,0,0")
    r = import_paysim(src, currency="EUR")
    row = r.table.to_pylist()[0]
    assert (row["currency"], row["amount_usd"]) == ("EUR", pytest.approx(108.0))
    with pytest.raises(ValidationError, match="currency: unknown currency code 'ZZZ'"):
        import_paysim(src, currency="ZZZ")


def test_bad_amount_names_line_and_field(tmp_path: Path) -> None:
    src = _csv(
        tmp_path,
        "1,PAYMENT,10,C1,0,0,M1,0,0,0,0",
        "1,PAYMENT,12,5,C1,0,0,M1,0,0,0,0",  # an unquoted decimal comma: one field too many
        "2,PAYMENT,abc,C1,0,0,M1,0,0,0,0",
        "2,WIRE,-3,C1,0,0,M1,0,0,2,0",
        "x,PAYMENT,1,,0,0,M1,0,0,0,0",
    )
    with pytest.raises(ImportRejectedError) as ei:
        import_paysim(src)
    lines = str(ei.value).splitlines()
    assert "4 bad rows (7 problems)" in lines[0]
    assert lines[1:] == [
        "  line 3: $: 12 fields, the header has 11",
        "  line 4: amount: not a valid amount: 'abc'",
        "  line 5: type: unknown type 'WIRE'; one of PAYMENT, TRANSFER, CASH_OUT, CASH_IN, DEBIT",
        "  line 5: amount: not a valid amount: '-3'",
        "  line 5: isFraud: expected 0 or 1, got '2'",
        "  line 6: nameOrig: missing value",
        "  line 6: step: expected an hour number 0..87840, got 'x'",
    ]
    assert [e.row for e in ei.value.errors] == [3, 4, 5, 5, 5, 6, 6]


def test_skip_invalid(tmp_path: Path) -> None:
    src = _csv(tmp_path, "1,PAYMENT,10,C1,0,0,M1,0,0,1,0", "", "2,PAYMENT,abc,C1,0,0,M1,0,0,1,0")
    r = import_paysim(src, skip_invalid=True)
    assert (r.transactions, r.fraud_labels, r.rejected_rows) == (1, 1, 2)
    assert r.rejects.to_pylist() == [
        {"line": 3, "field": "$", "reason": "empty line"},
        {"line": 4, "field": "amount", "reason": "not a valid amount: 'abc'"},
    ]


def test_missing_column(tmp_path: Path) -> None:
    p = tmp_path / "p.csv"
    p.write_text("step,type,amount\n1,PAYMENT,3\n")
    with pytest.raises(ValidationError) as ei:
        import_paysim(p)
    assert "row 1: nameOrig: column missing from the header" in str(ei.value)


def test_trailing_empty_lines_are_not_records(tmp_path: Path) -> None:
    p = tmp_path / "p.csv"
    p.write_text(
        HEADER + "\n1,PAYMENT,10,C1,0,0,M1,0,0,0,0\n\n2,PAYMENT,10,C1,0,0,M1,0,0,0,0\n\n\n"
    )
    r = import_paysim(p, skip_invalid=True)
    assert (r.source_rows, r.transactions, r.rejected_rows) == (3, 2, 1)
    assert r.rejects.column("line").to_pylist() == [3]
