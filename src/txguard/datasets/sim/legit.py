"""Legitimate behaviour, drawn from each customer's habits (:mod:`.population`).

What makes it look like people, and what ``tests/unit/test_simulate_behaviour.py`` checks:
card payments mostly at the customer's eight favourite merchants, in local daytime with a lunch
and an evening peak, more on Fridays and Saturdays; transfers mostly to the same three people;
rent, bills and salary monthly on a fixed day (salary moved to the Friday before a weekend); ATM
withdrawals in round notes; crypto conversions for the one customer in seven who holds crypto;
a trip abroad for about one in eight, with payments in the local currency and from local IPs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from txguard.datasets.sim.population import BILLS, COUNTERPARTS, FAVOURITES, Population
from txguard.datasets.sim.world import (
    CH,
    COUNTRY_CCY,
    CRYPTO_CODES,
    DAY,
    HOME,
    OWN_BANK,
    RATE,
    US,
    UTC_OFFSET,
    WEB_TERMINAL,
    WEEKDAY_CARD,
    WEEKDAY_TRANSFER,
    Cols,
    T,
    atm_terminal,
    batch,
    concat,
    country_ips,
    local_seconds,
    lognormal,
    merchant_terminal,
    sample_days,
    stream,
)

_FAVOURITE_WEIGHTS = np.array([0.3, 0.2, 0.14, 0.1, 0.08, 0.07, 0.06, 0.05])
_COUNTERPART_WEIGHTS = np.array([0.55, 0.3, 0.15])


def occurred(pop: Population, day: np.ndarray, secs: np.ndarray, tz: np.ndarray) -> np.ndarray:
    """µs since epoch (UTC) of a local time ``secs`` after midnight on ``day`` in zone ``tz``."""
    return pop.start + day.astype(np.int64) * DAY + ((secs - tz * 3600.0) * US).astype(np.int64)


def round_cash(usd: np.ndarray, ccy: np.ndarray) -> np.ndarray:
    """USD value of a round local-currency amount near ``usd`` (90, 100, 10 000 yen …)."""
    local = usd / RATE[ccy]
    step = 10.0 ** np.floor(np.log10(np.maximum(local, 1.0)))
    out: np.ndarray = np.maximum(step, np.round(local / step) * step) * RATE[ccy]
    return out


def draw_times(
    pop: Population, rng: np.random.Generator, who: np.ndarray, rate: float, weekday: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer, day, local seconds) per transaction when each of ``who`` makes a Poisson
    number of them, ``rate`` a day on average, on days weighted by ``weekday``; late risers'
    times of day shift by three hours."""
    cust = np.repeat(who, rng.poisson(rate * pop.days, len(who)))
    n = len(cust)
    day = sample_days(rng, n, pop.days, pop.first_weekday, weekday)
    secs = local_seconds(rng, n, np.where(pop.late_riser[cust], 3, 0))
    return cust, day, secs


def card(pop: Population, seed: int) -> Cols:
    rng = stream(seed, "legit.card")
    counts = rng.poisson(pop.card_rate * pop.days)
    cust = np.repeat(np.arange(pop.n), counts)
    n = len(cust)
    day = sample_days(rng, n, pop.days, pop.first_weekday, WEEKDAY_CARD)
    ts = pop.trip_start[cust]
    trip = (ts >= 0) & (day >= ts) & (day < ts + pop.trip_days[cust])
    where = np.where(trip, pop.trip_country[cust], pop.country[cust])
    tz = np.where(trip, UTC_OFFSET[where], pop.tz[cust])
    secs = local_seconds(rng, n, np.where(pop.late_riser[cust], 3, 0))

    fav = rng.choice(FAVOURITES, size=n, p=_FAVOURITE_WEIGHTS)
    merchant = np.where(
        rng.random(n) < 0.82, pop.favourites[cust, fav], pop.merchants_in(rng, pop.country[cust])
    )
    merchant[trip] = pop.merchants_in(rng, where[trip])
    pos = rng.random(n) < np.where(trip, 0.9, 0.62)
    slot = (rng.random(n) * pop.merchant_terminals[merchant]).astype(np.int64)
    terminal = merchant_terminal(merchant, np.where(pos, slot, WEB_TERMINAL))
    device = np.where(pos, -1, pop.device(rng, cust))
    ip = np.where(rng.random(n) < 0.7, pop.home_ip[cust], pop.mobile_ip[cust])
    ip = np.where(trip, country_ips(rng, where), ip)
    ip = np.where(pos, -1, ip)
    usd = np.maximum(0.5, lognormal(rng, pop.merchant_price[merchant] * pop.level[cust], 0.55, n))
    return batch(
        n,
        t=occurred(pop, day, secs, tz),
        usd=usd,
        ccy=COUNTRY_CCY[pop.merchant_country[merchant]],
        type=T["card"],
        channel=np.where(pos, CH["pos"], CH["ecommerce"]),
        sender=cust,
        rcountry=pop.merchant_country[merchant],
        merchant=merchant,
        terminal=terminal,
        device=device,
        ip=ip,
    )


def transfers(pop: Population, seed: int) -> Cols:
    rng = stream(seed, "legit.transfer")
    cust, day, secs = draw_times(pop, rng, np.arange(pop.n), 0.07, WEEKDAY_TRANSFER)
    n = len(cust)
    k = rng.choice(COUNTERPARTS, size=n, p=_COUNTERPART_WEIGHTS)
    recipient = pop.counterparts[cust, k]
    bank = pop.counterpart_bank[cust, k].astype(np.int64)
    # one in seven goes to someone new (another bank, usually at home)
    new = rng.random(n) < 0.14
    new_country = np.where(rng.random(n) < 0.85, pop.country[cust], rng.choice(HOME, size=n))
    recipient[new] = pop.book.external(new_country[new])
    bank[new] = new_country[new] * 3 + rng.integers(1, 4, int(new.sum()))
    internal = recipient < pop.n
    rcountry = np.where(internal, pop.country[np.where(internal, recipient, 0)], pop.country[cust])
    rcountry[new] = new_country[new]
    mobile = rng.random(n) < 0.7
    return batch(
        n,
        t=occurred(pop, day, secs, pop.tz[cust]),
        usd=np.maximum(1.0, lognormal(rng, 110.0 * pop.level[cust], 0.9, n)),
        ccy=COUNTRY_CCY[pop.country[cust]],
        type=T["transfer"],
        channel=np.where(mobile, CH["mobile"], CH["web"]),
        sender=cust,
        recipient=recipient,
        rcountry=rcountry,
        bank=bank,
        device=pop.device(rng, cust),
        ip=np.where(mobile, pop.mobile_ip[cust], pop.home_ip[cust]),
    )


def _calendar(pop: Population) -> tuple[np.ndarray, np.ndarray]:
    """Day of month and weekday (0 Monday) of every day of the window."""
    first = datetime.fromtimestamp(pop.start / US, UTC)
    dom = np.array([(first + timedelta(days=d)).day for d in range(pop.days)])
    weekday = (pop.first_weekday + np.arange(pop.days)) % 7
    return dom, weekday


def _monthly(dom: np.ndarray, day_of_month: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, day) pairs: every day of the window whose day of month equals the row's."""
    rows, days = [], []
    for v in np.unique(day_of_month):
        who = np.flatnonzero(day_of_month == v)
        when = np.flatnonzero(dom == v)
        rows.append(np.repeat(who, len(when)))
        days.append(np.tile(when, len(who)))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(days)


def monthly(pop: Population, seed: int) -> Cols:
    """Salaries in and direct debits out, each on its fixed day of the month."""
    rng = stream(seed, "legit.monthly")
    dom, weekday = _calendar(pop)

    salaried = np.flatnonzero(pop.salaried)
    row, day = _monthly(dom, pop.payday[salaried])
    cust = salaried[row]
    # paid on the Friday before when payday falls on a weekend
    day = day - np.where(weekday[day] == 5, 1, 0) - np.where(weekday[day] == 6, 2, 0)
    keep = day >= 0
    cust, day = cust[keep], day[keep]
    n = len(cust)
    secs = 6 * 3600 + rng.integers(0, 2 * 3600, n)
    salary = batch(
        n,
        t=occurred(pop, day, secs, pop.tz[cust]),
        usd=pop.salary_usd[cust] * (1 + 0.01 * rng.standard_normal(n)),
        ccy=COUNTRY_CCY[pop.country[cust]],
        type=T["salary"],
        channel=CH["api"],
        sender=pop.employer[cust],
        recipient=cust,
        rcountry=pop.country[cust],
        bank=OWN_BANK,
    )

    flat_cust = np.repeat(np.arange(pop.n), pop.bill_day.shape[1])
    row, day = _monthly(dom, pop.bill_day.ravel())
    cust = flat_cust[row]
    n = len(cust)
    secs = 8 * 3600 + rng.integers(0, 3 * 3600, n)
    bills = batch(
        n,
        t=occurred(pop, day, secs, pop.tz[cust]),
        usd=pop.bill_usd.ravel()[row] * (1 + 0.03 * rng.standard_normal(n)),
        ccy=COUNTRY_CCY[pop.country[cust]],
        # the first bill (rent) is a standing order, the others direct debits
        type=np.where(row % BILLS == 0, T["payment"], T["debit"]),
        channel=CH["api"],
        sender=cust,
        recipient=pop.billers.ravel()[row],
        rcountry=pop.country[cust],
        bank=pop.country[cust].astype(np.int64) * 3 + 1,
    )
    return concat([salary, bills])


def atm(pop: Population, seed: int) -> Cols:
    rng = stream(seed, "legit.atm")
    cust, day, secs = draw_times(pop, rng, np.arange(pop.n), 0.035, WEEKDAY_CARD)
    n = len(cust)
    ccy = COUNTRY_CCY[pop.country[cust]]
    # two usual cash machines per customer, out of 200 per country
    usual = (cust * 7919 + rng.integers(0, 2, n)) % 200
    return batch(
        n,
        t=occurred(pop, day, secs, pop.tz[cust]),
        usd=round_cash(lognormal(rng, 90.0 * pop.level[cust], 0.6, n), ccy),
        ccy=ccy,
        type=T["cash_out"],
        channel=CH["atm"],
        sender=cust,
        rcountry=pop.country[cust],
        terminal=atm_terminal(pop.country[cust], usual),
    )


def crypto(pop: Population, seed: int) -> Cols:
    """On- and off-ramp conversions of crypto holders, at retail sizes."""
    rng = stream(seed, "legit.crypto")
    holders = np.flatnonzero(pop.crypto_user)
    out = []
    for kind, rate, median in (("fiat_to_crypto", 0.05, 250.0), ("crypto_to_fiat", 0.02, 400.0)):
        cust, day, secs = draw_times(pop, rng, holders, rate, WEEKDAY_TRANSFER)
        n = len(cust)
        mobile = rng.random(n) < 0.65
        usd = np.clip(lognormal(rng, median * pop.level[cust], 0.9, n), 20.0, 25_000.0)
        common = {
            "t": occurred(pop, day, secs, pop.tz[cust]),
            "usd": usd,
            "type": T[kind],
            "channel": np.where(mobile, CH["mobile"], CH["web"]),
            "sender": cust,
            "device": pop.device(rng, cust),
            "ip": np.where(mobile, pop.mobile_ip[cust], pop.home_ip[cust]),
        }
        if kind == "fiat_to_crypto":  # pays fiat into the customer's own wallet
            out.append(batch(n, ccy=COUNTRY_CCY[pop.country[cust]], wallet=cust, **common))
        else:  # sells crypto into the customer's own account with us
            out.append(
                batch(
                    n,
                    ccy=CRYPTO_CODES[pop.crypto_ccy[cust]],
                    recipient=cust,
                    rcountry=pop.country[cust],
                    bank=OWN_BANK,
                    **common,
                )
            )
    return concat(out)


def legitimate(pop: Population, seed: int) -> Cols:
    """All legitimate transactions of the population (unordered)."""
    return concat(
        [
            card(pop, seed),
            transfers(pop, seed),
            monthly(pop, seed),
            atm(pop, seed),
            crypto(pop, seed),
        ]
    )
