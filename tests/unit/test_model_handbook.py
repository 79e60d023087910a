"""Handbook benchmark pieces: point-in-time features, the fold calendar, the assessment filter,
and the raw-layout reader's errors."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from txguard.domain.errors import ValidationError
from txguard.model.benchmark_handbook import (
    DAY0,
    RAW_COLUMNS,
    Fold,
    HandbookData,
    assessment_rows,
    folds,
    load_raw,
    training_rows,
)
from txguard.model.handbook_features import DAY, handbook_features


def _feat(x: np.ndarray, names: tuple[str, ...], name: str) -> np.ndarray:
    return x[:, names.index(name)]


def test_customer_windows_include_current_and_respect_time() -> None:
    # customer 1 at day 0, 0.5, 3 and 10; customer 2 once at day 0.5
    t = (np.array([0, 0.5, 0.5, 3, 10]) * DAY).astype(np.int64)
    cust = np.array([1, 1, 2, 1, 1])
    amt = np.array([10.0, 20.0, 99.0, 30.0, 40.0])
    x, names = handbook_features(
        customer=cust, terminal=np.zeros(5, np.int64), t_seconds=t, amount=amt, fraud=np.zeros(5)
    )
    assert _feat(x, names, "sender_count_1d").tolist() == [1, 2, 1, 1, 1]
    assert _feat(x, names, "sender_count_7d").tolist() == [1, 2, 1, 3, 1]
    np.testing.assert_allclose(_feat(x, names, "sender_mean_amount_usd_7d"), [10, 15, 99, 20, 40])
    # ratio to the mean of the *previous* 30 days: 30 / mean(10, 20) = 2
    assert _feat(x, names, "sender_ratio_mean_amount_usd_30d")[3] == pytest.approx(2.0)
    assert np.isnan(_feat(x, names, "sender_ratio_mean_amount_usd_30d")[0])
    np.testing.assert_allclose(
        _feat(x, names, "sender_time_since_last"), [np.nan, 0.5 * DAY, np.nan, 2.5 * DAY, 7 * DAY]
    )


def test_terminal_fraud_is_used_only_once_known() -> None:
    # a fraud at terminal 5 on day 0; later transactions there on day 3, 7.5 and 30
    t = (np.array([0, 3, 7.5, 30]) * DAY).astype(np.int64)
    fraud = np.array([1, 0, 0, 0])
    x, names = handbook_features(
        customer=np.arange(4), terminal=np.full(4, 5), t_seconds=t,
        amount=np.ones(4), fraud=fraud,
    )  # fmt: skip
    known = _feat(x, names, "terminal_fraud_count_7d_lag7d")
    # day 3: not known yet (7-day delay); day 7.5: known; day 30: outside (16, 23]
    assert known.tolist() == [0, 0, 1, 0]
    assert _feat(x, names, "terminal_fraud_rate_7d_lag7d")[2] == 1.0
    assert _feat(x, names, "terminal_fraud_count_30d_lag7d")[3] == 1  # (-7, 23]


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


def test_load_raw_names_missing_columns_and_bad_rows(tmp_path: Path) -> None:
    cols = {c: pa.array([1, 2], pa.int64()) for c in RAW_COLUMNS}
    cols["TX_AMOUNT"] = pa.array([1.0, -2.0])
    p = tmp_path / "raw.parquet"
    pq.write_table(pa.table(cols), p)
    with pytest.raises(ValidationError, match=r"row 2: TX_AMOUNT"):
        load_raw(p)
    pq.write_table(pa.table({k: v for k, v in cols.items() if k != "TERMINAL_ID"}), p)
    with pytest.raises(ValidationError, match="TERMINAL_ID: column missing"):
        load_raw(p)
    with pytest.raises(ValidationError, match="no such file"):
        load_raw(tmp_path / "nope.parquet")


def test_data_outside_the_protocol_calendar_is_refused(tmp_path: Path) -> None:
    from txguard.model.benchmark_handbook import run

    n = 2000
    rng = np.random.default_rng(0)
    secs = np.sort(rng.integers(0, 20 * 86400, n))  # only 20 days of April 2018
    cols = {
        "TRANSACTION_ID": pa.array(np.arange(n)),
        "TX_DATETIME": pa.array(secs.astype("datetime64[s]")),
        "CUSTOMER_ID": pa.array(rng.integers(0, 50, n)),
        "TERMINAL_ID": pa.array(rng.integers(0, 80, n)),
        "TX_AMOUNT": pa.array(rng.random(n) * 100),
        "TX_TIME_SECONDS": pa.array(secs),
        "TX_TIME_DAYS": pa.array(secs // 86400),
        "TX_FRAUD": pa.array((rng.random(n) < 0.05).astype(np.int64)),
        "TX_FRAUD_SCENARIO": pa.array(np.zeros(n, np.int64)),
    }
    p = tmp_path / "small.parquet"
    pq.write_table(pa.table(cols), p)
    with pytest.raises(ValidationError, match=r"data: no fraud in the valid fold"):
        run(p, grid=({"train_days": 7, "num_leaves": 7},))
