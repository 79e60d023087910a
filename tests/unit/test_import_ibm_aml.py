"""The IBM AML importer on a tiny synthetic file in the data set's exact layout (the real data set
is not on this machine): duplicated ``Account`` header, zone-less ``2022/09/01 00:20`` times,
currency names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from txguard.datasets.importers.common import ImportRejectedError
from txguard.datasets.importers.csv import import_csv
from txguard.datasets.importers.ibm_aml import import_ibm_aml
from txguard.domain.errors import ValidationError
from txguard.domain.events import LabelEvent, TransactionEvent
from txguard.io.events import events_from_table

REPO = Path(__file__).resolve().parents[2]
HEADER = (
    "Timestamp,From Bank,Account,To Bank,Account,Amount Received,Receiving Currency,"
    "Amount Paid,Payment Currency,Payment Format,Is Laundering"
)
GOOD = [
    "2022/09/01 00:20,010,8000EBD30,010,8000EBD30,3697.34,US Dollar,3697.34,US Dollar,Reinvestment,0",
    "2022/09/01 00:15,03209,8000F4670,001,8000F5340,900.00,US Dollar,800.00,Euro,Wire,1",
    "2022/09/01 00:03,012,80011F990,1362,80011FA70,0.0022,Bitcoin,0.0022,Bitcoin,Bitcoin,0",
]
BAD = "2022-09-01 00:20,010,X,010,Y,1,US Dollar,12x,Dollar,Wire,0"


def _csv(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    p = tmp_path / "HI-Small_Trans.csv"
    p.write_text("\n".join([header, *rows]) + "\n")
    return p


def test_mapping(tmp_path: Path) -> None:
    r = import_ibm_aml(_csv(tmp_path, *GOOD), label_delay=timedelta(days=3))
    assert (r.source_rows, r.transactions, r.labels, r.rejected_rows) == (3, 3, 1, 0)
    events = list(events_from_table(r.table))
    tx = {e.transaction_id: e for e in events if isinstance(e, TransactionEvent)}
    (label,) = (e for e in events if isinstance(e, LabelEvent))
    # replay order: by time, not file order
    assert list(tx) == ["ibm-4", "ibm-3", "ibm-2"]
    wire = tx["ibm-3"]
    assert wire.occurred_at == datetime(2022, 9, 1, 0, 15, tzinfo=UTC)  # zone-less: read as UTC
    assert (wire.amount, wire.currency) == (800.0, "EUR")
    assert wire.amount_usd == pytest.approx(800 * 1.08)
    assert wire.type == "transfer"
    assert wire.sender.account_id == "03209:8000F4670"
    assert wire.recipient is not None
    assert (wire.recipient.account_id, wire.recipient.bank) == ("001:8000F5340", "001")
    assert wire.metadata == {
        "from_bank": "03209",
        "amount_received": 900.0,
        "receiving_currency": "USD",
        "payment_format": "Wire",
    }
    assert tx["ibm-4"].currency == "BTC"
    assert tx["ibm-4"].type == "crypto_transfer"
    assert tx["ibm-2"].sender.account_id == tx["ibm-2"].recipient.account_id  # type: ignore[union-attr]
    assert label.transaction_id == "ibm-3"
    assert label.known_at == wire.occurred_at + timedelta(days=3)


def test_bad_row_fails_with_line_and_fields(tmp_path: Path) -> None:
    with pytest.raises(ImportRejectedError) as ei:
        import_ibm_aml(_csv(tmp_path, *GOOD, BAD))
    assert [(e.row, e.loc) for e in ei.value.errors] == [
        (5, "Timestamp"),
        (5, "Amount Paid"),
        (5, "Payment Currency"),
    ]
    msg = str(ei.value)
    assert "line 5: Timestamp: expected a time like 2022/09/01 00:20, got '2022-09-01 00:20'" in msg
    assert "line 5: Amount Paid: not a valid amount: '12x'" in msg
    assert "line 5: Payment Currency: unknown currency 'Dollar'" in msg


def test_skip_invalid_imports_the_rest(tmp_path: Path) -> None:
    r = import_ibm_aml(_csv(tmp_path, GOOD[0], BAD, GOOD[1]), skip_invalid=True)
    assert (r.transactions, r.fraud_labels, r.rejected_rows) == (2, 1, 1)
    assert set(r.rejects.column("line").to_pylist()) == {3}


def test_wrong_header_is_refused(tmp_path: Path) -> None:
    header = HEADER.replace("Amount Paid", "Amount")
    with pytest.raises(ValidationError) as ei:
        import_ibm_aml(_csv(tmp_path, *GOOD, header=header))
    assert "row 1: column 8: expected 'Amount Paid', found 'Amount'" in str(ei.value)


def test_generic_example_mapping_agrees_with_the_ibm_importer(tmp_path: Path) -> None:
    src = _csv(tmp_path, *GOOD)
    generic = import_csv(src, mapping=REPO / "examples" / "mappings" / "ibm_aml_generic.yaml")
    dedicated = import_ibm_aml(src)
    for col in ("kind", "transaction_id", "occurred_at", "amount", "currency", "type", "known_at"):
        assert generic.table.column(col).to_pylist() == dedicated.table.column(col).to_pylist()
