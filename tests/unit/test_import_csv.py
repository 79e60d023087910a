from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from txguard.datasets.importers.common import ImportRejectedError
from txguard.datasets.importers.csv import import_csv
from txguard.datasets.importers.mapping import load_mapping, parse_mapping
from txguard.domain.errors import ConfigurationError, ValidationError
from txguard.domain.events import LabelEvent, TransactionEvent
from txguard.io.events import EVENT_SCHEMA, events_from_table

REPO = Path(__file__).resolve().parents[2]

BASE = {
    "columns": {
        "id": "transaction_id",
        "ts": "occurred_at",
        "amt": "amount",
        "ccy": "currency",
        "cust": "sender_account_id",
    }
}


def _mapping(**extra):
    doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for k, v in extra.items():
        if k == "columns":
            doc["columns"] = {**doc["columns"], **v}
        else:
            doc[k] = v
    return parse_mapping(doc)


def _csv(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "data.csv"
    p.write_text(text)
    return p


def _events(result):
    events = list(events_from_table(result.table))
    return (
        [e for e in events if isinstance(e, TransactionEvent)],
        [e for e in events if isinstance(e, LabelEvent)],
    )


def test_full_mapping(tmp_path: Path) -> None:
    m = _mapping(
        columns={
            "to": "recipient_account_id",
            "kind": "type",
            "country": "sender_country",
            "ip": "ip",
            "kyc": "sender_kyc_level",
            "note": "metadata.note",
        },
        constants={"channel": "web"},
        values={"type": {"P2P": "transfer"}},
        label={"column": "fraud", "true_values": ["1", "yes"], "false_values": ["0", "no"]},
        id_prefix="acme-",
    )
    src = _csv(
        tmp_path,
        "id,ts,amt,ccy,cust,to,kind,country,ip,kyc,note,fraud\n"
        "t1,2026-01-01T10:00:00Z,12.5,eur,c1,c2,P2P,fr,1.2.3.4,2,hello,No\n"
        "t2,2026-01-01 11:30:00+01:00,100,USD,c1,,CARD,US,::1,,,yes\n"
        "t3,2026-01-01T11:00:00Z,7,KPW,c9,,,,,,,\n",
    )
    r = import_csv(src, mapping=m, label_delay=timedelta(hours=1))
    assert r.table.schema == EVENT_SCHEMA
    assert (r.transactions, r.labels, r.fraud_labels, r.rejected_rows) == (3, 2, 1, 0)
    tx, labels = _events(r)
    t1, t2, t3 = tx
    assert t1.transaction_id == "acme-t1"
    assert t1.occurred_at == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert (t1.amount, t1.currency, t1.amount_usd) == (12.5, "EUR", pytest.approx(13.5))
    assert (t1.type, t1.channel, t1.ip) == ("transfer", "web", "1.2.3.4")
    assert (t1.sender.account_id, t1.sender.country, t1.sender.kyc_level) == ("c1", "FR", 2)
    assert t1.recipient is not None and t1.recipient.account_id == "c2"
    assert t1.metadata == {"note": "hello"}
    assert t2.occurred_at == datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    assert t2.type == "card"
    assert t2.metadata == {}
    assert t3.amount_usd is None  # no reference rate for KPW: unknown, not invented
    assert [(lab.transaction_id, lab.is_fraud) for lab in labels] == [
        ("acme-t1", False),
        ("acme-t2", True),
    ]
    assert labels[1].known_at == t2.occurred_at + timedelta(hours=1)


def test_timestamp_without_zone_is_rejected_when_the_mapping_requires_one(tmp_path: Path) -> None:
    src = _csv(
        tmp_path,
        "id,ts,amt,ccy,cust\nt1,2026-01-01T10:00:00Z,1,EUR,c\nt2,2026-01-01T10:00:00,1,EUR,c\n",
    )
    with pytest.raises(ImportRejectedError) as ei:
        import_csv(src, mapping=_mapping())
    (err,) = ei.value.errors
    assert (err.row, err.loc) == (3, "ts")
    assert err.message.startswith("timestamp has no time zone: '2026-01-01T10:00:00'")


def test_zone_in_mapping_reads_local_times(tmp_path: Path) -> None:
    m = _mapping(timestamp={"format": "%d/%m/%Y %H:%M", "zone": "Europe/Paris"})
    src = _csv(
        tmp_path,
        "id,ts,amt,ccy,cust\n"
        "t1,01/07/2026 12:00,1,EUR,c\n"
        "t2,29/03/2026 02:30,1,EUR,c\n"  # does not exist in Paris (clocks jump 02:00 -> 03:00)
        "t3,2026-07-01 12:00,1,EUR,c\n",
    )
    r = import_csv(src, mapping=m, skip_invalid=True)
    (t1,), _ = _events(r)
    assert t1.occurred_at == datetime(2026, 7, 1, 10, tzinfo=UTC)
    reasons = {x["line"]: x["reason"] for x in r.rejects.to_pylist()}
    assert reasons[3].startswith("not a %d/%m/%Y %H:%M timestamp in Europe/Paris")
    assert reasons[4].startswith("not a %d/%m/%Y %H:%M timestamp in Europe/Paris")


def test_bad_amount_and_missing_value_name_line_and_column(tmp_path: Path) -> None:
    src = _csv(
        tmp_path,
        "id,ts,amt,ccy,cust\nt1,2026-01-01T10:00:00Z,1e400,EUR,c\nt2,2026-01-01T10:00:00Z,5,EUR,\n",
    )
    with pytest.raises(ImportRejectedError) as ei:
        import_csv(src, mapping=_mapping())
    assert [str(e) for e in ei.value.errors] == [
        "row 2: amt: not a valid amount: '1e400'",
        "row 3: cust: missing value for sender_account_id",
    ]


def test_message_shows_twenty_problems_and_the_count(tmp_path: Path) -> None:
    rows = "".join(f"t{i},2026-01-01T10:00:00Z,x{i},EUR,c\n" for i in range(25))
    src = _csv(tmp_path, "id,ts,amt,ccy,cust\n" + rows)
    with pytest.raises(ImportRejectedError) as ei:
        import_csv(src, mapping=_mapping())
    lines = str(ei.value).splitlines()
    assert "25 bad rows (25 problems)" in lines[0]
    assert lines[1] == "  line 2: amt: not a valid amount: 'x0'"
    assert lines[20] == "  line 21: amt: not a valid amount: 'x19'"
    assert lines[21:] == ["  ... and 5 more"]
    assert ei.value.rejects.num_rows == 25


def test_many_bad_rows_keep_every_reject_but_cap_field_errors(tmp_path: Path) -> None:
    rows = "".join(f"t{i},2026-01-01T10:00:00Z,x,EUR,c\n" for i in range(1200))
    src = _csv(tmp_path, "id,ts,amt,ccy,cust\n" + rows)
    with pytest.raises(ImportRejectedError) as ei:
        import_csv(src, mapping=_mapping())
    assert ei.value.rejects.num_rows == 1200
    assert len(ei.value.errors) == 1000
    assert ei.value.bad_rows == 1200
    assert str(ei.value).endswith("  ... and 1,180 more")


def test_missing_column_is_named(tmp_path: Path) -> None:
    src = _csv(tmp_path, "id,ts,amount,ccy,cust\nt1,2026-01-01T10:00:00Z,1,EUR,c\n")
    with pytest.raises(ValidationError, match="row 1: amt: column missing from the header"):
        import_csv(src, mapping=_mapping())


def test_generated_ids_and_constants(tmp_path: Path) -> None:
    m = parse_mapping(
        {
            "columns": {"when": "occurred_at", "value": "amount", "who": "sender_account_id"},
            "constants": {"currency": "gbp", "type": "card"},
        }
    )
    src = _csv(tmp_path, "when,value,who\n2026-01-01T10:00:00+00:00,3,a\n")
    (t,), labels = _events(import_csv(src, mapping=m))
    assert (t.transaction_id, t.currency, t.type) == ("csv-2", "GBP", "card")
    assert labels == []


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"columns": {"a": "occurred_at"}}, "nothing feeds the required field amount"),
        (
            {**BASE, "columns": {**BASE["columns"], "x": "colour"}},
            "columns.x: unknown field 'colour'",
        ),
        (
            {**BASE, "constants": {"currency": "EUR"}},
            "constants.currency: also fed by column 'ccy'",
        ),
        ({**BASE, "timestamp": {"format": "%Y-%m-%d"}}, "timestamp.zone: the format has no %z"),
        ({**BASE, "timestamp": {"zone": "Mars/Olympus"}}, "unknown time zone 'Mars/Olympus'"),
        ({**BASE, "label": {"column": "f", "true_values": [True]}}, "quote yes/no/true/false"),
        ({**BASE, "colour": 1}, "colour: unknown key"),
        ({**BASE, "version": 2}, "version: unsupported 2"),
    ],
)
def test_bad_mappings_name_the_key(doc, message) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        parse_mapping(doc)


def test_bad_constant_is_a_configuration_error(tmp_path: Path) -> None:
    m = parse_mapping(
        {
            "columns": {"when": "occurred_at", "value": "amount", "who": "sender_account_id"},
            "constants": {"currency": "EURO"},
        }
    )
    src = _csv(tmp_path, "when,value,who\n2026-01-01T10:00:00Z,3,a\n")
    with pytest.raises(
        ConfigurationError, match=r"constants\.currency: unknown currency code: 'EURO'"
    ):
        import_csv(src, mapping=m)


def test_example_mappings_load() -> None:
    files = sorted((REPO / "examples" / "mappings").glob("*.yaml"))
    assert files, "examples/mappings has no mapping"
    for f in files:
        doc = yaml.safe_load(f.read_text())
        assert load_mapping(f) == parse_mapping(doc)


def test_card_payments_example(tmp_path: Path) -> None:
    src = _csv(
        tmp_path,
        "payment_id,created_at,amount,currency,card_holder,merchant,terminal,entry_mode,"
        "holder_country,device,ip_address,mcc,chargeback\n"
        "p1,2026-03-02 09:15:00,42.10,EUR,h1,m1,t1,CHIP,DE,d1,10.0.0.1,5411,\n"
        "p2,2026-03-02 23:59:59,900.00,EUR,h2,m2,,ECOM,AT,,2001:db8::1,5732,Y\n",
    )
    r = import_csv(src, mapping=REPO / "examples" / "mappings" / "card_payments.yaml")
    (p1, p2), (label,) = _events(r)
    assert p1.transaction_id == "cp-p1"
    assert p1.occurred_at == datetime(2026, 3, 2, 8, 15, tzinfo=UTC)  # Berlin is UTC+1 in March
    assert (p1.type, p1.channel, p1.merchant_id, p1.terminal_id) == ("card", "pos", "m1", "t1")
    assert p1.metadata == {"mcc": "5411"}
    assert (p2.channel, p2.ip) == ("ecommerce", "2001:db8::1")
    assert (label.transaction_id, label.is_fraud) == ("cp-p2", True)


_cell = st.text(alphabet="ab1.-:TZ+ 09,", max_size=8)


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(st.lists(_cell, min_size=5, max_size=5), min_size=1, max_size=12))
def test_every_row_is_imported_or_rejected(tmp_path_factory, rows) -> None:
    """Nothing is lost: for any input, transactions + rejected rows == rows read, and every
    reject names a real line of the file."""
    src = tmp_path_factory.mktemp("h") / "d.csv"
    body = "".join(",".join(r) + "\n" for r in rows)
    src.write_text("id,ts,amt,ccy,cust\n" + body)
    r = import_csv(src, mapping=_mapping(), skip_invalid=True)
    assert r.transactions + r.rejected_rows == r.source_rows
    last_line = 1 + len(body.splitlines())
    assert all(2 <= n <= last_line for n in r.rejects.column("line").to_pylist())
    if r.rejected_rows:
        with pytest.raises(ImportRejectedError):
            import_csv(src, mapping=_mapping())


def test_label_without_false_values_labels_only_the_fraud_rows(tmp_path: Path) -> None:
    """With only ``true_values`` any other value (or none) means "not known": no label at all."""
    m = _mapping(label={"column": "fraud", "true_values": ["yes"]})
    src = _csv(
        tmp_path,
        "id,ts,amt,ccy,cust,fraud\n"
        "a,2026-01-01T10:00:00Z,1,USD,c1,yes\n"
        "b,2026-01-01T11:00:00Z,2,USD,c1,no\n"
        "c,2026-01-01T12:00:00Z,3,USD,c1,\n",
    )
    r = import_csv(src, mapping=m)
    assert (r.transactions, r.labels, r.fraud_labels, r.rejected_rows) == (3, 1, 1, 0)
    _, labels = _events(r)
    assert [(lab.transaction_id, lab.is_fraud) for lab in labels] == [("a", True)]
