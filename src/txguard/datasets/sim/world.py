"""The simulated world's vocabulary: countries, currencies, random streams, and the numeric column
batch every generator fills.

Generators never build Python objects per transaction. They fill integer-coded numpy columns
(account numbers, merchant numbers, IPs as 32-bit integers, currency and type codes); :mod:`.assemble`
turns the codes into strings once, over the unique values only. That is what keeps a million
transactions in seconds.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from txguard.domain.events import Channel, LabelSource, TransactionType
from txguard.domain.money import USD_RATES

US = 1_000_000  # microseconds per second: every time is int64 microseconds since the epoch, UTC
MINUTE = 60 * US
HOUR = 3600 * US
DAY = 86_400 * US

EXT_BASE = 1_000_000_000  # account numbers from here on are other banks' customers ("x-…")
FRAUD_BASE = 1_000_000_000  # device and wallet numbers from here on belong to fraudsters
TERMINAL_ATM_BASE = 10**12  # terminal numbers from here on are cash machines ("atm-CC-nnn")
# Terminal numbers: terminal k (0..7) of merchant m is m*8+k, k = 7 being its e-commerce gateway;
# cash machine k of country c is TERMINAL_ATM_BASE + c*1000 + k. Built by the two functions below,
# read back by ``assemble.terminal_id``.
MERCHANT_TERMINALS = 8
WEB_TERMINAL = 7
ATMS_PER_COUNTRY = 1000


@dataclass(frozen=True, slots=True)
class Country:
    code: str
    currency: str
    utc_offset: float  # hours; the US spreads its customers over -5..-8
    weight: float  # share of the customer base (0: only fraud traffic comes from there)
    price_level: float  # spending relative to the US


COUNTRIES: tuple[Country, ...] = (
    Country("US", "USD", -5.0, 0.27, 1.0),
    Country("GB", "GBP", 0.0, 0.12, 0.95),
    Country("DE", "EUR", 1.0, 0.11, 0.9),
    Country("FR", "EUR", 1.0, 0.08, 0.85),
    Country("ES", "EUR", 1.0, 0.05, 0.7),
    Country("NL", "EUR", 1.0, 0.04, 0.95),
    Country("PL", "PLN", 1.0, 0.05, 0.55),
    Country("BR", "BRL", -3.0, 0.07, 0.45),
    Country("MX", "MXN", -6.0, 0.05, 0.45),
    Country("IN", "INR", 5.5, 0.06, 0.3),
    Country("NG", "NGN", 1.0, 0.03, 0.25),
    Country("SG", "SGD", 8.0, 0.03, 1.0),
    Country("JP", "JPY", 9.0, 0.04, 0.9),
    # origins of fraud traffic only
    Country("RU", "RUB", 3.0, 0.0, 0.5),
    Country("RO", "RON", 2.0, 0.0, 0.5),
    Country("VN", "VND", 7.0, 0.0, 0.3),
)
COUNTRY_CODES = tuple(c.code for c in COUNTRIES)
HOME = np.array([i for i, c in enumerate(COUNTRIES) if c.weight > 0], dtype=np.int16)
FRAUD_ORIGINS = np.array([i for i, c in enumerate(COUNTRIES) if c.weight == 0], dtype=np.int16)
COUNTRY_WEIGHTS = np.array([c.weight for c in COUNTRIES])[HOME] / sum(c.weight for c in COUNTRIES)
UTC_OFFSET = np.array([c.utc_offset for c in COUNTRIES])
PRICE_LEVEL = np.array([c.price_level for c in COUNTRIES])

CRYPTO_CCYS = ("BTC", "ETH", "USDT")
CURRENCIES: tuple[str, ...] = tuple(sorted({c.currency for c in COUNTRIES} | set(CRYPTO_CCYS)))
CCY = {c: i for i, c in enumerate(CURRENCIES)}
COUNTRY_CCY = np.array([CCY[c.currency] for c in COUNTRIES], dtype=np.int16)
CRYPTO_CODES = np.array([CCY[c] for c in CRYPTO_CCYS], dtype=np.int16)
RATE = np.array([USD_RATES[c] for c in CURRENCIES])
_DECIMALS = {"JPY": 0, "VND": 0, "BTC": 8, "ETH": 6}
DECIMALS = np.array([_DECIMALS.get(c, 2) for c in CURRENCIES])

TYPES: tuple[TransactionType, ...] = tuple(TransactionType)
T: dict[str, np.int8] = {t.value: np.int8(i) for i, t in enumerate(TYPES)}
CHANNELS: tuple[Channel, ...] = tuple(Channel)
CH: dict[str, np.int8] = {c.value: np.int8(i) for i, c in enumerate(CHANNELS)}
SOURCES: tuple[LabelSource, ...] = tuple(LabelSource)
SRC: dict[str, np.int8] = {s.value: np.int8(i) for i, s in enumerate(SOURCES)}

TYPOLOGIES: tuple[str, ...] = (
    "account_takeover",
    "card_testing",
    "compromised_merchant",
    "structuring",
    "mule_cashout",
    "bust_out",
    "first_party",
)
TYP = {t: np.int8(i) for i, t in enumerate(TYPOLOGIES)}

OWN_BANK = 0  # recipient bank code 0 is our institution; c * 3 + 1..3 are banks in country c

# local-hour weights of consumer activity (0h..23h): quiet nights, lunch and evening peaks
HOUR_PROFILE = np.array(
    [0.6, 0.35, 0.2, 0.15, 0.15, 0.3, 1.0, 2.5, 4.0, 5.0, 5.5, 6.0,
     7.0, 6.5, 6.0, 6.0, 6.5, 7.5, 8.0, 7.5, 6.5, 5.0, 3.5, 1.8]
)  # fmt: skip
HOUR_PROFILE = HOUR_PROFILE / HOUR_PROFILE.sum()
# weekday weights Monday..Sunday
WEEKDAY_CARD = np.array([0.95, 0.95, 1.0, 1.0, 1.15, 1.25, 0.8])
WEEKDAY_TRANSFER = np.array([1.1, 1.0, 1.0, 1.0, 1.1, 0.8, 0.6])


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent random stream per component, keyed by name (not by creation order), so
    adding a typology does not change what the others generate."""
    ss = np.random.SeedSequence([seed, zlib.crc32(name.encode())])
    return np.random.Generator(np.random.PCG64(ss))


# --------------------------------------------------------------------------- column batches

Cols = dict[str, np.ndarray]

_SPEC: dict[str, tuple[type, object]] = {
    "t": (np.int64, None),  # occurred_at, µs since epoch UTC (required)
    "usd": (np.float64, None),  # amount in USD (required)
    "ccy": (np.int16, None),  # currency code (required)
    "type": (np.int8, None),
    "channel": (np.int8, -1),
    "sender": (np.int64, None),  # account number (required)
    "recipient": (np.int64, -1),  # account number
    "rcountry": (np.int16, -1),
    "bank": (np.int32, -1),
    "wallet": (np.int64, -1),
    "merchant": (np.int64, -1),
    "terminal": (np.int64, -1),
    "device": (np.int64, -1),
    "ip": (np.int64, -1),  # IPv4 as an unsigned 32-bit number
    "typology": (np.int8, -1),  # ground truth: -1 legitimate
    "incident": (np.int64, -1),  # ground truth: incident number within the typology
    "labelled": (np.bool_, False),  # a label will arrive for this transaction
    "label_fraud": (np.bool_, False),
    "label_t": (np.int64, 0),
    "label_src": (np.int8, -1),
}
COLUMN_NAMES = tuple(_SPEC)


def batch(n: int, **cols: object) -> Cols:
    """A batch of ``n`` rows: given columns broadcast to ``n``, the rest at their defaults."""
    unknown = set(cols) - set(_SPEC)
    if unknown:
        raise KeyError(f"unknown simulator columns {sorted(unknown)}")
    out: Cols = {}
    for name, (dtype, default) in _SPEC.items():
        v = cols.get(name, default)
        if v is None:
            raise KeyError(f"simulator column {name!r} is required")
        out[name] = np.broadcast_to(np.asarray(v, dtype=dtype), (n,)).copy()
    return out


def concat(batches: list[Cols]) -> Cols:
    """One batch from many; no batches (a typology drawn zero times) give an empty one."""
    if not batches:
        return batch(0, t=0, usd=0, ccy=0, type=0, sender=0)
    return {k: np.concatenate([b[k] for b in batches]) for k in COLUMN_NAMES}


def take(cols: Cols, idx: np.ndarray) -> Cols:
    return {k: v[idx] for k, v in cols.items()}


# --------------------------------------------------------------------------- helpers


def merchant_terminal(merchant: np.ndarray | int, slot: np.ndarray | int) -> np.ndarray | int:
    """Terminal number of terminal ``slot`` (0..7, :data:`WEB_TERMINAL` online) of ``merchant``."""
    return merchant * MERCHANT_TERMINALS + slot


def atm_terminal(country: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Terminal number of cash machine ``k`` (below :data:`ATMS_PER_COUNTRY`) in ``country``."""
    terminal: np.ndarray = TERMINAL_ATM_BASE + country.astype(np.int64) * ATMS_PER_COUNTRY + k
    return terminal


def country_ips(rng: np.random.Generator, country: np.ndarray) -> np.ndarray:
    """IPv4 addresses in a per-country block of the shared address space 100.64.0.0/10
    (RFC 6598): valid, obviously synthetic, and the country is readable from the second octet."""
    country = np.asarray(country, dtype=np.int64)
    n = country.shape[0]
    third = rng.integers(0, 256, n)
    fourth = rng.integers(1, 255, n)
    return (100 << 24) | ((64 + country) << 16) | (third << 8) | fourth


def hosting_ips(rng: np.random.Generator, n: int) -> np.ndarray:
    """Addresses of 'hosting providers / VPN exits' fraudsters use: the documentation ranges
    198.51.100.0/24 and 203.0.113.0/24 (RFC 5737)."""
    base = np.where(
        rng.random(n) < 0.5, (198 << 24) | (51 << 16) | (100 << 8), (203 << 24) | (113 << 8)
    )
    return base | rng.integers(1, 255, n)


def local_seconds(
    rng: np.random.Generator,
    n: int,
    shift: np.ndarray | int = 0,
    profile: np.ndarray = HOUR_PROFILE,
) -> np.ndarray:
    """Seconds after local midnight drawn from an hour-of-day profile, shifted per row (late
    risers)."""
    hour = (rng.choice(24, size=n, p=profile) + shift) % 24
    return hour * 3600 + rng.integers(0, 3600, n)


def sample_days(
    rng: np.random.Generator, n: int, days: int, first_weekday: int, weekday_weights: np.ndarray
) -> np.ndarray:
    """Day numbers in [0, days) with weekday habits (``first_weekday``: 0 Monday)."""
    w = weekday_weights[(first_weekday + np.arange(days)) % 7]
    return rng.choice(days, size=n, p=w / w.sum())


def lognormal(
    rng: np.random.Generator, median: np.ndarray | float, sigma: float, n: int
) -> np.ndarray:
    return np.asarray(median) * np.exp(sigma * rng.standard_normal(n))


def groups(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For incidents of the given sizes: each row's incident number and position within it."""
    sizes = np.asarray(sizes, dtype=np.int64)
    inc = np.repeat(np.arange(len(sizes)), sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return inc, np.arange(int(sizes.sum())) - starts[inc]


def offsets(gaps: np.ndarray, inc: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Running sum of ``gaps`` restarting at each incident (the first row of each gets 0)."""
    g = np.where(pos == 0, 0, gaps).astype(np.int64)
    cs = np.cumsum(g)
    first = np.flatnonzero(pos == 0)
    out: np.ndarray = cs - cs[first][inc]
    return out


@dataclass(frozen=True, slots=True)
class LabelPlan:
    """How a typology's fraud labels arrive: from whom (``source``), for what share of incidents
    or rows (``p``), after a log-normal delay (``median_hours``, ``sigma``, at least
    ``min_hours``), and whether one report covers the whole incident (``per_incident``)."""

    source: str
    p: float
    median_hours: float
    sigma: float
    min_hours: float
    per_incident: bool


def plan_labels(rng: np.random.Generator, cols: Cols, plan: LabelPlan) -> Cols:
    """Say which rows a fraud label will arrive for, when, and from whom.

    ``per_incident``: one report covers the whole incident (a customer notices the takeover, an
    analyst closes a case): all its rows are labelled together, at the same time, after its last
    row. Otherwise each row is disputed on its own (chargebacks card by card)."""
    inc = cols["incident"]
    n = len(inc)
    if n == 0:
        return cols
    delay_h = np.maximum(
        plan.min_hours, plan.median_hours * np.exp(plan.sigma * rng.standard_normal(n))
    )
    if plan.per_incident:
        k = int(inc.max()) + 1
        hit = rng.random(k) < plan.p
        last = np.full(k, np.iinfo(np.int64).min)
        np.maximum.at(last, inc, cols["t"])
        first_row = np.unique(inc, return_index=True)[1]
        per_inc_delay = np.zeros(k)
        per_inc_delay[inc[first_row]] = delay_h[first_row]
        cols["labelled"] = hit[inc]
        cols["label_t"] = last[inc] + (per_inc_delay[inc] * HOUR).astype(np.int64)
    else:
        cols["labelled"] = rng.random(n) < plan.p
        cols["label_t"] = cols["t"] + (delay_h * HOUR).astype(np.int64)
    cols["label_fraud"] = np.ones(n, np.bool_)
    cols["label_src"] = np.full(n, SRC[plan.source], np.int8)
    return cols
