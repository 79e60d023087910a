"""MemoryStore: the embedded default state store (in-process, snapshot to disk).

It runs exactly the algorithm of the Redis Lua script (``stores/redis.py``) on the same layout
(each bucket group one flat array of ``[bucket id, slots...]`` records sorted by bucket id), so the
two return bit-identical numbers. A lock makes each transaction atomic across threads.
State is bounded the same way as in Redis: buckets outside every window are pruned on update,
distinct values by last-seen time, and whole entities / transaction records expire
(here by *event* time, checked every ``sweep_every`` transactions).

Snapshots are MessagePack (``msgspec``), never pickle: loading one cannot execute code.

Garbage collection: the bulk of the state is numbers, and CPython's cyclic collector walks
every element of every list it tracks on each full collection (measured: ~25 µs per transaction
of a replay went to it). So bucket groups are ``array('d')`` (not tracked: the same IEEE
doubles as the Lua script's numbers; event times in µs and bucket ids are integers below 2**53,
exact as doubles) and a transaction's stored result is a tuple of numbers (untracked by the
collector after its first pass), as is the whole transaction record with its label targets
(the engine's label groups are tuples; a label replaces the record).
"""

from __future__ import annotations

import math
import os
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from functools import reduce
from operator import add
from pathlib import Path
from typing import Any, TypeAlias

import msgspec

from txguard.domain.errors import FieldError, ValidationError
from txguard.features.ports import OP_MAX, OP_MIN, OP_SUM, EntityOp, TxOps

SNAPSHOT_VERSION = 2  # 1: buckets as {bucket: slots} (upgraded on load)


# array('d'): one bucket group, records [bucket id, slot 0, slot 1, ...]
Flat: TypeAlias = "array[float]"


def aggregate(
    flat: Flat,
    ids: Flat,
    rs: int,
    *,
    lo: int,
    hi: int,
    ops: list[int],
    want: list[int],
    out: list[float],
) -> None:
    """Wanted slots summed / min'd / max'd over buckets lo..hi of one group. ``flat`` holds the
    group's buckets as records ``[bucket id, slot 0, slot 1, ...]`` of ``rs`` numbers sorted by
    id (``ids`` = ``flat[::rs]``), so one slot over a bucket range is a strided slice. Sums
    start at 0.0 and add buckets in ascending order, exactly as the Lua script does (float
    addition is not associative: the order is part of the contract); ``reduce(add)`` is that
    left fold, run in C. The numbers are appended to ``out``."""
    i0 = bisect_left(ids, lo)
    i1 = bisect_right(ids, hi)
    append = out.append
    if i0 >= i1:
        for j in want:
            append(_EMPTY[ops[j]])
        return
    a, z = i0 * rs + 1, i1 * rs
    for j in want:
        col = flat[a + j : z : rs]
        o = ops[j]
        append(reduce(add, col, 0.0) if o == OP_SUM else min(col) if o == OP_MIN else max(col))


_ZEROS = [0.0, 0.0]
_EMPTY = {OP_SUM: 0.0, OP_MIN: math.inf, OP_MAX: -math.inf}


def combine(flat: Flat, at: int, vals: list[float], ops: list[int]) -> None:
    """Add one transaction's slot values into the bucket record whose slot 0 is ``flat[at]``."""
    for j, o in enumerate(ops):
        k = at + j
        if o == OP_SUM:
            flat[k] = flat[k] + vals[j]
        elif o == OP_MIN:
            flat[k] = min(flat[k], vals[j])
        elif vals[j] > flat[k]:
            flat[k] = vals[j]


def _upgrade_v1(doc: dict[str, Any]) -> None:
    """Snapshot layout 1 (``{gid: {bucket: slots}}``) -> layout 2 (flat sorted records)."""
    widths: dict[str, int] = {}
    for key, st in doc["entities"].items():
        groups = {}
        for gid, bk in st[0].items():
            flat: list[Any] = []
            for b in sorted(bk):
                flat += [b, *bk[b]]
                widths[key] = len(bk[b]) + 1
            groups[gid] = flat
        st[0] = groups
    for rec in doc["txs"].values():
        rec[2] = [[key, lg, widths.get(key, 0)] for key, lg in rec[2]]


class MemoryStore:
    """In-process StateStore. ``snapshot(path)`` / ``MemoryStore.load(path)`` survive restarts."""

    def __init__(self, *, sweep_every: int = 50_000) -> None:
        # entity key -> [groups {gid: [bucket, slot, ..., bucket, slot, ...]} (records sorted by
        # bucket), distincts {did: {value: last_t}}, expires_t]
        self.entities: dict[str, list[Any]] = {}
        # tx id -> [t_us, result, label targets [[key, [[gid, bucket], ...], record size], ...],
        # fraud 0/1, expires_t]
        self.txs: dict[str, Sequence[Any]] = {}
        # entity key -> {did: [floor, {lo_t: count}]}: derived from the state, never
        # snapshotted, rebuilt on demand
        self._caches: dict[str, dict[Any, Any]] = {}
        self._lock = threading.Lock()
        self._latest = 0
        self._ops = 0
        self._sweep_every = sweep_every

    def execute(
        self, tx_id: str, t_us: int, tx_ttl_ms: int, ops: list[EntityOp]
    ) -> tuple[bool, list[float]]:
        with self._lock:
            rec = self.txs.get(tx_id)
            if rec is not None:
                return False, list(rec[1])
            out: list[float] = []
            labels: list[tuple[str, Any, int]] = []
            entities, caches = self.entities, self._caches
            for key, ttl_ms, slot_ops, vals, groups, distincts, label_groups in ops:
                st = entities.get(key)
                if st is None:
                    st = entities[key] = [{}, {}, 0]
                cache = caches.get(key)
                if cache is None:
                    cache = caches[key] = {}
                gs = st[0]
                rs = len(slot_ops) + 1
                record = array("d", [0.0, *vals])  # a new bucket: [bucket id, vals...]
                for gid, b, prune, ranges in groups:
                    flat = gs.get(gid)
                    if flat is None:
                        flat = gs[gid] = array("d")
                    ids = flat[::rs]
                    for lo, hi, want in ranges:
                        aggregate(flat, ids, rs, lo=lo, hi=hi, ops=slot_ops, want=want, out=out)
                    i = bisect_left(ids, b)
                    if i < len(ids) and ids[i] == b:
                        combine(flat, i * rs + 1, vals, slot_ops)
                    else:
                        record[0] = b
                        flat[i * rs : i * rs] = record
                    if ids and ids[0] < prune:  # b >= prune: the insert is after the cut
                        del flat[: bisect_left(ids, prune) * rs]
                if distincts:
                    self._distincts(st[1], cache, t_us, distincts, out)
                st[2] = max(st[2], t_us + ttl_ms * 1000)
                if label_groups:
                    labels.append((key, label_groups, rs))
            # tuples of numbers and strings: untracked by the cyclic GC once it has seen them
            self.txs[tx_id] = (t_us, tuple(out), tuple(labels), 0, t_us + tx_ttl_ms * 1000)
            self._latest = max(self._latest, t_us)
            self._ops += 1
            if self._ops % self._sweep_every == 0:
                self._sweep()
            return True, out

    def execute_many(self, items: list[TxOps]) -> list[tuple[bool, list[float]]]:
        """In-process there is no round trip to save: each transaction in turn."""
        execute = self.execute
        return [execute(tx_id, t_us, ttl, ops) for tx_id, t_us, ttl, ops in items]

    @staticmethod
    def _distincts(
        ds: dict[int, dict[str, int]],
        cache: dict[Any, Any],
        t_us: int,
        distincts: list[Any],
        out: list[float],
    ) -> None:
        """Distinct counts per window start, kept up to date incrementally: a count per
        ``lo_t`` changes only when a value crosses it (insert, refresh or prune). Pruning runs
        only when some value can be below the threshold (``floor`` is a lower bound of every
        last-seen time), which deletes exactly what pruning on every update would."""
        for did, value, prune_t, los in distincts:
            seen = ds.get(did)
            if seen is None:
                seen = ds[did] = {}
            if not seen and not value:  # nothing remembered, nothing to remember: all zero
                out += _ZEROS * len(los)
                continue
            meta = cache.get(did)
            if meta is None:  # [floor, {lo_t: count}]
                meta = cache[did] = [-1 << 62, {}]
            counts: dict[int, int] = meta[1]
            last = seen.get(value) if value else None
            for lo_t in los:
                c = counts.get(lo_t)
                if c is None:
                    if len(counts) > 16:
                        counts.clear()
                    c = counts[lo_t] = sum(1 for v in seen.values() if v >= lo_t)
                out.append(float(c))
                out.append(1.0 if last is not None and last >= lo_t else 0.0)
            if value and (last is None or t_us > last):
                seen[value] = t_us
                for lo_t in counts:
                    if t_us >= lo_t and (last is None or last < lo_t):
                        counts[lo_t] += 1
                meta[0] = min(meta[0], t_us)
            if prune_t > meta[0]:
                gone = [k for k, v in seen.items() if v < prune_t]
                for k in gone:
                    x = seen.pop(k)
                    for lo_t in counts:
                        if x >= lo_t:
                            counts[lo_t] -= 1
                meta[0] = prune_t

    def apply_label(self, tx_id: str, is_fraud: bool) -> bool:
        with self._lock:
            rec = self.txs.get(tx_id)
            if rec is None:
                return False
            want = 1 if is_fraud else 0
            delta = want - rec[3]
            if delta:
                for key, label_groups, rs in rec[2]:
                    st = self.entities.get(key)
                    if st is None:
                        continue
                    for gid, b in label_groups:
                        flat = st[0].get(gid)
                        if not flat:
                            continue
                        ids = flat[::rs]
                        i = bisect_left(ids, b)
                        if i < len(ids) and ids[i] == b:
                            k = i * rs + 1 + 3  # the fraud slot
                            flat[k] = flat[k] + delta
                self.txs[tx_id] = (rec[0], rec[1], rec[2], want, rec[4])  # records are tuples
            return True

    def _sweep(self) -> None:
        """Forget entities and transaction records past their expiry (event time)."""
        now = self._latest
        for k in [k for k, st in self.entities.items() if st[2] < now]:
            del self.entities[k]
            self._caches.pop(k, None)
        for k in [k for k, r in self.txs.items() if r[4] < now]:
            del self.txs[k]

    def close(self) -> None:
        pass

    # ----------------------------------------------------------------------- snapshots

    def snapshot(self, path: str | Path) -> None:
        """Write the whole state atomically (temp file + rename) as MessagePack."""
        with self._lock:
            doc = {
                "version": SNAPSHOT_VERSION,
                "latest": self._latest,
                "entities": {
                    key: [{gid: flat.tolist() for gid, flat in st[0].items()}, *st[1:]]
                    for key, st in self.entities.items()
                },
                "txs": self.txs,
            }
            data = msgspec.msgpack.encode(doc)
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> MemoryStore:
        """A store restored from :meth:`snapshot`; a missing file gives an empty store."""
        store = cls(**kwargs)
        p = Path(path)
        if not p.exists():
            return store
        try:
            doc = msgspec.msgpack.decode(p.read_bytes())
        except msgspec.DecodeError as e:
            raise ValidationError(
                [FieldError(str(p), f"not a feature-state snapshot: {e}")]
            ) from None
        if isinstance(doc, dict) and doc.get("version") == 1:
            _upgrade_v1(doc)
        elif not isinstance(doc, dict) or doc.get("version") != SNAPSHOT_VERSION:
            raise ValidationError(
                [FieldError(str(p), "unsupported feature-state snapshot version")]
            )
        for st in doc["entities"].values():
            st[0] = {gid: array("d", flat) for gid, flat in st[0].items()}
        store.entities = doc["entities"]
        store.txs = doc["txs"]
        store._latest = doc["latest"]
        return store
