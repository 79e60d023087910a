"""Money-laundering typologies: structuring (smurfing) and mule fan-in with a crypto cash-out.

Both are confirmed, if ever, by an analyst reviewing a case: weeks later, and not always.
"""

from __future__ import annotations

import numpy as np

from txguard.datasets.sim.fraud import incident_starts
from txguard.datasets.sim.population import Population
from txguard.datasets.sim.world import (
    CH,
    COUNTRY_CCY,
    COUNTRY_WEIGHTS,
    DAY,
    FRAUD_ORIGINS,
    HOME,
    HOUR,
    OWN_BANK,
    RATE,
    TYP,
    Cols,
    LabelPlan,
    T,
    batch,
    concat,
    country_ips,
    groups,
    hosting_ips,
    lognormal,
    plan_labels,
)

REPORTING_THRESHOLD_USD = 10_000.0  # cash deposits at or above it are reported (US CTR)

MEAN_SIZE = {"structuring": 18.0, "mule_cashout": 12.0}

# how each typology's labels arrive (docs/simulator.md explains the choices)
LABELS = {
    "structuring": LabelPlan(
        "analyst", p=0.6, median_hours=40 * 24, sigma=0.5, min_hours=12 * 24, per_incident=True
    ),
    "mule_cashout": LabelPlan(
        "analyst", p=0.7, median_hours=18 * 24, sigma=0.6, min_hours=5 * 24, per_incident=True
    ),
}


def structuring(pop: Population, rng: np.random.Generator, k: int) -> Cols:
    """A ring of two to five smurfs deposits cash just under the reporting threshold, several
    times each over a few days at branches and cash machines, then each moves it to a collector
    account opened recently, which wires the lot abroad."""
    out = []
    for i in range(k):
        c = int(rng.choice(HOME, p=COUNTRY_WEIGHTS))
        smurfs = pop.customers_of(rng, c, int(rng.integers(2, 6)))
        t0 = int(incident_starts(pop, rng, 1, margin_days=8)[0])
        collector = pop.book.open(
            np.array([c]), np.array([t0 - int(rng.uniform(5, 60) * DAY)]), np.array([1])
        )[0]
        ccy = COUNTRY_CCY[c]
        m = len(smurfs)
        idx = np.repeat(np.arange(m), rng.integers(2, 7, m))
        who = smurfs[idx]
        n = len(who)
        # just under the threshold, in round local notes
        local = np.floor(rng.uniform(8_800, 9_990, n) / RATE[ccy] / 10) * 10
        usd = local * RATE[ccy]
        day = rng.uniform(0, 6, n).astype(np.int64)
        t = t0 + day * DAY + ((9 + rng.uniform(0, 8, n)) * HOUR).astype(np.int64)
        branch = rng.random(n) < 0.6
        out.append(
            batch(
                n,
                t=t,
                usd=usd,
                ccy=ccy,
                type=T["cash_in"],
                channel=np.where(branch, CH["branch"], CH["atm"]),
                sender=who,
                recipient=who,
                rcountry=c,
                bank=OWN_BANK,
                typology=TYP["structuring"],
                incident=i,
            )
        )
        # each smurf forwards about what it deposited, a day after its last deposit
        total = np.bincount(idx, weights=usd, minlength=m)
        last = np.zeros(m, np.int64)
        np.maximum.at(last, idx, t)
        t_fwd = last + ((20 + rng.uniform(0, 8, m)) * HOUR).astype(np.int64)
        out.append(
            batch(
                m,
                t=t_fwd,
                usd=total * rng.uniform(0.93, 0.99, m),
                ccy=ccy,
                type=T["transfer"],
                channel=CH["mobile"],
                sender=smurfs,
                recipient=collector,
                rcountry=c,
                bank=OWN_BANK,
                device=pop.device(rng, smurfs),
                ip=pop.mobile_ip[smurfs],
                typology=TYP["structuring"],
                incident=i,
            )
        )
        dest = int(rng.choice(FRAUD_ORIGINS))
        out.append(
            batch(
                1,
                t=int(t_fwd.max()) + int(rng.uniform(2, 30) * HOUR),
                usd=float(total.sum()) * 0.9,
                ccy=ccy,
                type=T["transfer"],
                channel=CH["web"],
                sender=collector,
                recipient=pop.book.external(np.array([dest])),
                rcountry=dest,
                bank=dest * 3 + 1,
                device=pop.book.fraud_devices(1),
                ip=hosting_ips(rng, 1),
                typology=TYP["structuring"],
                incident=i,
            )
        )
    cols = concat(out)
    return plan_labels(rng, cols, LABELS["structuring"])


def mule_cashout(pop: Population, rng: np.random.Generator, k: int) -> Cols:
    """A recently opened account receives five to fifteen transfers from scam victims, at home
    and abroad, within a few days, then converts nearly all of it to crypto within hours and
    sends it to fresh wallets."""
    country = rng.choice(HOME, size=k, p=COUNTRY_WEIGHTS).astype(np.int16)
    t0 = incident_starts(pop, rng, k, margin_days=4)
    mule = pop.book.open(
        country, t0 - (rng.uniform(3, 30, k) * DAY).astype(np.int64), np.ones(k, np.int8)
    )
    device = pop.book.fraud_devices(k)
    mule_ip = np.where(rng.random(k) < 0.5, country_ips(rng, country), hosting_ips(rng, k))

    sizes = rng.integers(5, 16, k)
    inc, _pos = groups(sizes)
    n = len(inc)
    spread = rng.uniform(0.5, 3, k)
    t_in = t0[inc] + (rng.random(n) * spread[inc] * DAY).astype(np.int64)
    usd_in = lognormal(rng, 900.0, 0.5, n)
    # about a third of the victims bank with us (scammed customers); the rest with other banks
    ours = rng.random(n) < 0.3
    victim = rng.integers(0, pop.n, n)
    ext_country = np.where(rng.random(n) < 0.7, country[inc], rng.choice(HOME, size=n))
    ext = pop.book.external(ext_country)
    inbound = batch(
        n,
        t=t_in,
        usd=usd_in,
        ccy=np.where(ours, COUNTRY_CCY[pop.country[victim]], COUNTRY_CCY[ext_country]),
        type=T["transfer"],
        channel=np.where(ours, CH["mobile"], CH["api"]),
        sender=np.where(ours, victim, ext),
        recipient=mule[inc],
        rcountry=country[inc],
        bank=OWN_BANK,
        device=np.where(ours, pop.device(rng, victim), -1),
        ip=np.where(ours, pop.mobile_ip[victim], -1),
        typology=TYP["mule_cashout"],
        incident=inc,
    )

    last_in = np.full(k, np.iinfo(np.int64).min)
    np.maximum.at(last_in, inc, t_in)
    total_in = np.bincount(inc, weights=usd_in, minlength=k)
    out_sizes = rng.integers(1, 4, k)
    o_inc, o_pos = groups(out_sizes)
    m = len(o_inc)
    share = rng.dirichlet(np.ones(3), k)
    frac = share[o_inc, o_pos]
    frac = frac / np.bincount(o_inc, weights=frac, minlength=k)[o_inc]
    cashout = batch(
        m,
        t=last_in[o_inc] + (rng.uniform(1, 12, m) * HOUR).astype(np.int64),
        usd=total_in[o_inc] * 0.95 * frac,
        ccy=COUNTRY_CCY[country[o_inc]],
        type=T["fiat_to_crypto"],
        channel=CH["mobile"],
        sender=mule[o_inc],
        wallet=pop.book.fraud_wallets(m),
        device=device[o_inc],
        ip=mule_ip[o_inc],
        typology=TYP["mule_cashout"],
        incident=o_inc,
    )
    cols = concat([inbound, cashout])
    return plan_labels(rng, cols, LABELS["mule_cashout"])
