"""The one FeatureEngine: transactions in, feature vectors out, state in a StateStore.

Everything that depends only on the spec is compiled once in ``__init__`` (slot layouts, bucket
widths, which numbers each feature reads); per transaction the engine computes bucket indices,
makes one store call and turns the returned numbers into features with the formulas in
:mod:`txguard.features.formulas` — the same formulas the offline build applies to whole columns.

>>> from datetime import UTC, datetime
>>> from txguard.domain.events import Sender, TransactionEvent
>>> from txguard.features.spec import FeatureSpec
>>> from txguard.features.stores.memory import MemoryStore
>>> spec = FeatureSpec.from_yaml('''
... entities: {sender: [sender_account_id]}
... aggregates: [{entity: sender, aggs: [count, sum], field: amount, windows: [1d]}]''')
>>> engine = FeatureEngine(spec, MemoryStore())
>>> def tx(i, amount):
...     return TransactionEvent(f"t{i}", datetime(2026, 1, 1, 12, i, tzinfo=UTC), amount, "USD",
...                             Sender("alice"))
>>> engine.process_transaction(tx(1, 10.0)).values
{'sender_count_1d': 0.0, 'sender_sum_amount_1d': 0.0}
>>> engine.process_transaction(tx(2, 5.0)).values
{'sender_count_1d': 1.0, 'sender_sum_amount_1d': 10.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from txguard.domain.events import LabelEvent, TransactionEvent
from txguard.domain.money import CRYPTO
from txguard.features import formulas as fm
from txguard.features.ports import OP_MAX, OP_MIN, OP_SUM, EntityOp, StateStore
from txguard.features.spec import AGG_FRAUD, AGG_VALUE, Aggregate, FeatureSpec

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
US = 1_000_000
NAN = math.nan

# slot layout of one bucket: fixed slots, then 4 per numeric field
S_N, S_TMIN, S_TMAX, S_K = 0, 1, 2, 3
FIXED_OPS = [OP_SUM, OP_MIN, OP_MAX, OP_SUM]
FIELD_OPS = [OP_SUM, OP_SUM, OP_SUM, OP_MAX]  # count, sum, sum of squares, max

# which slots each aggregate reads (relative: "f+i" is the i-th slot of its numeric field)
NEEDS: dict[str, tuple[str, ...]] = {
    "count": ("n",),
    "time_since_last": ("n", "tmax"),
    "first_seen": ("n", "tmin"),
    "fraud_count": ("k",),
    "fraud_rate": ("n", "k"),
    "sum": ("s",),
    "mean": ("c", "s"),
    "std": ("c", "s", "q"),
    "max": ("c", "m"),
    "ratio_mean": ("c", "s"),
    "zscore": ("c", "s", "q"),
}


def to_us(dt: datetime) -> int:
    """Microseconds since the Unix epoch, exact (integer arithmetic on the timedelta)."""
    return (dt - _EPOCH) // _ONE_US


def event_values(e: TransactionEvent) -> dict[str, Any]:
    """The flat field values of an event (names as in ``io.events.EVENT_SCHEMA``)."""
    r = e.recipient
    return {
        "sender_account_id": e.sender.account_id,
        "sender_country": e.sender.country,
        "sender_kyc_level": e.sender.kyc_level,
        "recipient_account_id": r.account_id if r else None,
        "recipient_country": r.country if r else None,
        "recipient_bank": r.bank if r else None,
        "recipient_wallet_address": r.wallet_address if r else None,
        "merchant_id": e.merchant_id,
        "terminal_id": e.terminal_id,
        "device_id": e.device_id,
        "ip": e.ip,
        "jurisdiction": e.jurisdiction,
        "currency": e.currency,
        "type": e.type.value if e.type else None,
        "channel": e.channel.value if e.channel else None,
    }


def pointwise_values(e: TransactionEvent, t_us: int) -> dict[str, float]:
    """Every point-wise transform of one event (NaN where an input is missing)."""
    usd = e.reference_amount
    x = NAN if usd is None else float(usd)
    hour = (t_us // 3_600_000_000) % 24
    dow = (t_us // 86_400_000_000 + 3) % 7  # 1970-01-01 was a Thursday
    created = e.sender.created_at
    sc, rc = e.sender.country, e.recipient.country if e.recipient else None
    kyc = e.sender.kyc_level
    return {
        "amount": float(e.amount),
        "amount_usd": x,
        "amount_ref": x,
        "log_amount": NAN if math.isnan(x) else math.log1p(x),
        "hour_of_day": float(hour),
        "day_of_week": float(dow),
        "is_weekend": 1.0 if dow >= 5 else 0.0,
        "is_night": 1.0 if hour < 6 else 0.0,
        "account_age_days": NAN if created is None else (t_us - to_us(created)) / 86_400e6,
        "kyc_level": NAN if kyc is None else float(kyc),
        "sender_kyc_level": NAN if kyc is None else float(kyc),
        "is_crypto": 1.0 if e.currency in CRYPTO else 0.0,
        "is_cross_border": NAN if sc is None or rc is None else float(sc != rc),
        "amount_below_10k": NAN if math.isnan(x) else float(9000.0 <= x < 10000.0),
    }


@dataclass(slots=True)
class _Range:
    n_buckets: int
    delay_us: int
    want: list[int] = field(default_factory=list)  # absolute slot indices, ascending


@dataclass(slots=True)
class _Group:
    gid: int
    width_us: int
    ranges: list[_Range] = field(default_factory=list)
    fraud: bool = False


@dataclass(slots=True)
class _Distinct:
    did: int
    value_field: str
    windows: list[tuple[int, int]] = field(default_factory=list)  # (width_us, n_buckets)


@dataclass(slots=True)
class _Entity:
    name: str
    key_fields: tuple[str, ...]
    numeric: list[str] = field(default_factory=list)
    groups: list[_Group] = field(default_factory=list)
    distincts: list[_Distinct] = field(default_factory=list)
    ops: list[int] = field(default_factory=list)
    ttl_ms: int = 0
    out_len: int = 0
    # (feature index, agg, offsets of the needed numbers in this entity's result block, value field)
    readers: list[tuple[int, str, dict[str, int], str | None]] = field(default_factory=list)
    # compiled readers: (feature index, closure or None for distinct/new, field, offset)
    fast: list[tuple[int, fm.Reader | None, str | None, int, bool]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FeatureResult:
    values: dict[str, float]
    vector: npt.NDArray[np.float64]
    first_seen: bool = True


class Plan:
    """The spec compiled into entity slot layouts, bucket groups and result offsets."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.index = {n: i for i, n in enumerate(spec.names)}
        ents: dict[str, _Entity] = {}
        for a in spec.aggregates:
            ent = ents.get(a.entity)
            if ent is None:
                ent = ents[a.entity] = _Entity(a.entity, spec.entities[a.entity])
            if a.agg in AGG_VALUE:
                assert a.field is not None
                d = next((d for d in ent.distincts if d.value_field == a.field), None)
                if d is None:
                    d = _Distinct(len(ent.distincts) + 1, a.field)
                    ent.distincts.append(d)
                if (a.width_us, a.buckets) not in d.windows:
                    d.windows.append((a.width_us, a.buckets))
            elif a.field is not None and a.field not in ent.numeric:
                ent.numeric.append(a.field)
        for ent in ents.values():
            ent.ops = FIXED_OPS + FIELD_OPS * len(ent.numeric)
        for a in spec.aggregates:
            if a.agg in AGG_VALUE:
                continue
            ent = ents[a.entity]
            g = next((g for g in ent.groups if g.width_us == a.width_us), None)
            if g is None:
                g = _Group(len(ent.groups) + 1, a.width_us)
                ent.groups.append(g)
            r = next(
                (r for r in g.ranges if (r.n_buckets, r.delay_us) == (a.buckets, a.delay_s * US)),
                None,
            )
            if r is None:
                r = _Range(a.buckets, a.delay_s * US)
                g.ranges.append(r)
            r.want = sorted(set(r.want) | set(self._slots(ent, a).values()))
            g.fraud = g.fraud or a.agg in AGG_FRAUD
        for ent in ents.values():
            self._layout(ent, spec)
        self.entities = list(ents.values())
        self._compile()
        self.label_horizon_ms = max(
            (
                ((r.n_buckets + 1) * g.width_us + r.delay_us) // 1000
                for e in self.entities
                for g in e.groups
                if g.fraud
                for r in g.ranges
            ),
            default=0,
        )

    @staticmethod
    def _slots(ent: _Entity, a: Aggregate) -> dict[str, int]:
        base = 4 + 4 * ent.numeric.index(a.field) if a.field in ent.numeric else -1
        pos = {"n": S_N, "tmin": S_TMIN, "tmax": S_TMAX, "k": S_K}
        pos.update({"c": base, "s": base + 1, "q": base + 2, "m": base + 3})
        return {k: pos[k] for k in NEEDS[a.agg]}

    def _layout(self, ent: _Entity, spec: FeatureSpec) -> None:
        offset = 0
        where: dict[tuple[int, int, int], int] = {}  # (gid, n_buckets, delay) -> block start
        span = 0
        for g in ent.groups:
            for r in g.ranges:
                where[(g.gid, r.n_buckets, r.delay_us)] = offset
                offset += len(r.want)
                span = max(span, (r.n_buckets + 1) * g.width_us + r.delay_us)
        dist_at: dict[tuple[int, int, int], int] = {}
        for d in ent.distincts:
            for w, n in d.windows:
                dist_at[(d.did, w, n)] = offset
                offset += 2
                span = max(span, (n + 1) * w)
        ent.out_len = offset
        ent.ttl_ms = span // 1000 + 3_600_000
        for a in spec.aggregates:
            if a.entity != ent.name:
                continue
            fi = self.index[a.name]
            if a.agg in AGG_VALUE:
                d = next(d for d in ent.distincts if d.value_field == a.field)
                at = dist_at[(d.did, a.width_us, a.buckets)]
                ent.readers.append((fi, a.agg, {"count": at, "seen": at + 1}, a.field))
                ent.fast.append(
                    (fi, None, a.field, at if a.agg == "distinct" else at + 1, a.agg == "new")
                )
                continue
            g = next(g for g in ent.groups if g.width_us == a.width_us)
            r = next(
                r for r in g.ranges if (r.n_buckets, r.delay_us) == (a.buckets, a.delay_s * US)
            )
            start = where[(g.gid, r.n_buckets, r.delay_us)]
            offs = {k: start + r.want.index(s) for k, s in self._slots(ent, a).items()}
            ent.readers.append((fi, a.agg, offs, a.field))
            ent.fast.append((fi, fm.reader(a.agg, offs), a.field, 0, False))

    def _compile(self) -> None:
        """Per entity, the spec-only parts of its program as flat tuples (hot-path friendly)."""
        self._programs = [
            (
                ent,
                ent.key_fields[0] if len(ent.key_fields) == 1 else None,
                ent.key_fields,
                ent.name + ":",
                tuple(ent.numeric),
                tuple(
                    (
                        g.gid,
                        g.width_us,
                        g.fraud,
                        tuple((r.n_buckets - 1, r.delay_us, r.want) for r in g.ranges),
                    )
                    for g in ent.groups
                ),
                tuple((d.did, d.value_field, tuple(d.windows)) for d in ent.distincts),
                ent.ttl_ms,
                ent.ops,
            )
            for ent in self.entities
        ]

    def entity_ops(
        self, t_us: int, fields: Mapping[str, Any], numbers: Mapping[str, float]
    ) -> tuple[list[EntityOp], list[_Entity]]:
        """The store program of one transaction: one EntityOp per entity the event has."""
        out: list[EntityOp] = []
        present: list[_Entity] = []
        quads: dict[str, list[float]] = {}
        for (
            ent,
            one,
            key_fields,
            head,
            numeric,
            groups_c,
            dists_c,
            ttl_ms,
            slot_ops,
        ) in self._programs:
            if one is not None:
                v = fields[one]
                if v is None:
                    continue
                key = head + v
            else:
                parts = [fields[f] for f in key_fields]
                if None in parts:
                    continue
                key = head + "|".join(parts)
            vals: list[float] = [1.0, t_us, t_us, 0.0]
            for nf in numeric:
                q = quads.get(nf)
                if q is None:
                    x = numbers[nf]
                    q = quads[nf] = (
                        [0.0, 0.0, 0.0, -math.inf] if math.isnan(x) else [1.0, x, x * x, x]
                    )
                vals += q
            groups = []
            label_groups = []
            for gid, w, fraud, ranges_c in groups_c:
                b = t_us // w
                prune = b
                ranges: list[Any] = []
                for nb1, delay, want in ranges_c:
                    if delay:
                        hi = (t_us - delay) // w - 1
                        lo = hi - nb1
                    else:
                        hi = b
                        lo = b - nb1
                    prune = min(prune, lo)
                    ranges.append([lo, hi, want])
                groups.append([gid, b, prune, ranges])
                if fraud:
                    label_groups.append([gid, b])
            distincts = []
            for did, value_field, windows in dists_c:
                v = fields[value_field]
                los = [(t_us // w - n + 1) * w for w, n in windows]
                distincts.append([did, "" if v is None else v, min(los), los])
            out.append([key, ttl_ms, slot_ops, vals, groups, distincts, label_groups])
            present.append(ent)
        return out, present


class FeatureEngine:
    """Computes features for transactions against a StateStore; labels update risk state."""

    def __init__(
        self, spec: FeatureSpec, store: StateStore, *, tx_ttl_s: int | None = None
    ) -> None:
        self.spec = spec
        self.store = store
        self.plan = Plan(spec)
        self._names = spec.names
        self._pw = [(self.plan.index[n], n) for n in spec.pointwise]
        self._ext = [(self.plan.index[n], n) for n in spec.external]
        horizon = max(self.plan.label_horizon_ms, 86_400_000)
        self.tx_ttl_ms = tx_ttl_s * 1000 if tx_ttl_s is not None else horizon

    def _base(
        self, event: TransactionEvent, external: Mapping[str, float] | None
    ) -> tuple[list[float], int, dict[str, float]]:
        t_us = to_us(event.occurred_at)
        numbers = pointwise_values(event, t_us)
        vec = [NAN] * len(self._names)
        for i, n in self._pw:
            vec[i] = numbers[n]
        if external:
            for i, n in self._ext:
                v = external.get(n)
                if v is not None:
                    vec[i] = float(v)
        return vec, t_us, numbers

    def _result(self, vec: list[float], first: bool) -> FeatureResult:
        return FeatureResult(
            dict(zip(self._names, vec, strict=True)), np.array(vec, np.float64), first
        )

    def pointwise(
        self, event: TransactionEvent, external: Mapping[str, float] | None = None
    ) -> FeatureResult:
        """Features that need no state (aggregates NaN): the fail-open path when the store is down."""
        vec, _, _ = self._base(event, external)
        return self._result(vec, True)

    def process_transaction(
        self, event: TransactionEvent, external: Mapping[str, float] | None = None
    ) -> FeatureResult:
        """Features as of just before ``event``, then record it (one store call)."""
        vec, t_us, numbers = self._base(event, external)
        fields = event_values(event)
        ops, present = self.plan.entity_ops(t_us, fields, numbers)
        first, res = self.store.execute(event.transaction_id, t_us, self.tx_ttl_ms, ops)
        self.fill(vec=vec, t_us=t_us, fields=fields, numbers=numbers, present=present, res=res)
        return self._result(vec, first)

    def process_many(
        self,
        events: list[TransactionEvent],
        externals: list[Mapping[str, float] | None] | None = None,
    ) -> list[FeatureResult]:
        """``process_transaction`` for several events with ONE store call (one Redis round
        trip), in list order: the results equal calling ``process_transaction`` on each in
        turn, bit for bit (a later event sees the earlier ones; a repeated id replays)."""
        if externals is None:
            externals = [None] * len(events)
        plan, ttl = self.plan, self.tx_ttl_ms
        work = []
        items = []
        for event, external in zip(events, externals, strict=True):
            vec, t_us, numbers = self._base(event, external)
            fields = event_values(event)
            ops, present = plan.entity_ops(t_us, fields, numbers)
            work.append((vec, t_us, fields, numbers, present))
            items.append((event.transaction_id, t_us, ttl, ops))
        out = []
        for (vec, t_us, fields, numbers, present), (first, res) in zip(
            work, self.store.execute_many(items), strict=True
        ):
            self.fill(vec=vec, t_us=t_us, fields=fields, numbers=numbers, present=present, res=res)
            out.append(self._result(vec, first))
        return out

    def fill(
        self,
        *,
        vec: list[float],
        t_us: int,
        fields: Mapping[str, Any],
        numbers: Mapping[str, float],
        present: list[_Entity],
        res: list[float],
    ) -> None:
        base = 0
        for ent in present:
            for fi, fn, fld, off, is_new in ent.fast:
                if fn is not None:
                    vec[fi] = fn(res, base, numbers[fld] if fld is not None else NAN, t_us)
                elif is_new:
                    vec[fi] = NAN if fields[fld] is None else (0.0 if res[base + off] else 1.0)  # type: ignore[index]
                else:
                    vec[fi] = float(res[base + off])
            base += ent.out_len

    def apply_label(self, label: LabelEvent) -> None:
        """Record a verdict: from now on it counts in the risk rates of the transaction's entities."""
        self.store.apply_label(label.transaction_id, label.is_fraud)
