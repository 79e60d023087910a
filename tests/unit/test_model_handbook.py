"""Handbook benchmark pieces: features through txguard's engine (offline build == online
engine, so the benchmarked model is one the service can serve), the fold calendar, the assessment
filter, and errors on files that are not in the handbook's raw layout."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from txguard.cli.benchmark import load_handbook_events as load_events
from txguard.domain.errors import ValidationError
from txguard.domain.events import TransactionEvent
from txguard.features.engine import FeatureEngine
from txguard.features.stores.memory import MemoryStore
from txguard.io.events import events_from_table
from txguard.model.benchmark_handbook import (
    DAY0,
    RAW_COLUMNS,
    Fold,
    HandbookData,
    assessment_rows,
    folds,
    load_spec,
    prepare,
    training_rows,
)
from txguard.model.train import StageTimer

SCHEMA = dict.fromkeys(RAW_COLUMNS, pl.Int64) | {
    "TX_DATETIME": pl.Datetime("ns"),
    "TX_AMOUNT": pl.Float64,
}


def _raw(rows: list[tuple[float, int, int, float, int]]) -> pl.DataFrame:
    """(day as a float, customer, terminal, amount, fraud) -> a frame in the raw layout."""
    out = []
    for i, (d, cust, term, amount, fraud) in enumerate(rows):
        secs = round(d * 86400)
        out.append(
            {
                "TRANSACTION_ID": i,
                "TX_DATETIME": datetime(2018, 4, 1) + timedelta(seconds=secs),
                "CUSTOMER_ID": cust,
                "TERMINAL_ID": term,
                "TX_AMOUNT": amount,
                "TX_TIME_SECONDS": secs,
                "TX_TIME_DAYS": secs // 86400,
                "TX_FRAUD": fraud,
                "TX_FRAUD_SCENARIO": fraud * 2,
            }
        )
    return pl.DataFrame(out, schema=SCHEMA)


# customer 1 pays at terminal 5 on day 0 (fraud), customers 2-3 there later; customer 1 also
# spends regularly elsewhere, then 5x its usual amount on day 12
ROWS = [
    (0.1, 1, 5, 20.0, 1),
    (1.1, 1, 6, 10.0, 0),
    (2.1, 1, 6, 12.0, 0),
    (3.1, 2, 5, 30.0, 0),
    (4.1, 1, 6, 11.0, 0),
    (10.1, 3, 5, 40.0, 0),
    (12.1, 1, 6, 55.0, 0),
    (45.1, 2, 5, 30.0, 0),
]


def _col(d: HandbookData, name: str) -> list[float]:
    return d.x[:, d.names.index(name)].tolist()


def test_benchmark_features_are_the_engines_online_values(tmp_path: Path) -> None:
    src = tmp_path / "hb.parquet"
    _raw(ROWS).write_parquet(src)
    spec = load_spec()
    d = prepare(load_events(src), StageTimer(), spec)
    assert d.names == tuple(spec.names)
    assert d.day.tolist() == [0, 1, 2, 3, 4, 10, 12, 45]
    assert d.customer.tolist() == [1, 1, 1, 2, 1, 3, 1, 2]
    assert d.fraud.tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    # the terminal's fraud counts only once its label is known, 7 days later
    assert _col(d, "terminal_fraud_count_7d_lag7d") == [0, 0, 0, 0, 0, 1, 0, 0]
    assert _col(d, "terminal_fraud_count_30d_lag7d")[3] == 0  # day 3: not known yet
    assert _col(d, "terminal_fraud_count_30d_lag7d")[5] == 1
    # the customer's own fraud, known from day 7 on; amount 55 vs a 30-day mean of 13.25
    assert _col(d, "sender_fraud_count_30d")[4] == 0
    assert _col(d, "sender_fraud_count_30d")[6] == 1
    assert _col(d, "sender_ratio_mean_amount_usd_30d")[6] == pytest.approx(55 / 13.25)
    # TX_FRAUD_SCENARIO is ground truth (the importer keeps it as metadata), never a feature
    assert not any("scenario" in n or "typology" in n for n in d.names)

    # parity: the service's FeatureEngine, fed the same events one by one, computes the same
    # values bit for bit (NaN where NaN), in the same row order
    eng = FeatureEngine(spec, MemoryStore())
    online = []
    for e in events_from_table(load_events(src)):
        if isinstance(e, TransactionEvent):
            online.append(eng.process_transaction(e).vector)
        else:
            eng.apply_label(e)
    np.testing.assert_array_equal(np.vstack(online), d.x)


def test_csv_input_gives_the_same_features(tmp_path: Path) -> None:
    df = _raw(ROWS)
    df.write_parquet(tmp_path / "hb.parquet")
    df.write_csv(tmp_path / "hb.csv")
    a = prepare(load_events(tmp_path / "hb.parquet"), StageTimer())
    b = prepare(load_events(tmp_path / "hb.csv"), StageTimer())
    np.testing.assert_array_equal(a.x, b.x)
    assert a.day.tolist() == b.day.tolist()


def test_fold_calendar_matches_the_book() -> None:
    test = folds("test")
    valid = folds("valid")
    first = test[0]
    assert DAY0 + timedelta(days=first.train_start) == date(2018, 8, 15)
    # the last test fold assesses 2018-08-08..08-14, the chapter-3 test week
    assert test[-1].label()["assess"] == "2018-08-08..2018-08-14"
    # validation assessment weeks end before the first test assessment week starts
    assert max(f.assess[1] for f in valid) <= min(f.assess[0] for f in test)


def test_assessment_drops_customers_with_known_fraud() -> None:
    f = Fold(train_start=0, kind="test")  # train days 0-6, delay 7-13, assess 14-20
    day = np.array([3, 14, 14, 6, 15, 16, 21])
    cust = np.array([1, 1, 2, 3, 3, 4, 5])
    fraud = np.array([1, 0, 0, 1, 0, 0, 0])
    d = HandbookData(day=day, customer=cust, fraud=fraud.astype(np.int8), x=np.zeros((7, 1)),
                     names=("a",))  # fmt: skip
    # customer 1 (fraud day 3) is known from day 11 on; customer 3 (fraud day 6) from day 14
    assert assessment_rows(d, f).tolist() == [2, 5]
    assert training_rows(d, f, 7).tolist() == [0, 3]


def test_files_not_in_the_raw_layout_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "raw.parquet"
    _raw(ROWS).drop("TERMINAL_ID").write_parquet(p)
    with pytest.raises(ValidationError, match="TERMINAL_ID"):
        load_events(p)
    bad = _raw(ROWS).with_columns(pl.Series("TX_AMOUNT", [1.0] * 7 + [-2.0]))
    bad.write_parquet(p)
    with pytest.raises(ValidationError, match="TX_AMOUNT"):
        load_events(p)
    with pytest.raises(ValidationError, match="no such file"):
        load_events(tmp_path / "nope.parquet")


def test_data_outside_the_protocol_calendar_is_refused(tmp_path: Path) -> None:
    from txguard.model.benchmark_handbook import run

    rng = np.random.default_rng(0)
    n = 2000
    days = np.sort(rng.random(n) * 20)  # only 20 days of April 2018
    rows = [
        (float(t), int(c), int(k), float(a), int(f))
        for t, c, k, a, f in zip(
            days, rng.integers(0, 50, n), rng.integers(0, 80, n), rng.random(n) * 100,
            rng.random(n) < 0.05, strict=True,
        )
    ]  # fmt: skip
    p = tmp_path / "small.parquet"
    _raw(rows).write_parquet(p)
    with pytest.raises(ValidationError, match=r"data: no fraud in the valid fold"):
        run(load_events(p), grid=({"train_days": 7, "num_leaves": 7},))
