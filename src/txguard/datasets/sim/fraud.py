"""Fraud typologies against customers and merchants.

Each function draws ``k`` incidents and returns their transactions, tagged with the typology
(ground truth, never a feature) and a label plan. Sizes and label behaviour follow what fraud
teams report; the figures are choices of this simulator, documented in ``docs/simulator.md``.
"""

from __future__ import annotations

import numpy as np

from txguard.datasets.sim.legit import round_cash
from txguard.datasets.sim.population import Population
from txguard.datasets.sim.world import (
    CH,
    COUNTRY_CCY,
    COUNTRY_WEIGHTS,
    DAY,
    FRAUD_ORIGINS,
    HOME,
    HOUR,
    MINUTE,
    TYP,
    US,
    WEB_TERMINAL,
    Cols,
    LabelPlan,
    T,
    atm_terminal,
    batch,
    concat,
    country_ips,
    groups,
    hosting_ips,
    lognormal,
    merchant_terminal,
    offsets,
    plan_labels,
)

MEAN_SIZE = {
    "account_takeover": 5.0,
    "card_testing": 26.0,
    "compromised_merchant": 30.0,
    "bust_out": 7.0,
    "first_party": 2.0,
}

# how each typology's labels arrive (docs/simulator.md explains the choices)
LABELS = {
    "account_takeover": LabelPlan(
        "customer_report", p=0.9, median_hours=20, sigma=1.0, min_hours=1, per_incident=True
    ),
    "card_testing": LabelPlan(
        "analyst", p=0.35, median_hours=120, sigma=0.7, min_hours=6, per_incident=True
    ),
    "compromised_merchant": LabelPlan(
        "chargeback", p=0.85, median_hours=12 * 24, sigma=0.5, min_hours=48, per_incident=False
    ),
    "bust_out": LabelPlan(
        "analyst", p=0.9, median_hours=40 * 24, sigma=0.25, min_hours=25 * 24, per_incident=True
    ),
    "first_party": LabelPlan(
        "chargeback", p=0.95, median_hours=55 * 24, sigma=0.3, min_hours=30 * 24, per_incident=False
    ),
}


def incident_starts(
    pop: Population, rng: np.random.Generator, k: int, margin_days: float = 3.0
) -> np.ndarray:
    """Incident start times spread over the window, leaving room for the incident to unfold."""
    span = max(pop.days - margin_days, 0.5)
    return pop.start + (rng.uniform(0, span, k) * DAY).astype(np.int64)


def _victims(pop: Population, rng: np.random.Generator, k: int) -> np.ndarray:
    return rng.integers(0, pop.n, k)


def account_takeover(pop: Population, rng: np.random.Generator, k: int) -> Cols:
    """A new device, from a new IP in another country, logs in and drains the account: a small
    probe, then large transfers to fresh accounts abroad and conversions to crypto, minutes
    apart. The customer usually notices within a day or two and reports it."""
    sizes = rng.integers(3, 8, k)
    inc, pos = groups(sizes)
    n = len(inc)
    victim = _victims(pop, rng, k)[inc]
    origin = rng.choice(FRAUD_ORIGINS, size=k)[inc]
    device = pop.book.fraud_devices(k)[inc]
    ip_inc = np.where(
        rng.random(k) < 0.5,
        country_ips(rng, rng.choice(FRAUD_ORIGINS, size=k)),
        hosting_ips(rng, k),
    )
    t = incident_starts(pop, rng, k)[inc] + offsets(rng.integers(2, 40, n) * MINUTE, inc, pos)
    usd = np.where(
        pos == 0, rng.uniform(1, 25, n), lognormal(rng, 1500.0 * pop.level[victim], 0.6, n)
    )
    to_crypto = rng.random(n) < 0.4
    mule = pop.book.external(origin)
    mobile = rng.random(k)[inc] < 0.5
    cols = batch(
        n,
        t=t,
        usd=usd,
        ccy=COUNTRY_CCY[pop.country[victim]],
        type=np.where(to_crypto, T["fiat_to_crypto"], T["transfer"]),
        channel=np.where(mobile, CH["mobile"], CH["web"]),
        sender=victim,
        recipient=np.where(to_crypto, -1, mule),
        rcountry=np.where(to_crypto, -1, origin),
        bank=np.where(to_crypto, -1, origin.astype(np.int64) * 3 + 1 + rng.integers(0, 3, n)),
        wallet=np.where(to_crypto, pop.book.fraud_wallets(n), -1),
        device=device,
        ip=ip_inc[inc],
        typology=TYP["account_takeover"],
        incident=inc,
    )
    return plan_labels(rng, cols, LABELS["account_takeover"])


def card_testing(pop: Population, rng: np.random.Generator, k: int) -> Cols:
    """A bot tries a stolen card with tiny online payments at many merchants, seconds apart,
    then spends with it once it works. Tiny amounts are rarely disputed: most is never labelled."""
    sizes = rng.integers(10, 43, k)
    inc, pos = groups(sizes)
    n = len(inc)
    last = pos == sizes[inc] - 1
    victim = _victims(pop, rng, k)[inc]
    merchant = rng.integers(0, len(pop.merchant_country), n)
    t = incident_starts(pop, rng, k)[inc] + offsets(rng.integers(5, 90, n) * US, inc, pos)
    usd = np.where(last, lognormal(rng, 450.0, 0.5, n), np.round(rng.uniform(0.5, 3.0, n), 2))
    cols = batch(
        n,
        t=t,
        usd=usd,
        ccy=COUNTRY_CCY[pop.merchant_country[merchant]],
        type=T["card"],
        channel=CH["ecommerce"],
        sender=victim,
        rcountry=pop.merchant_country[merchant],
        merchant=merchant,
        terminal=merchant_terminal(merchant, WEB_TERMINAL),
        device=pop.book.fraud_devices(k)[inc],
        ip=hosting_ips(rng, k)[inc],
        typology=TYP["card_testing"],
        incident=inc,
    )
    return plan_labels(rng, cols, LABELS["card_testing"])


def compromised_merchant(pop: Population, rng: np.random.Generator, k: int) -> Cols:
    """A terminal at a real merchant is taken over (or the merchant colludes): cloned cards of
    many different customers are charged there within a day or three, at sizes far above the
    merchant's usual basket. Each cardholder disputes on their own, a week or more later."""
    out = []
    for i in range(k):
        c = int(rng.choice(HOME, p=COUNTRY_WEIGHTS))
        merchant = int(pop.merchants_in(rng, np.array([c]))[0])
        victims = pop.customers_of(rng, c, int(rng.integers(12, 49)))
        n = len(victims)
        t0 = int(incident_starts(pop, rng, 1)[0])
        t = t0 + (rng.uniform(0, rng.uniform(1, 3), n) * DAY).astype(np.int64)
        out.append(
            batch(
                n,
                t=t,
                usd=lognormal(rng, 320.0, 0.45, n),
                ccy=COUNTRY_CCY[c],
                type=T["card"],
                channel=CH["pos"],
                sender=victims,
                rcountry=c,
                merchant=merchant,
                terminal=merchant_terminal(
                    merchant, int(rng.integers(0, pop.merchant_terminals[merchant]))
                ),
                typology=TYP["compromised_merchant"],
                incident=i,
            )
        )
    cols = concat(out)
    return plan_labels(rng, cols, LABELS["compromised_merchant"])


def bust_out(pop: Population, rng: np.random.Generator, k: int) -> Cols:
    """A new account behaves well for a few weeks (small card payments, not fraud yet), then
    maxes out in a day or two: large purchases and cash withdrawals, never repaid. An analyst
    confirms it after the missed payments, a month or more later."""
    country = rng.choice(HOME, size=k, p=COUNTRY_WEIGHTS).astype(np.int16)
    t_bust = incident_starts(pop, rng, k, margin_days=2)
    created = t_bust - (rng.uniform(20, 40, k) * DAY).astype(np.int64)
    acct = pop.book.open(country, created, np.ones(k, np.int8))
    device = pop.book.fraud_devices(k)
    ip = country_ips(rng, country)

    # build-up: legitimate-looking small payments between opening and the bust
    b_sizes = rng.integers(6, 13, k)
    b_inc, _ = groups(b_sizes)
    bn = len(b_inc)
    bt = created[b_inc] + (rng.random(bn) * (t_bust - created)[b_inc]).astype(np.int64)
    bm = pop.merchants_in(rng, country[b_inc])
    keep = bt >= pop.start
    build = batch(
        bn,
        t=bt,
        usd=lognormal(rng, 25.0, 0.5, bn),
        ccy=COUNTRY_CCY[country[b_inc]],
        type=T["card"],
        channel=CH["pos"],
        sender=acct[b_inc],
        rcountry=country[b_inc],
        merchant=bm,
        terminal=merchant_terminal(bm, 0),
    )
    build = {key: v[keep] for key, v in build.items()}

    sizes = rng.integers(4, 11, k)
    inc, pos = groups(sizes)
    n = len(inc)
    cash = pos >= sizes[inc] - 2  # the last two are cash withdrawals
    merchant = pop.merchants_in(rng, country[inc])
    online = rng.random(n) < 0.5
    ccy = COUNTRY_CCY[country[inc]]
    usd = np.where(cash, round_cash(np.full(n, 500.0), ccy), lognormal(rng, 900.0, 0.4, n))
    t = t_bust[inc] + (rng.uniform(0, 36, n) * HOUR).astype(np.int64)
    bust = batch(
        n,
        t=t,
        usd=usd,
        ccy=ccy,
        type=np.where(cash, T["cash_out"], T["card"]),
        channel=np.where(cash, CH["atm"], np.where(online, CH["ecommerce"], CH["pos"])),
        sender=acct[inc],
        rcountry=country[inc],
        merchant=np.where(cash, -1, merchant),
        terminal=np.where(
            cash,
            atm_terminal(country[inc], rng.integers(0, 200, n)),
            merchant_terminal(merchant, np.where(online, WEB_TERMINAL, 0)),
        ),
        device=np.where(online & ~cash, device[inc], -1),
        ip=np.where(online & ~cash, ip[inc], -1),
        typology=TYP["bust_out"],
        incident=inc,
    )
    bust = plan_labels(rng, bust, LABELS["bust_out"])
    return concat([build, bust])


def first_party(pop: Population, rng: np.random.Generator, k: int) -> Cols:
    """A genuine customer buys online as usual (own device, home IP, plausible amounts) and
    later claims the goods never came: the only signal is the late chargeback."""
    sizes = rng.integers(1, 4, k)
    inc, pos = groups(sizes)
    n = len(inc)
    cust = _victims(pop, rng, k)[inc]
    merchant = pop.merchants_in(rng, pop.country[cust])
    t = incident_starts(pop, rng, k, margin_days=5)[inc] + offsets(
        (rng.uniform(2, 48, n) * HOUR).astype(np.int64), inc, pos
    )
    cols = batch(
        n,
        t=t,
        usd=lognormal(rng, 350.0 * pop.level[cust], 0.5, n),
        ccy=COUNTRY_CCY[pop.country[cust]],
        type=T["card"],
        channel=CH["ecommerce"],
        sender=cust,
        rcountry=pop.country[cust],
        merchant=merchant,
        terminal=merchant_terminal(merchant, WEB_TERMINAL),
        device=pop.device(rng, cust),
        ip=pop.home_ip[cust],
        typology=TYP["first_party"],
        incident=inc,
    )
    return plan_labels(rng, cols, LABELS["first_party"])
