"""Each typology has the signature docs/simulator.md describes, so a model has something real to
find (and a reviewer can see what 'account takeover' means here)."""

from __future__ import annotations

import polars as pl
import pytest

from txguard.datasets.sim.aml import REPORTING_THRESHOLD_USD
from txguard.datasets.simulate import SimConfig, simulate


@pytest.fixture(scope="module")
def frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    df = pl.from_arrow(simulate(SimConfig(customers=1200, days=40, seed=33, fraud_rate=0.03)))
    assert isinstance(df, pl.DataFrame)
    df = df.with_columns(
        typology=pl.col("metadata").str.extract(r'"typology":"([a-z_]+)"'),
        incident=pl.col("metadata").str.extract(r'"incident":(\d+)').cast(pl.Int64),
    )
    tx = df.filter(pl.col("kind") == "transaction")
    return tx, df.filter(pl.col("kind") == "label")


def _of(tx: pl.DataFrame, name: str) -> pl.DataFrame:
    out = tx.filter(pl.col("typology") == name)
    assert out.height > 0, name
    return out


def _delays_days(tx: pl.DataFrame, labels: pl.DataFrame, name: str) -> pl.Series:
    j = labels.filter(pl.col("typology") == name).join(tx, on="transaction_id", suffix="_tx")
    return (j["known_at"] - j["occurred_at_tx"]).dt.total_hours() / 24


def test_account_takeover_new_device_new_country_then_drain(frames):
    tx, labels = frames
    ato = _of(tx, "account_takeover")
    legit = tx.filter(pl.col("typology").is_null())
    seen = legit.select("sender_account_id", "device_id").unique().drop_nulls()
    reused = ato.join(seen, on=["sender_account_id", "device_id"], how="semi")
    assert reused.height == 0  # never a device the customer used before
    # from a hosting range (RFC 5737) or a fraud-origin country's block (RU, RO, VN: 100.77-79)
    hosting = ato["ip"].str.starts_with("198.51.100.") | ato["ip"].str.starts_with("203.0.113.")
    octet = ato["ip"].str.split(".").list.get(1).cast(pl.Int64)
    assert (hosting | (ato["ip"].str.starts_with("100.") & octet.is_between(77, 79))).all()
    per = ato.group_by("incident").agg(
        n=pl.len(),
        minutes=(pl.col("occurred_at").max() - pl.col("occurred_at").min()).dt.total_minutes(),
        drained=pl.col("amount_usd").sum(),
    )
    assert per["n"].min() >= 3
    assert per["minutes"].max() <= 6 * 40  # a burst, not a habit
    assert per["drained"].median() > 1000
    assert set(ato["recipient_country"].drop_nulls().cast(pl.String)) <= {"RU", "RO", "VN"}
    assert _delays_days(tx, labels, "account_takeover").median() < 3  # customers notice fast


def test_card_testing_bursts_of_tiny_amounts_at_many_merchants(frames):
    tx, _ = frames
    ct = _of(tx, "card_testing")
    per = ct.group_by("incident").agg(
        n=pl.len(),
        merchants=pl.col("merchant_id").n_unique(),
        tiny=(pl.col("amount_usd") < 5).mean(),
        minutes=(pl.col("occurred_at").max() - pl.col("occurred_at").min()).dt.total_minutes(),
        senders=pl.col("sender_account_id").n_unique(),
    )
    assert per["n"].min() >= 10
    assert (per["merchants"] >= 0.8 * per["n"]).all()
    assert (per["tiny"] >= 0.9).all()
    assert per["minutes"].max() < 90
    assert (per["senders"] == 1).all()
    assert (ct["channel"] == "ecommerce").all()


def test_compromised_terminal_charges_many_cards_at_once(frames):
    tx, labels = frames
    cm = _of(tx, "compromised_merchant")
    per = cm.group_by("incident").agg(
        terminals=pl.col("terminal_id").n_unique(),
        cards=pl.col("sender_account_id").n_unique(),
        n=pl.len(),
        days=(pl.col("occurred_at").max() - pl.col("occurred_at").min()).dt.total_hours() / 24,
    )
    assert (per["terminals"] == 1).all()
    assert (per["cards"] == per["n"]).all()
    assert per["cards"].min() >= 5
    assert per["days"].max() <= 3
    assert (cm["channel"] == "pos").all()
    assert _delays_days(tx, labels, "compromised_merchant").min() >= 2  # chargebacks


def test_structuring_deposits_stay_just_under_the_threshold(frames):
    tx, _ = frames
    st = _of(tx, "structuring")
    cash = st.filter(pl.col("type") == "cash_in")
    assert cash.height >= 4
    assert cash["amount_usd"].is_between(8_500, REPORTING_THRESHOLD_USD, closed="left").all()
    per = st.group_by("incident").agg(
        smurfs=pl.col("sender_account_id").filter(pl.col("type") == "cash_in").n_unique(),
        collectors=pl.col("recipient_account_id")
        .filter(
            (pl.col("type") == "transfer") & pl.col("recipient_account_id").str.starts_with("c-")
        )
        .n_unique(),
    )
    assert (per["smurfs"] >= 2).all()
    assert (per["collectors"] == 1).all()


def test_mule_fan_in_then_rapid_crypto_cash_out(frames):
    tx, _ = frames
    mu = _of(tx, "mule_cashout")
    inbound = mu.filter(pl.col("type") == "transfer")
    out = mu.filter(pl.col("type") == "fiat_to_crypto")
    per_in = inbound.group_by("incident").agg(
        mule=pl.col("recipient_account_id").first(),
        mules=pl.col("recipient_account_id").n_unique(),
        senders=pl.col("sender_account_id").n_unique(),
        total=pl.col("amount_usd").sum(),
        last_in=pl.col("occurred_at").max(),
    )
    per_out = out.group_by("incident").agg(
        cashier=pl.col("sender_account_id").first(),
        total_out=pl.col("amount_usd").sum(),
        first_out=pl.col("occurred_at").min(),
        opened=pl.col("sender_created_at").first(),
    )
    j = per_in.join(per_out, on="incident")
    assert j.height == per_in.height
    assert (j["mules"] == 1).all()
    assert (j["senders"] >= 5).all()
    assert (j["mule"] == j["cashier"]).all()
    assert (j["total_out"] / j["total"]).is_between(0.9, 1.0).all()
    assert ((j["first_out"] - j["last_in"]).dt.total_hours() <= 12).all()
    assert ((j["last_in"] - j["opened"]).dt.total_days() <= 35).all()  # a fresh account


def test_bust_out_new_account_maxes_out_after_a_quiet_start(frames):
    tx, _ = frames
    bo = _of(tx, "bust_out")
    per = bo.group_by("incident").agg(
        acct=pl.col("sender_account_id").first(),
        age_days=(
            pl.col("occurred_at").min() - pl.col("sender_created_at").first()
        ).dt.total_days(),
        kyc=pl.col("sender_kyc_level").max(),
        median_usd=pl.col("amount_usd").median(),
        cash=(pl.col("type") == "cash_out").sum(),
    )
    assert per["age_days"].is_between(19, 41).all()
    assert (per["kyc"] == 1).all()
    assert (per["cash"] == 2).all()
    before = tx.filter(pl.col("typology").is_null()).join(
        per.select(pl.col("acct").alias("sender_account_id"), "median_usd"), on="sender_account_id"
    )
    assert before.height > 0  # the quiet start is there, untagged
    assert before["amount_usd"].median() * 5 < per["median_usd"].median()


def test_first_party_fraud_looks_normal_until_a_late_chargeback(frames):
    tx, labels = frames
    fp = _of(tx, "first_party")
    legit = tx.filter(pl.col("typology").is_null())
    seen = legit.select("sender_account_id", "device_id").unique().drop_nulls()
    own = fp.join(seen, on=["sender_account_id", "device_id"], how="semi")
    assert own.height > 0.5 * fp.height  # the customer's own device
    src = labels.filter(pl.col("typology") == "first_party")["label_source"]
    assert (src == "chargeback").all()
    assert _delays_days(tx, labels, "first_party").min() >= 30
