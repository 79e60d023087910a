"""The simulator's contract: deterministic, the asked fraud rate, every typology, honest labels,
valid canonical events, bad settings refused by name."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from txguard.datasets.sim.assemble import terminal_id
from txguard.datasets.sim.world import COUNTRY_CODES, WEB_TERMINAL, atm_terminal, merchant_terminal
from txguard.datasets.simulate import TYPOLOGY_SHARES, SimConfig, simulate, simulate_to_file
from txguard.domain.errors import ValidationError
from txguard.domain.events import (
    LabelEvent,
    TransactionEvent,
    label_to_dict,
    parse_label,
    parse_transaction,
    transaction_to_dict,
)
from txguard.io.events import EVENT_SCHEMA, events_from_table, read_events

TYPOLOGY = r'"typology":"([a-z_]+)"'


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return simulate(SimConfig(customers=800, days=30, seed=11, fraud_rate=0.02))


@pytest.fixture(scope="module")
def frames(table: pa.Table) -> tuple[pl.DataFrame, pl.DataFrame]:
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    df = df.with_columns(pl.col("metadata").str.extract(TYPOLOGY).alias("typology"))
    return df.filter(pl.col("kind") == "transaction"), df.filter(pl.col("kind") == "label")


def test_same_config_gives_byte_identical_files(tmp_path):
    cfg = SimConfig(customers=300, days=20, seed=7)
    simulate_to_file(tmp_path / "a.parquet", cfg)
    simulate_to_file(tmp_path / "b.parquet", cfg)
    a, b = (tmp_path / "a.parquet").read_bytes(), (tmp_path / "b.parquet").read_bytes()
    assert len(a) > 10_000
    assert a == b
    assert read_events(tmp_path / "a.parquet").equals(simulate(cfg))


def test_another_seed_gives_other_data():
    a = simulate(SimConfig(customers=200, days=10, seed=1))
    b = simulate(SimConfig(customers=200, days=10, seed=2))
    assert not a.equals(b)


def test_fraud_does_not_shift_legitimate_behaviour():
    """Each component draws from its own stream: asking for more fraud adds fraud and leaves
    every legitimate transaction as it was."""

    def legit(rate: float) -> pl.DataFrame:
        df = pl.from_arrow(simulate(SimConfig(customers=300, days=15, seed=5, fraud_rate=rate)))
        assert isinstance(df, pl.DataFrame)
        return (
            df.filter((pl.col("kind") == "transaction") & pl.col("metadata").is_null())
            .drop("transaction_id")
            .sort(["occurred_at", "sender_account_id", "amount"])
        )

    low, high = legit(0.005), legit(0.05)
    # bust-out build-up payments are untagged and scale with fraud; everything else must match
    key = ["occurred_at", "sender_account_id", "amount", "currency", "type", "channel"]
    key += ["merchant_id", "terminal_id", "recipient_account_id", "device_id", "ip"]
    base = low.join(high, on=key, how="semi", nulls_equal=True)
    assert base.height >= low.height - 200
    assert base.height > 0.98 * low.height


@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_fraud_rate_close_to_the_one_asked(rate):
    df = pl.from_arrow(simulate(SimConfig(customers=1000, days=30, seed=3, fraud_rate=rate)))
    assert isinstance(df, pl.DataFrame)
    tx = df.filter(pl.col("kind") == "transaction")
    observed = tx.filter(pl.col("metadata").str.contains("typology")).height / tx.height
    assert observed == pytest.approx(rate, rel=0.2)


def test_zero_fraud_rate_gives_no_fraud():
    df = pl.from_arrow(simulate(SimConfig(customers=200, days=10, seed=3, fraud_rate=0.0)))
    assert isinstance(df, pl.DataFrame)
    assert df.filter(pl.col("metadata").is_not_null()).height == 0
    assert df.filter(pl.col("is_fraud") == True).height == 0  # noqa: E712


def test_every_typology_appears_in_transactions_and_labels(frames):
    tx, labels = frames
    assert set(tx["typology"].drop_nulls().unique()) == set(TYPOLOGY_SHARES)
    assert set(labels["typology"].drop_nulls().unique()) == set(TYPOLOGY_SHARES)
    assert sum(TYPOLOGY_SHARES.values()) == pytest.approx(1.0)


def test_typologies_split_fraud_roughly_as_documented():
    df = pl.from_arrow(simulate(SimConfig(customers=1500, days=20, seed=4, fraud_rate=0.03)))
    assert isinstance(df, pl.DataFrame)
    typ = df.filter(pl.col("kind") == "transaction")["metadata"].str.extract(TYPOLOGY).drop_nulls()
    shares = typ.value_counts(normalize=True)
    got = dict(zip(shares[:, 0].to_list(), shares[:, 1].to_list(), strict=True))
    for name, share in TYPOLOGY_SHARES.items():
        assert got[name] == pytest.approx(share, abs=0.06), name


def test_labels_come_after_their_transaction_and_carry_its_typology(frames):
    tx, labels = frames
    joined = labels.join(tx, on="transaction_id", how="left", suffix="_tx")
    assert joined["occurred_at_tx"].null_count() == 0  # every label names a real transaction
    assert (joined["known_at"] > joined["occurred_at_tx"]).all()
    fraud = joined.filter(pl.col("is_fraud"))
    assert (fraud["typology"] == fraud["typology_tx"]).all()
    assert fraud["typology"].null_count() == 0
    cleared = joined.filter(~pl.col("is_fraud"))
    assert cleared.height > 0
    assert cleared["typology_tx"].null_count() == cleared.height
    assert set(labels["label_source"].unique()) == {"chargeback", "analyst", "customer_report"}
    assert labels["transaction_id"].n_unique() == labels.height


def test_some_fraud_is_never_labelled_and_chargebacks_are_late(frames):
    tx, labels = frames
    fraud = tx.filter(pl.col("typology").is_not_null())
    labelled = fraud.join(labels.filter(pl.col("is_fraud")), on="transaction_id", how="semi")
    assert 0.4 < labelled.height / fraud.height < 0.95
    cb = labels.filter(pl.col("label_source") == "chargeback").join(
        tx, on="transaction_id", suffix="_tx"
    )
    delay_days = (cb["known_at"] - cb["occurred_at_tx"]).dt.total_hours() / 24
    assert delay_days.min() >= 2
    assert delay_days.median() > 7


def test_rows_are_valid_canonical_events(table):
    assert table.schema.equals(EVENT_SCHEMA, check_metadata=False)
    sample = pa.concat_tables([table.slice(0, 1500), table.slice(table.num_rows - 500, 500)])
    kinds = set()
    for e in events_from_table(sample):
        if isinstance(e, TransactionEvent):
            assert parse_transaction(transaction_to_dict(e)) == e
            kinds.add("tx")
        else:
            assert isinstance(e, LabelEvent)
            assert parse_label(label_to_dict(e)) == e
            kinds.add("label")
    assert kinds == {"tx", "label"}


def test_ids_are_numbered_in_time_order(frames):
    tx, _ = frames
    ordered = tx.sort("occurred_at", maintain_order=True)["transaction_id"]
    assert ordered[0] == "sim-00000001"
    assert ordered.to_list() == sorted(ordered.to_list())
    assert tx["transaction_id"].n_unique() == tx.height


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"customers": -5}, "customers"),
        ({"customers": 0}, "customers"),
        ({"days": 0}, "days"),
        ({"seed": -1}, "seed"),
        ({"fraud_rate": 0.6}, "fraud_rate"),
        ({"fraud_rate": -0.1}, "fraud_rate"),
        ({"start": datetime(2026, 1, 1)}, "start"),  # naive on purpose
    ],
)
def test_bad_settings_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(ValidationError) as err:
        SimConfig(**kwargs)
    assert [e.loc for e in err.value.errors] == [field]


def test_unwritable_output_is_refused_before_generating(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(ValidationError, match=r"out: .*is a directory"):
        simulate_to_file(tmp_path / "dir", SimConfig(customers=10, days=1))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValidationError, match="out: cannot write"):
        simulate_to_file(blocker / "a.parquet", SimConfig(customers=10, days=1))


def test_no_transaction_before_its_account_was_opened(frames):
    tx, _ = frames
    ours = tx.filter(pl.col("sender_created_at").is_not_null())
    assert ours.height > 0.9 * tx.height
    assert (ours["occurred_at"] >= ours["sender_created_at"]).all()
    kyc = ours["sender_kyc_level"]
    assert kyc.is_between(0, 3).all()
    assert kyc.null_count() == 0


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    customers=st.integers(1, 40),
    days=st.integers(1, 12),
    seed=st.integers(0, 2**32),
    rate=st.sampled_from([0.0, 0.001, 0.1, 0.5]),
)
def test_any_small_configuration_gives_consistent_events(customers, days, seed, rate):
    cfg = SimConfig(customers=customers, days=days, seed=seed, fraud_rate=rate)
    table = simulate(cfg)
    assert table.equals(simulate(cfg))
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    tx = df.filter(pl.col("kind") == "transaction")
    labels = df.filter(pl.col("kind") == "label")
    assert tx["transaction_id"].n_unique() == tx.height
    assert tx["amount"].min() is None or tx["amount"].min() > 0
    joined = labels.join(tx, on="transaction_id", how="left", suffix="_tx")
    assert joined["occurred_at_tx"].null_count() == 0
    assert (joined["known_at"] > joined["occurred_at_tx"]).all()
    tagged = tx.filter(pl.col("metadata").is_not_null()).height
    assert (tagged == 0) == (rate == 0.0)


def test_terminal_numbers_read_back_as_the_terminal_they_encode():
    """world builds terminal numbers, assemble names them: the two agree on the layout."""
    merchants = np.array([0, 12, 345_678])
    assert [terminal_id(int(t)) for t in merchant_terminal(merchants, WEB_TERMINAL)] == [
        "m-000000-web",
        "m-000012-web",
        "m-345678-web",
    ]
    assert [terminal_id(int(t)) for t in merchant_terminal(merchants, np.array([0, 3, 6]))] == [
        "m-000000-t0",
        "m-000012-t3",
        "m-345678-t6",
    ]
    gb = COUNTRY_CODES.index("GB")
    atms = atm_terminal(np.array([gb, gb], dtype=np.int16), np.array([5, 199]))
    assert [terminal_id(int(t)) for t in atms] == ["atm-GB-005", "atm-GB-199"]
