"""Legitimate behaviour has the structure docs/simulator.md claims: recurring counterparties,
quiet nights in local time, weekend habits, monthly salaries and bills, few devices, home IPs,
crypto conversions at retail sizes. Checked on the generated table, not on the generator."""

from __future__ import annotations

import polars as pl
import pytest

from txguard.datasets.sim.world import COUNTRIES
from txguard.datasets.simulate import SimConfig, simulate

OFFSETS = {c.code: c.utc_offset for c in COUNTRIES if c.code != "US"}  # the US spans 4 zones


@pytest.fixture(scope="module")
def legit() -> pl.DataFrame:
    # 62 days: at least two paydays and two of every bill for everyone
    df = pl.from_arrow(simulate(SimConfig(customers=700, days=62, seed=21, fraud_rate=0.01)))
    assert isinstance(df, pl.DataFrame)
    return df.filter((pl.col("kind") == "transaction") & pl.col("metadata").is_null()).filter(
        pl.col("sender_account_id").str.starts_with("c-")
        | pl.col("recipient_account_id").str.starts_with("c-")
    )


def _cards(legit: pl.DataFrame) -> pl.DataFrame:
    return legit.filter(pl.col("type") == "card")


def test_most_card_payments_are_at_merchants_the_customer_keeps_going_back_to(legit):
    per_pair = _cards(legit).group_by("sender_account_id", "merchant_id").len()
    per_customer = per_pair.group_by("sender_account_id").agg(
        total=pl.col("len").sum(),
        recurring=pl.col("len").filter(pl.col("len") >= 3).sum(),
        merchants=pl.len(),
    )
    busy = per_customer.filter(pl.col("total") >= 30)
    assert busy.height > 100
    share = busy["recurring"] / busy["total"]
    assert share.median() > 0.75
    # ... yet not a closed world: busy customers also try other places
    assert (busy["merchants"] > 8).mean() > 0.5


def test_transfers_mostly_go_to_the_same_people(legit):
    t = legit.filter(pl.col("type") == "transfer")
    pairs = t.group_by("sender_account_id", "recipient_account_id").len()
    repeated = pairs.filter(pl.col("len") >= 2)["len"].sum()
    assert repeated / t.height > 0.6


def test_nights_are_quiet_in_local_time(legit):
    cards = _cards(legit).filter(
        pl.col("sender_country").is_in(list(OFFSETS))
        & (pl.col("recipient_country") == pl.col("sender_country"))  # not travelling
    )
    local = cards.with_columns(
        hour=(
            (
                pl.col("occurred_at").dt.hour().cast(pl.Float64)
                + pl.col("occurred_at").dt.minute() / 60
                + pl.col("sender_country").cast(pl.String).replace_strict(OFFSETS)
            )
            % 24
        ).floor()
    )
    hours = local["hour"]
    assert local.height > 10_000
    night = ((hours >= 0) & (hours < 6)).mean()
    assert night < 0.06
    assert ((hours >= 9) & (hours < 22)).mean() > 0.75
    # the same payments in UTC hours are not quiet at night: the habit is local
    utc = cards["occurred_at"].dt.hour()
    assert ((utc >= 0) & (utc < 6)).mean() > 2 * night


def test_saturdays_are_busier_than_sundays_for_cards(legit):
    wd = _cards(legit)["occurred_at"].dt.weekday().value_counts()
    n = dict(zip(wd[:, 0].to_list(), wd[:, 1].to_list(), strict=True))
    assert n[6] > 1.2 * n[7]  # polars: 6 Saturday, 7 Sunday


def test_salaries_arrive_monthly_from_the_same_employer(legit):
    sal = legit.filter(pl.col("type") == "salary").sort("occurred_at")
    per = sal.group_by("recipient_account_id").agg(
        n=pl.len(),
        employers=pl.col("sender_account_id").n_unique(),
        gap_days=(pl.col("occurred_at").diff().dt.total_hours() / 24).drop_nulls(),
        spread=pl.col("amount_usd").max() / pl.col("amount_usd").min(),
    )
    customers = legit["sender_account_id"].filter(legit["sender_account_id"].str.starts_with("c-"))
    assert per.height > 0.75 * customers.n_unique()  # most customers are salaried
    assert per["n"].is_between(2, 3).all()
    assert (per["employers"] == 1).all()
    gaps = per["gap_days"].explode().drop_nulls()
    assert gaps.is_between(26, 35).all()  # monthly, moved to the Friday before weekends
    assert (per["spread"] < 1.1).all()  # the same salary each month
    hours = sal["occurred_at"].dt.weekday()
    assert hours.is_in([6, 7]).sum() == 0  # never paid on a weekend


def test_rent_and_bills_recur_monthly_at_steady_amounts(legit):
    bills = legit.filter(pl.col("type").is_in(["payment", "debit"]))
    per = bills.group_by("sender_account_id", "recipient_account_id").agg(
        n=pl.len(), spread=pl.col("amount_usd").max() / pl.col("amount_usd").min()
    )
    assert per["n"].is_between(2, 3).all()
    assert (per["spread"] < 1.4).mean() > 0.95


def test_people_use_few_devices_and_connect_from_home(legit):
    own = legit.filter(pl.col("sender_account_id").str.starts_with("c-"))
    devices = own.group_by("sender_account_id").agg(pl.col("device_id").drop_nulls().n_unique())
    assert devices["device_id"].max() <= 3
    codes = [c.code for c in COUNTRIES]
    at_home = own.filter(
        pl.col("ip").is_not_null()
        & ((pl.col("recipient_country") == pl.col("sender_country")) | (pl.col("type") != "card"))
    ).with_columns(octet=pl.col("ip").str.split(".").list.get(1).cast(pl.Int64))
    expected = (
        at_home["sender_country"]
        .cast(pl.String)
        .replace_strict({c: 64 + i for i, c in enumerate(codes)}, return_dtype=pl.Int64)
    )
    assert (at_home["octet"] == expected).mean() > 0.99


def test_some_customers_travel_and_pay_abroad_in_local_currency(legit):
    abroad = _cards(legit).filter(pl.col("recipient_country") != pl.col("sender_country"))
    travellers = abroad["sender_account_id"].n_unique()
    assert 0.04 < travellers / legit["sender_account_id"].n_unique() < 0.25
    assert (abroad["currency"] != abroad["sender_country"].cast(pl.String)).all()


def test_crypto_conversions_at_retail_sizes(legit):
    buy = legit.filter(pl.col("type") == "fiat_to_crypto")
    sell = legit.filter(pl.col("type") == "crypto_to_fiat")
    assert buy.height > 50
    assert sell.height > 20
    assert buy["recipient_wallet_address"].null_count() == 0
    assert 40 < buy["amount_usd"].median() < 1000
    assert buy["amount_usd"].max() <= 25_000.01
    assert set(sell["currency"].cast(pl.String).unique()) <= {"BTC", "ETH", "USDT"}
    btc = sell.filter(pl.col("currency") == "BTC")["amount"]
    assert btc.median() < 0.1  # fractions of a bitcoin
    holders = pl.concat([buy["sender_account_id"], sell["sender_account_id"]]).n_unique()
    assert holders < 0.3 * legit["sender_account_id"].n_unique()


def test_cash_withdrawals_are_round_amounts(legit):
    atm = legit.filter(pl.col("type") == "cash_out")
    mantissa = atm["amount"] / (10 ** atm["amount"].log10().floor())
    assert ((mantissa - mantissa.round()).abs() < 1e-6).all()
