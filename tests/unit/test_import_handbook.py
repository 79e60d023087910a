from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow.compute as pc
import pytest

from txguard.datasets.importers.common import ImportRejectedError
from txguard.datasets.importers.handbook import import_handbook
from txguard.domain.errors import ValidationError
from txguard.domain.events import LabelEvent, TransactionEvent
from txguard.io.events import events_from_table


def _kind(table, kind):
    return table.filter(pc.equal(pc.cast(table.column("kind"), "string"), kind))


def _write(path: Path, rows: list[dict]) -> Path:
    df = pl.DataFrame(
        rows,
        schema={
            "TRANSACTION_ID": pl.Int64,
            "TX_DATETIME": pl.Datetime("ns"),
            "CUSTOMER_ID": pl.Int64,
            "TERMINAL_ID": pl.Int64,
            "TX_AMOUNT": pl.Float64,
            "TX_TIME_SECONDS": pl.Int64,
            "TX_TIME_DAYS": pl.Int64,
            "TX_FRAUD": pl.Int64,
            "TX_FRAUD_SCENARIO": pl.Int64,
        },
    )
    df.write_parquet(path)
    return path


def _row(i: int, *, amount: float = 10.0, fraud: int = 0, scenario: int = 0, **kw) -> dict:
    r = {
        "TRANSACTION_ID": i,
        "TX_DATETIME": datetime(2018, 4, 1, 0, i),
        "CUSTOMER_ID": 100 + i,
        "TERMINAL_ID": 7,
        "TX_AMOUNT": amount,
        "TX_TIME_SECONDS": 60 * i,
        "TX_TIME_DAYS": 0,
        "TX_FRAUD": fraud,
        "TX_FRAUD_SCENARIO": scenario,
    }
    r.update(kw)
    return r


def test_mapping_of_one_fraud_row(tmp_path: Path) -> None:
    src = _write(tmp_path / "hb.parquet", [_row(1), _row(2, amount=250.0, fraud=1, scenario=1)])
    r = import_handbook(src, label_delay=timedelta(hours=36))
    events = list(events_from_table(r.table))
    tx = [e for e in events if isinstance(e, TransactionEvent)]
    labels = [e for e in events if isinstance(e, LabelEvent)]
    assert [t.transaction_id for t in tx] == ["hb-1", "hb-2"]
    t2 = tx[1]
    assert t2.occurred_at == datetime(2018, 4, 1, 0, 2, tzinfo=UTC)
    assert (t2.amount, t2.currency, t2.amount_usd) == (250.0, "USD", 250.0)
    assert (t2.type, t2.channel) == ("card", "pos")
    assert (t2.sender.account_id, t2.terminal_id, t2.merchant_id) == ("102", "7", None)
    assert t2.metadata == {"typology": "scenario_1_amount"}
    assert tx[0].metadata == {}
    assert len(labels) == 1
    lab = labels[0]
    assert lab.transaction_id == "hb-2"
    assert lab.is_fraud is True
    assert lab.known_at == t2.occurred_at + timedelta(hours=36)
    assert lab.source == "import"
    assert lab.metadata == {"typology": "scenario_1_amount"}


def test_bad_rows_fail_the_import_naming_row_and_field(tmp_path: Path) -> None:
    src = _write(
        tmp_path / "hb.parquet",
        [_row(1), _row(2, amount=-5.0), _row(3, TX_FRAUD=2), _row(1), _row(5, CUSTOMER_ID=None)],
    )
    with pytest.raises(ImportRejectedError) as ei:
        import_handbook(src)
    msg = str(ei.value)
    assert "row 2: TX_AMOUNT: not a non-negative finite amount: -5.0" in msg
    assert "row 3: TX_FRAUD: expected 0 or 1, got '2'" in msg
    assert "row 4: TRANSACTION_ID: duplicate transaction id 1" in msg
    assert "row 5: CUSTOMER_ID: missing value" in msg
    assert "4 bad rows" in msg
    assert [e.row for e in ei.value.errors] == [2, 3, 4, 5]


def test_skip_invalid_keeps_good_rows_and_returns_rejects(tmp_path: Path) -> None:
    src = _write(
        tmp_path / "hb.parquet", [_row(1, fraud=1, scenario=2), _row(2, amount=float("nan"))]
    )
    r = import_handbook(src, skip_invalid=True, label_delay=timedelta(0))
    assert (r.source_rows, r.transactions, r.fraud_labels, r.rejected_rows) == (2, 1, 1, 1)
    assert r.rejects.to_pylist() == [
        {"line": 2, "field": "TX_AMOUNT", "reason": "not a non-negative finite amount: NaN"}
    ]
    label = _kind(r.table, "label").to_pylist()[0]
    tx = _kind(r.table, "transaction").to_pylist()[0]
    assert label["known_at"] == tx["occurred_at"]


def test_missing_column_names_the_column(tmp_path: Path) -> None:
    src = tmp_path / "hb.parquet"
    pl.DataFrame({"TRANSACTION_ID": [1]}).write_parquet(src)
    with pytest.raises(ValidationError, match=r"row 1: TX_AMOUNT: column missing from the header"):
        import_handbook(src)


def test_not_a_parquet_file(tmp_path: Path) -> None:
    src = tmp_path / "x.parquet"
    src.write_text("hello")
    with pytest.raises(ValidationError, match="not a readable Parquet file"):
        import_handbook(src)
    with pytest.raises(ValidationError, match="no such file"):
        import_handbook(tmp_path / "absent.parquet")


def test_negative_label_delay_is_refused(tmp_path: Path) -> None:
    src = _write(tmp_path / "hb.parquet", [_row(1)])
    with pytest.raises(ValidationError, match="label_delay: must not be negative"):
        import_handbook(src, label_delay=timedelta(days=-1))


def test_wrong_column_type_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "hb.parquet"
    rows = [_row(1)]
    _write(src, rows)
    df = pl.read_parquet(src).with_columns(pl.col("TX_DATETIME").cast(pl.String))
    df.write_parquet(src)
    with pytest.raises(ValidationError, match="row 1: TX_DATETIME: unexpected column type String"):
        import_handbook(src)


def test_aware_times_are_converted_not_relabelled(tmp_path: Path) -> None:
    src = tmp_path / "hb.parquet"
    _write(src, [_row(1)])
    df = pl.read_parquet(src).with_columns(
        pl.col("TX_DATETIME").dt.replace_time_zone("Europe/Paris")
    )
    df.write_parquet(src)
    (t,) = events_from_table(import_handbook(src).table)
    assert t.occurred_at == datetime(2018, 3, 31, 22, 1, tzinfo=UTC)  # 00:01 in Paris (CEST)
