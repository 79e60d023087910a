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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from txguard.domain.events import LabelEvent, TransactionEvent
from txguard.domain.money import CRYPTO
from txguard.features import formulas as fm
from txguard.features.ports import (
    OP_MAX,
    OP_MIN,
    OP_SUM,
    EntityOp,
    ExecuteManyAsync,
    StateStore,
    TxOps,
)
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
    # the readers compiled into one function (see _compile_reads):
    # read(values, result, block start, numbers, fields, t_us) writes this entity's features
    read: Callable[
        [dict[str, float], list[float], int, Mapping[str, float], Mapping[str, Any], int], None
    ] = field(default=lambda values, r, b, numbers, fields, t: None)
    read_source: str = ""


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
                continue
            g = next(g for g in ent.groups if g.width_us == a.width_us)
            r = next(
                r for r in g.ranges if (r.n_buckets, r.delay_us) == (a.buckets, a.delay_s * US)
            )
            start = where[(g.gid, r.n_buckets, r.delay_us)]
            offs = {k: start + r.want.index(s) for k, s in self._slots(ent, a).items()}
            ent.readers.append((fi, a.agg, offs, a.field))
        _compile_reads(ent, spec.names)

    def _compile(self) -> None:
        """Per entity, the spec-only parts of its store program (see :class:`_Program`)."""
        self._programs = [_Program(ent) for ent in self.entities]

    def entity_ops(
        self, t_us: int, fields: Mapping[str, Any], numbers: Mapping[str, float]
    ) -> tuple[list[EntityOp], list[_Entity]]:
        """The store program of one transaction: one EntityOp per entity the event has.

        Only the entity key, the slot values and the distinct values are new per transaction;
        the bucket part (groups, label groups, distinct window starts) is the program's cached
        one while ``t_us`` stays in the buckets it was built for. Shared lists are never
        mutated after they are handed out (stores only read ops; a refresh builds new lists)."""
        out: list[EntityOp] = []
        present: list[_Entity] = []
        quads: dict[str, list[float]] = {}
        for p in self._programs:
            one = p.one
            if one is not None:
                v = fields[one]
                if v is None:
                    continue
                key = p.head + v
            else:
                parts = [fields[f] for f in p.key_fields]
                if None in parts:
                    continue
                key = p.head + "|".join(parts)
            vals: list[float] = [1.0, t_us, t_us, 0.0]
            for nf in p.numeric:
                q = quads.get(nf)
                if q is None:
                    x = numbers[nf]
                    q = quads[nf] = (
                        [0.0, 0.0, 0.0, -math.inf] if math.isnan(x) else [1.0, x, x * x, x]
                    )
                vals += q
            c = p.cached  # one read: another thread may replace it, never change it
            if not c[0] <= t_us < c[1]:
                c = p.cached = p.build(t_us)
            _, _, groups, label_groups, dists = c
            distincts = [
                [did, "" if (dv := fields[vf]) is None else dv, prune, los]
                for did, vf, prune, los in dists
            ]
            out.append([key, p.ttl_ms, p.slot_ops, vals, groups, distincts, label_groups])
            present.append(p.ent)
        return out, present


_NEVER = 1 << 62  # beyond any µs timestamp: an interval bound that never holds


class _Program:
    """One entity's store program. The bucket part of an EntityOp (``groups``,
    ``label_groups``, distinct ``prune``/``los``) depends on the event time only through the
    bucket indices ``(t - delay) // width`` of its groups and distinct windows, so it is the
    same for every transaction in ``[lo, hi)``: the intersection of the current buckets. With
    the service's traffic that interval (150 s for 1 h windows of 24 buckets) holds many
    transactions, which then share those lists; outside it, ``build`` (generated straight-line
    code, see :func:`_compile_build`) makes new ones. ``cached`` is the one tuple
    ``(lo, hi, groups, label_groups, dists)``, replaced whole (threads sharing an engine see
    one consistent version). Lists handed out are never mutated: stores only read ops. Label
    groups are tuples (MessagePack arrays all the same): MemoryStore keeps them with the
    transaction record, and tuples of numbers drop out of the cyclic GC's work."""

    __slots__ = (
        "build",
        "build_source",
        "cached",
        "ent",
        "head",
        "key_fields",
        "numeric",
        "one",
        "slot_ops",
        "ttl_ms",
    )

    def __init__(self, ent: _Entity) -> None:
        self.ent = ent
        self.one = ent.key_fields[0] if len(ent.key_fields) == 1 else None
        self.key_fields = ent.key_fields
        self.head = ent.name + ":"
        self.numeric = tuple(ent.numeric)
        self.ttl_ms = ent.ttl_ms
        self.slot_ops = ent.ops
        self.build_source, self.build = _compile_build(ent)
        self.cached: Built = (0, 0, [], (), [])  # an empty interval: the first one builds


# (lo, hi, groups, label groups, distincts) of one entity for event times in [lo, hi)
Built = tuple[
    int, int, list[list[Any]], tuple[tuple[int, int], ...], list[tuple[int, str, int, list[int]]]
]
BuildFn = Callable[[int], Built]


def _compile_build(ent: _Entity) -> tuple[str, BuildFn]:
    """Generate ``build(t)`` for one entity: its groups, label groups and distinct windows at
    event time ``t`` (µs) and the interval ``[lo, hi)`` of times they hold for, as straight-line
    code with the spec's constants inlined. Bucket arithmetic is integer, so it is exact; the
    lists are those of the EntityOp layout in :mod:`txguard.features.ports`.

    For a group of width ``w``: ``b = t // w``; an undelayed range of ``n`` buckets is
    ``[b - (n - 1), b]``; a range delayed by ``d`` ends at ``h = (t - d) // w - 1`` and covers
    ``[h - (n - 1), h]``; the prune bound is the lowest bucket any range reads (every range
    ends at or before ``b``, so that is also ``min(b, lows)`` as the layout defines it). A
    distinct window of ``n`` buckets of width ``w`` starts at ``(t // w - n + 1) * w``. Every
    quotient ``(t - d) // w`` is constant for ``t`` in ``[q * w + d, (q + 1) * w + d)``; the
    intersection of those is ``[lo, hi)``.

    Only integers and ``repr``'d names of a validated spec are written into the source, and the
    source is kept (``_Program.build_source``) for reading and debugging."""
    wants: dict[str, list[int]] = {}  # the constant slot lists, shared by every op
    lines = ["def build(t):"]
    quotients: dict[tuple[int, int], str] = {}  # (width, delay) -> variable holding (t-d)//w

    def q(w: int, d: int) -> str:
        name = quotients.get((w, d))
        if name is None:
            name = quotients[(w, d)] = f"q{len(quotients)}"
            lines.append(f"    {name} = {'t' if d == 0 else f'(t - {d})'} // {w}")
        return name

    groups, labels = [], []
    for g in ent.groups:
        b, w = q(g.width_us, 0), g.width_us
        ranges, lows = [], []
        for i, r in enumerate(g.ranges):
            want = f"W{g.gid}_{i}"
            wants[want] = r.want
            if r.delay_us:  # h = q - 1, lo = h - (n - 1) = q - n
                qd = q(w, r.delay_us)
                lo, hi = f"{qd} - {r.n_buckets}", f"{qd} - 1"
            else:
                lo, hi = f"{b} - {r.n_buckets - 1}", b
            ranges.append(f"[{lo}, {hi}, {want}]")
            lows.append(lo)
        prune = lows[0] if len(lows) == 1 else f"min({', '.join(lows)})"
        groups.append(f"[{g.gid}, {b}, {prune}, [{', '.join(ranges)}]]")
        if g.fraud:
            labels.append(f"({g.gid}, {b})")
    dists = []
    for d in ent.distincts:
        los = [f"({q(w, 0)} - {n - 1}) * {w}" for w, n in d.windows]
        lines.append(f"    los{d.did} = [{', '.join(los)}]")
        dists.append(f"({d.did}, {d.value_field!r}, min(los{d.did}), los{d.did})")
    starts = [f"{v} * {w} + {d}" if d else f"{v} * {w}" for (w, d), v in quotients.items()]
    ends = [f"({v} + 1) * {w}" + (f" + {d}" if d else "") for (w, d), v in quotients.items()]
    lines.append(f"    lo = max({', '.join([*starts, str(-_NEVER)])})")
    lines.append(f"    hi = min({', '.join([*ends, str(_NEVER)])})")
    lines.append(
        f"    return lo, hi, [{', '.join(groups)}], ({''.join(x + ', ' for x in labels)}), "
        f"[{', '.join(dists)}]"
    )
    source = "\n".join(lines) + "\n"
    namespace: dict[str, Any] = dict(wants)
    exec(compile(source, f"<txguard build: {ent.name}>", "exec"), namespace)
    fn: BuildFn = namespace["build"]
    return source, fn


def _compile_reads(ent: _Entity, names: tuple[str, ...]) -> None:
    """Compile the entity's readers into one straight-line function (generated source, kept in
    ``ent.read_source``): one line per feature calling the scalar formula, instead of a loop
    over closures. Distinct counts and the "new value" flag are read here too."""
    lines = ["def read(values, r, b, numbers, fields, t):"]
    for fi, agg, offs, fld in ent.readers:
        if agg == "distinct":
            expr = f"float(r[b + {offs['count']}])"
        elif agg == "new":
            expr = f"NAN if fields[{fld!r}] is None else (0.0 if r[b + {offs['seen']}] else 1.0)"
        else:
            expr = fm.expression(agg, offs, f"numbers[{fld!r}]")
        lines.append(f"    values[{names[fi]!r}] = {expr}")
    lines.append("    return None")
    ent.read_source = "\n".join(lines) + "\n"
    namespace = dict(fm.SCALARS)
    exec(compile(ent.read_source, f"<txguard reads: {ent.name}>", "exec"), namespace)
    ent.read = namespace["read"]


class FeatureEngine:
    """Computes features for transactions against a StateStore; labels update risk state."""

    def __init__(
        self, spec: FeatureSpec, store: StateStore, *, tx_ttl_s: int | None = None
    ) -> None:
        self.spec = spec
        self.store = store
        self.plan = Plan(spec)
        self._names = spec.names
        # every result's dict starts as a copy of this one: the keys in spec order (so the
        # vector is its values), NaN until a formula or the event sets them
        self._template = dict.fromkeys(spec.names, NAN)
        self._pw = spec.pointwise
        self._ext = spec.external
        horizon = max(self.plan.label_horizon_ms, 86_400_000)
        self.tx_ttl_ms = tx_ttl_s * 1000 if tx_ttl_s is not None else horizon
        self._execute_many_async: ExecuteManyAsync | None = getattr(
            store, "execute_many_async", None
        )

    def _base(
        self, event: TransactionEvent, external: Mapping[str, float] | None
    ) -> tuple[dict[str, float], int, dict[str, float]]:
        t_us = to_us(event.occurred_at)
        numbers = pointwise_values(event, t_us)
        values = self._template.copy()
        for n in self._pw:
            values[n] = numbers[n]
        if external:
            for n in self._ext:
                v = external.get(n)
                if v is not None:
                    values[n] = float(v)
        return values, t_us, numbers

    def _result(self, values: dict[str, float], first: bool) -> FeatureResult:
        return FeatureResult(
            values, np.fromiter(values.values(), np.float64, len(self._names)), first
        )

    def pointwise(
        self, event: TransactionEvent, external: Mapping[str, float] | None = None
    ) -> FeatureResult:
        """Features that need no state (aggregates NaN): the fail-open path when the store is down."""
        values, _, _ = self._base(event, external)
        return self._result(values, True)

    def process_transaction(
        self, event: TransactionEvent, external: Mapping[str, float] | None = None
    ) -> FeatureResult:
        """Features as of just before ``event``, then record it (one store call)."""
        work, item = self._prepare(event, external)
        return self._finish(work, *self.store.execute(*item))

    def process_many(
        self,
        events: list[TransactionEvent],
        externals: list[Mapping[str, float] | None] | None = None,
    ) -> list[FeatureResult]:
        """``process_transaction`` for several events with ONE store call (one Redis round
        trip), in list order: the results equal calling ``process_transaction`` on each in
        turn, bit for bit (a later event sees the earlier ones; a repeated id replays)."""
        prepared, items = self._prepare_many(events, externals)
        return self._finish_many(prepared, self.store.execute_many(items))

    async def process_many_async(
        self,
        events: list[TransactionEvent],
        externals: list[Mapping[str, float] | None] | None = None,
    ) -> list[FeatureResult]:
        """``process_many`` with the store call awaited on the running event loop where the
        store has one (``RedisStore.execute_many_async``); a store without (the in-process
        MemoryStore) is called inline. The same results, bit for bit."""
        prepared, items = self._prepare_many(events, externals)
        run = self._execute_many_async
        replies = await run(items) if run is not None else self.store.execute_many(items)
        return self._finish_many(prepared, replies)

    def _prepare_many(
        self,
        events: list[TransactionEvent],
        externals: list[Mapping[str, float] | None] | None,
    ) -> tuple[list[tuple[tuple[Any, ...], TxOps]], list[TxOps]]:
        if externals is None:
            externals = [None] * len(events)
        prepared = [self._prepare(e, x) for e, x in zip(events, externals, strict=True)]
        return prepared, [item for _, item in prepared]

    def _finish_many(
        self,
        prepared: list[tuple[tuple[Any, ...], TxOps]],
        replies: list[tuple[bool, list[float]]],
    ) -> list[FeatureResult]:
        return [
            self._finish(work, first, res)
            for (work, _), (first, res) in zip(prepared, replies, strict=True)
        ]

    def _prepare(
        self, event: TransactionEvent, external: Mapping[str, float] | None
    ) -> tuple[tuple[Any, ...], TxOps]:
        """Everything before the store call: the point-wise values and the store program."""
        values, t_us, numbers = self._base(event, external)
        fields = event_values(event)
        ops, present = self.plan.entity_ops(t_us, fields, numbers)
        return (values, t_us, fields, numbers, present), (
            event.transaction_id,
            t_us,
            self.tx_ttl_ms,
            ops,
        )

    def _finish(self, work: tuple[Any, ...], first: bool, res: list[float]) -> FeatureResult:
        values, t_us, fields, numbers, present = work
        self.fill(
            values=values, t_us=t_us, fields=fields, numbers=numbers, present=present, res=res
        )
        return self._result(values, first)

    def fill(
        self,
        *,
        values: dict[str, float],
        t_us: int,
        fields: Mapping[str, Any],
        numbers: Mapping[str, float],
        present: list[_Entity],
        res: list[float],
    ) -> None:
        """Write the aggregate features into ``values`` from the store's numbers: each present
        entity's compiled ``read`` on its block of ``res``."""
        base = 0
        for ent in present:
            ent.read(values, res, base, numbers, fields, t_us)
            base += ent.out_len

    def apply_label(self, label: LabelEvent) -> None:
        """Record a verdict: from now on it counts in the risk rates of the transaction's entities."""
        self.store.apply_label(label.transaction_id, label.is_fraud)
