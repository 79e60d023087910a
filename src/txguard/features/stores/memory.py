"""MemoryStore: the embedded default state store (in-process, snapshot to disk).

It runs exactly the algorithm of the Redis Lua script (``stores/redis.py``) on Python dicts, so
the two return bit-identical numbers. A lock makes each transaction atomic across threads.
State is bounded the same way as in Redis: buckets outside every window are pruned on update,
distinct values by last-seen time, and whole entities / transaction records expire
(here by *event* time, checked every ``sweep_every`` transactions).

Snapshots are MessagePack (``msgspec``), never pickle: loading one cannot execute code.
"""

from __future__ import annotations

import math
import os
import threading
from bisect import bisect_left, bisect_right
from functools import reduce
from operator import add
from pathlib import Path
from typing import Any

import msgspec

from txguard.domain.errors import FieldError, ValidationError
from txguard.features.ports import OP_MAX, OP_MIN, OP_SUM, EntityOp

SNAPSHOT_VERSION = 1


def aggregate(
    buckets: dict[int, list[float]],
    ids: list[int],
    *,
    lo: int,
    hi: int,
    ops: list[int],
    want: list[int],
) -> list[float]:
    """Wanted slots summed / min'd / max'd over buckets lo..hi, ``ids`` being the sorted bucket
    ids. Sums start at 0.0 and add buckets in ascending order, exactly as the Lua script does
    (float addition is not associative: the order is part of the contract) — ``reduce(add)``
    is that left fold, run in C."""
    i0 = bisect_left(ids, lo)
    i1 = bisect_right(ids, hi)
    if i0 >= i1:
        return [_EMPTY[ops[j]] for j in want]
    cols = list(zip(*[buckets[b] for b in ids[i0:i1]], strict=True))
    return [
        reduce(add, cols[j], 0.0)
        if ops[j] == OP_SUM
        else (min if ops[j] == OP_MIN else max)(cols[j])
        for j in want
    ]


_EMPTY = {OP_SUM: 0.0, OP_MIN: math.inf, OP_MAX: -math.inf}


def combine(bucket: list[float], vals: list[float], ops: list[int]) -> None:
    for j, o in enumerate(ops):
        if o == OP_SUM:
            bucket[j] = bucket[j] + vals[j]
        elif o == OP_MIN:
            bucket[j] = min(bucket[j], vals[j])
        elif vals[j] > bucket[j]:
            bucket[j] = vals[j]


class MemoryStore:
    """In-process StateStore. ``snapshot(path)`` / ``MemoryStore.load(path)`` survive restarts."""

    def __init__(self, *, sweep_every: int = 50_000) -> None:
        # entity key -> [groups {gid: {bucket: slots}}, distincts {did: {value: last_t}}, expires_t]
        self.entities: dict[str, list[Any]] = {}
        # tx id -> [t_us, result, label targets [[key, [[gid, bucket], ...]], ...], fraud 0/1, expires_t]
        self.txs: dict[str, list[Any]] = {}
        # entity key -> {(gid, range no): (lo, last whole bucket, folded slots), did: [floor,
        # {lo_t: count}]}: derived from the state, never snapshotted, rebuilt on demand
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
                return False, rec[1]
            out: list[float] = []
            labels: list[list[Any]] = []
            entities, caches = self.entities, self._caches
            for key, ttl_ms, slot_ops, vals, groups, distincts, label_groups in ops:
                st = entities.get(key)
                if st is None:
                    st = entities[key] = [{}, {}, 0]
                cache = caches.get(key)
                if cache is None:
                    cache = caches[key] = {}
                gs = st[0]
                for gid, b, prune, ranges in groups:
                    buckets = gs.get(gid)
                    if buckets is None:
                        buckets = gs[gid] = {}
                    if buckets:
                        ids = sorted(buckets)
                        for lo, hi, want in ranges:
                            out += aggregate(buckets, ids, lo=lo, hi=hi, ops=slot_ops, want=want)
                        if ids[0] < prune:
                            for old in ids:
                                if old >= prune:
                                    break
                                del buckets[old]
                    else:
                        for _lo, _hi, want in ranges:
                            out += [_EMPTY[slot_ops[j]] for j in want]
                    cur = buckets.get(b)
                    if cur is None:
                        buckets[b] = list(vals)
                    else:
                        combine(cur, vals, slot_ops)
                if distincts:
                    self._distincts(st[1], cache, t_us, distincts, out)
                st[2] = max(st[2], t_us + ttl_ms * 1000)
                if label_groups:
                    labels.append([key, label_groups])
            self.txs[tx_id] = [t_us, out, labels, 0, t_us + tx_ttl_ms * 1000]
            self._latest = max(self._latest, t_us)
            self._ops += 1
            if self._ops % self._sweep_every == 0:
                self._sweep()
            return True, out

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
                for key, label_groups in rec[2]:
                    st = self.entities.get(key)
                    if st is None:
                        continue
                    for gid, b in label_groups:
                        bucket = st[0].get(gid, {}).get(b)
                        if bucket is not None:
                            bucket[3] = bucket[3] + delta
                rec[3] = want
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
                "entities": self.entities,
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
        if not isinstance(doc, dict) or doc.get("version") != SNAPSHOT_VERSION:
            raise ValidationError(
                [FieldError(str(p), "unsupported feature-state snapshot version")]
            )
        store.entities = doc["entities"]
        store.txs = doc["txs"]
        store._latest = doc["latest"]
        return store
