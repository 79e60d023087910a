"""Who lives in the simulated world: customers with habits, merchants with terminals, employers,
billers, and the accounts fraud creates along the way.

Every customer gets a home country (and its currency and time zone), an account opening date, a
KYC level, one to three devices, a home and a mobile IP, eight favourite merchants, three people
they send money to, three monthly bills, usually a salary, sometimes a crypto wallet and a trip
abroad. Legitimate behaviour (:mod:`.legit`) is drawn from these, so it repeats like people do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from txguard.datasets.sim.world import (
    COUNTRY_WEIGHTS,
    DAY,
    EXT_BASE,
    FRAUD_BASE,
    HOME,
    PRICE_LEVEL,
    UTC_OFFSET,
    country_ips,
    stream,
)

FAVOURITES = 8
COUNTERPARTS = 3
BILLS = 3
MAX_DEVICES = 3


@dataclass
class AccountBook:
    """Every account number in use. Ours (``c-…``) carry country, opening time and KYC level;
    other banks' (``x-…``, numbers from EXT_BASE) only a country."""

    country: list[np.ndarray] = field(default_factory=list)
    created: list[np.ndarray] = field(default_factory=list)
    kyc: list[np.ndarray] = field(default_factory=list)
    ext_country: list[np.ndarray] = field(default_factory=list)
    n_internal: int = 0
    n_external: int = 0
    n_fraud_devices: int = 0
    n_fraud_wallets: int = 0

    def open(self, country: np.ndarray, created: np.ndarray, kyc: np.ndarray) -> np.ndarray:
        n = len(country)
        self.country.append(np.asarray(country, np.int16))
        self.created.append(np.asarray(created, np.int64))
        self.kyc.append(np.asarray(kyc, np.int8))
        ids = np.arange(self.n_internal, self.n_internal + n, dtype=np.int64)
        self.n_internal += n
        return ids

    def external(self, country: np.ndarray) -> np.ndarray:
        n = len(country)
        self.ext_country.append(np.asarray(country, np.int16))
        ids = np.arange(self.n_external, self.n_external + n, dtype=np.int64) + EXT_BASE
        self.n_external += n
        return ids

    def fraud_devices(self, n: int) -> np.ndarray:
        ids = np.arange(self.n_fraud_devices, self.n_fraud_devices + n, dtype=np.int64)
        self.n_fraud_devices += n
        return ids + FRAUD_BASE

    def fraud_wallets(self, n: int) -> np.ndarray:
        ids = np.arange(self.n_fraud_wallets, self.n_fraud_wallets + n, dtype=np.int64)
        self.n_fraud_wallets += n
        return ids + FRAUD_BASE

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(country, created µs, kyc) of our accounts, and the country of external ones."""

        def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        return (
            cat(self.country, np.int16),
            cat(self.created, np.int64),
            cat(self.kyc, np.int8),
            cat(self.ext_country, np.int16),
        )


@dataclass
class Population:
    """Per-customer habits (arrays of length ``n``; customer i is account i) and merchants."""

    n: int
    start: int  # µs
    days: int
    first_weekday: int
    country: np.ndarray
    tz: np.ndarray  # UTC offset in hours
    level: np.ndarray  # spending level (price level x personal factor)
    card_rate: np.ndarray  # card payments per day
    late_riser: np.ndarray  # bool: activity shifted three hours later
    n_devices: np.ndarray
    home_ip: np.ndarray
    mobile_ip: np.ndarray
    favourites: np.ndarray  # (n, FAVOURITES) merchant numbers
    counterparts: np.ndarray  # (n, COUNTERPARTS) account numbers (ours or external)
    counterpart_bank: np.ndarray  # (n, COUNTERPARTS)
    billers: np.ndarray  # (n, BILLS) external account numbers
    bill_day: np.ndarray  # (n, BILLS) day of month
    bill_usd: np.ndarray  # (n, BILLS)
    salaried: np.ndarray  # bool
    employer: np.ndarray  # external account number
    payday: np.ndarray  # day of month
    salary_usd: np.ndarray
    crypto_user: np.ndarray  # bool
    crypto_ccy: np.ndarray  # currency code the customer holds
    trip_start: np.ndarray  # day number, -1 when the customer does not travel
    trip_days: np.ndarray
    trip_country: np.ndarray
    merchant_country: np.ndarray  # per merchant
    merchant_terminals: np.ndarray  # per merchant: number of POS terminals
    merchant_price: np.ndarray  # per merchant: typical basket in USD
    pool_start: np.ndarray  # per country: first merchant number
    pool_size: np.ndarray  # per country: number of merchants
    book: AccountBook

    def device(self, rng: np.random.Generator, cust: np.ndarray) -> np.ndarray:
        """One of the customer's own devices (customer i owns devices 4i..4i+2)."""
        out: np.ndarray = cust * 4 + (rng.random(len(cust)) * self.n_devices[cust]).astype(np.int64)
        return out

    def merchants_in(self, rng: np.random.Generator, country: np.ndarray) -> np.ndarray:
        """Random merchants of a country, popular ones (low numbers) far more often."""
        u = rng.random(len(country)) ** 2.5
        out: np.ndarray = self.pool_start[country] + (u * self.pool_size[country]).astype(np.int64)
        return out

    def customers_of(self, rng: np.random.Generator, country: int, k: int) -> np.ndarray:
        """``k`` distinct customers living in ``country`` (fewer if there are not that many)."""
        pool = np.flatnonzero(self.country == country)
        if len(pool) == 0:
            pool = np.arange(self.n)
        return rng.choice(pool, size=min(k, len(pool)), replace=False)


def build_population(
    *, customers: int, days: int, seed: int, start: int, first_weekday: int
) -> Population:
    """Draw ``customers`` customers and the merchants and counterparties around them."""
    rng = stream(seed, "population")
    n = customers
    book = AccountBook()
    country = rng.choice(HOME, size=n, p=COUNTRY_WEIGHTS).astype(np.int16)
    tz = UTC_OFFSET[country].copy()
    us = country == 0
    tz[us] = rng.choice([-5.0, -6.0, -7.0, -8.0], size=int(us.sum()), p=[0.47, 0.29, 0.07, 0.17])
    created = start - (rng.uniform(45, 3650, n) * DAY).astype(np.int64)
    kyc = rng.choice([1, 2, 3], size=n, p=[0.2, 0.6, 0.2]).astype(np.int8)
    book.open(country, created, kyc)
    level = PRICE_LEVEL[country] * np.exp(0.35 * rng.standard_normal(n))

    # merchants: each home country gets a pool sized to its customers (at least 30)
    n_countries = len(UTC_OFFSET)
    per_country = np.bincount(country, minlength=n_countries)
    pool_size = np.where(
        np.isin(np.arange(n_countries), HOME), np.maximum(30, per_country // 6), 30
    )
    pool_start = np.concatenate([[0], np.cumsum(pool_size)[:-1]]).astype(np.int64)
    n_merchants = int(pool_size.sum())
    merchant_country = np.repeat(np.arange(n_countries), pool_size).astype(np.int16)
    merchant_terminals = rng.integers(1, 5, n_merchants)
    merchant_price = 28.0 * np.exp(0.7 * rng.standard_normal(n_merchants))

    pop = Population(
        n=n,
        start=start,
        days=days,
        first_weekday=first_weekday,
        country=country,
        tz=tz,
        level=level,
        card_rate=1.1 * np.exp(0.6 * rng.standard_normal(n) - 0.18),
        late_riser=rng.random(n) < 0.08,
        n_devices=rng.choice([1, 2, 3], size=n, p=[0.5, 0.35, 0.15]),
        home_ip=np.zeros(0),
        mobile_ip=np.zeros(0),
        favourites=np.zeros(0),
        counterparts=np.zeros(0),
        counterpart_bank=np.zeros(0),
        billers=np.zeros(0),
        bill_day=rng.integers(1, 29, (n, BILLS)),
        bill_usd=np.zeros(0),
        salaried=rng.random(n) < 0.85,
        employer=np.zeros(0),
        payday=rng.choice([1, 15, 25, 28], size=n, p=[0.35, 0.15, 0.3, 0.2]),
        salary_usd=3600.0 * PRICE_LEVEL[country] * np.exp(0.4 * rng.standard_normal(n)),
        crypto_user=rng.random(n) < 0.15,
        crypto_ccy=rng.choice([0, 1, 2], size=n, p=[0.5, 0.25, 0.25]),
        trip_start=np.where(rng.random(n) < 0.12, rng.integers(0, max(days - 2, 1), n), -1),
        trip_days=rng.integers(3, 11, n),
        trip_country=rng.choice(HOME, size=n),
        merchant_country=merchant_country,
        merchant_terminals=merchant_terminals,
        merchant_price=merchant_price,
        pool_start=pool_start,
        pool_size=pool_size,
        book=book,
    )
    # a trip goes abroad: move a same-country destination to the next home country
    same = pop.trip_country == country
    pop.trip_country[same] = HOME[(np.searchsorted(HOME, country[same]) + 1) % len(HOME)]

    pop.home_ip = country_ips(rng, country)
    pop.mobile_ip = country_ips(rng, country)
    pop.favourites = pop.merchants_in(rng, np.repeat(country, FAVOURITES)).reshape(n, FAVOURITES)

    # counterparts: mostly customers of ours in any country weighting, some at other banks
    internal = rng.random((n, COUNTERPARTS)) < 0.6
    ext_country = np.repeat(country, COUNTERPARTS).reshape(n, COUNTERPARTS)
    ext = book.external(ext_country[~internal])
    cp = rng.integers(0, n, (n, COUNTERPARTS)).astype(np.int64)
    cp[~internal] = ext
    pop.counterparts = cp
    bank = np.zeros((n, COUNTERPARTS), np.int32)
    bank[~internal] = ext_country[~internal] * 3 + rng.integers(1, 4, int((~internal).sum()))
    pop.counterpart_bank = bank

    # employers and billers are shared: a few per country
    employers = book.external(np.repeat(HOME, 40))
    pop.employer = employers[np.searchsorted(HOME, country) * 40 + rng.integers(0, 40, n)]
    # billers: per country eight landlords, eight utilities, eight telecoms (bill k from block k)
    billers = book.external(np.repeat(HOME, 8 * BILLS))
    pick = (
        np.searchsorted(HOME, country)[:, None] * 8 * BILLS
        + np.arange(BILLS)[None, :] * 8
        + rng.integers(0, 8, (n, BILLS))
    )
    pop.billers = billers[pick]
    pop.bill_usd = (
        np.array([900.0, 90.0, 45.0])[None, :]
        * pop.level[:, None]
        * np.exp(0.35 * rng.standard_normal((n, BILLS)))
    )
    return pop
