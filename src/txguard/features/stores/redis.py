"""RedisStore: shared feature state for several API replicas, one atomic round trip per transaction.

Key layout 3 (``prefix`` defaults to ``txg:``)::

    {prefix}e:{entity}:{key}   string, MessagePack [3, groups, distincts]  PX = entity span + 1 h
                               groups    {gid: [record size, bucket, kept slot, ..., bucket, ...]}
                                         one flat array per bucket group, records sorted by
                                         bucket id; a group keeps only the slots its windows read
                                         (and fraud if labels count there); buckets outside every
                                         window pruned on update
                               distincts {did: {value: last_seen_us}} up to 16 values, pruned
                                         likewise; past that {did: floor}: the set moved to
    {prefix}d{did}:{entity}:{key}  sorted set value -> last_seen_us, same PX, refreshed together;
                               floor is a lower bound of its scores: the prune (ZREMRANGEBYSCORE)
                               runs only when the threshold passes it, which removes exactly what
                               pruning on every update would (as MemoryStore does)
    {prefix}tx:{transaction_id} hash r = result (MessagePack), l = label targets [[entity key,
                               [gid, bucket, fraud's place in a record, ...], 3], ...], f = 0/1
                               PX = label horizon (longest fraud window + delay, >= 1 day)

State of another layout (its first element is not 3) is discarded: deploy a new layout under a new
prefix or accept cold windows (ADR 0002).

``execute`` is one EVALSHA of :data:`UPDATE_LUA`: if the transaction record exists it returns the
stored result (idempotent: same id, same numbers, nothing counted twice); otherwise it reads every
entity's state (one MGET), aggregates the requested windows, applies the update, prunes, stores the
result with the record and returns it. Redis runs a script atomically, so replicas updating the
same entity at once serialise on the server. The Lua mirrors ``stores/memory.py`` operation for
operation (doubles, same order), which is why both stores return bit-identical numbers.

The call (what the script costs is what shaped it: in Redis's Lua every table grows by rehashing
while MessagePack is decoded into it, and every string made is hashed in full)::

    KEYS   record, the entities in op order, then each entity's distinct sets' sorted-set keys
    ARGV 1 MessagePack [t, record TTL, entities, static count, then per entity: TTL, the values
           of its distinct fields]                      (TTLs as strings: no %.17g per call)
    ARGV 2 doubles: every entity's static part [length, slots, slot ops..., groups: gid, bucket,
           prune below, kept slots..., ranges: lo, hi, (place, op)..., distincts: did, prune
           below, window starts...], then every entity's slot values — one presized table
    ARGV 3 the label targets, stored as they are
    ARGV 4 the struct format of ARGV 2 ('<ddd...')

The static part of an op depends on the spec and the event's buckets only, so it is packed once
per bucket interval and remembered by the identity of the engine's (never mutated) lists.

Every key a script touches is passed in KEYS, but one transaction's keys belong to different
entities: on Redis Cluster they would hash to different slots (see ADR 0002).
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import sys
import threading
from array import array
from functools import lru_cache
from typing import Any

import msgspec
import redis
from hiredis import ReplyError, pack_command  # the C RESP packer (dependency: redis[hiredis])

from txguard.domain.errors import DependencyError
from txguard.features.ports import EntityOp, TxOps
from txguard.features.stores.redis_link import Endpoint, RedisLink

UPDATE_LUA = r"""
local LAYOUT = 3  -- state layout version: state of another layout is discarded
local KEEP = 16   -- a distinct set keeping more values than this moves to its sorted set
local rec = redis.call('HGET', KEYS[1], 'r')
if rec then return {0, rec} end
local P = cmsgpack.unpack(ARGV[1])  -- t, record ttl, entities, static numbers, ttls/values
local t, txttl, nent, sbin = P[1], P[2], P[3], ARGV[2]
local fmts = {}
local function fmt(k)
  local f = fmts[k]
  if not f then f = '<' .. string.rep('d', k); fmts[k] = f end
  return f
end
local function doubles(s, pos, k)  -- the k doubles of s from byte pos: one presized table
  if k <= 4000 then
    local a = {struct.unpack(fmt(k), s, pos)}
    a[k + 1] = nil  -- the position after them
    return a
  end
  local a, m = {}, 0  -- in chunks: a C function returns at most ~8000 values
  while m < k do
    local c = math.min(4000, k - m)
    local part = doubles(s, pos, c)
    for j = 1, c do a[m + j] = part[j] end
    m, pos = m + c, pos + 8 * c
  end
  return a
end
local S, k = nil, #sbin / 8  -- every entity's static part, then its slot values
if k <= 4000 then S = {struct.unpack(ARGV[4], sbin)}; S[k + 1] = nil  -- ARGV[4]: '<ddd...'
else S = doubles(sbin, 1, k) end
local raws = {}
if nent > 0 then raws = redis.call('MGET', unpack(KEYS, 2, nent + 1)) end
local out, n, cnt, tmp, huge = {}, 0, {}, {}, math.huge
local zk = nent + 2  -- KEYS index of the next distinct set's sorted set
local e0 = 1  -- S[e0]: the length of this entity's static part, S[e0 + 1] its slot count
local v0 = P[4]  -- S[v0 + 1 + s]: this entity's value of slot s
local pi = 5  -- P[pi]: this entity's TTL (ms), then the values of its distinct fields
for i = 1, nent do
  local key, ttl = KEYS[i + 1], P[pi]
  pi = pi + 1
  local raw, st = raws[i], nil
  if raw then st = cmsgpack.unpack(raw) end
  if not st or st[1] ~= LAYOUT then st = {LAYOUT, {}, {}} end
  local G, DS = st[2], st[3]
  local ns = S[e0 + 1]
  local c = e0 + ns + 3
  for gi = 1, S[e0 + ns + 2] do
    -- a group keeps only the slots its ranges read (and fraud where labels land): k0 + j
    -- holds the j-th kept slot; its records are [bucket, kept slot 1, ...] after bk[1] = rs
    local gid, b, prune, nk = S[c], S[c + 1], S[c + 2], S[c + 3]
    local k0, rs = c + 3, nk + 1
    local nr = S[k0 + nk + 1]
    c = k0 + nk + 2
    local bk = G[gid]
    if bk and bk[1] ~= rs then bk = nil end  -- written for another spec
    local total = bk and #bk - 1 or 0
    local nrec = total / rs
    for ri = 1, nr do
      local lo, hi, nw = S[c], S[c + 1], S[c + 2]
      c = c + 3
      local r0, r1 = 0, nrec - 1
      while r0 <= r1 and bk[r0 * rs + 2] < lo do r0 = r0 + 1 end
      while r1 >= r0 and bk[r1 * rs + 2] > hi do r1 = r1 - 1 end
      local a, z = r0 * rs + 2, r1 * rs + 2  -- the first and the last record in the range
      for j = c, c + 2 * nw - 1, 2 do
        local q, o, acc = S[j], S[j + 1], 0  -- position in the record, op
        if o == 1 then
          for x = a + q, z + q, rs do acc = acc + bk[x] end
        elseif o == 2 then
          acc = huge
          for x = a + q, z + q, rs do local y = bk[x]; if y < acc then acc = y end end
        else
          acc = -huge
          for x = a + q, z + q, rs do local y = bk[x]; if y > acc then acc = y end end
        end
        n = n + 1
        out[n] = acc
      end
      c = c + 2 * nw
    end
    if not bk then  -- a new group: its first record, the table sized at once
      for j = 1, nk do tmp[j] = S[v0 + 1 + S[k0 + j]] end
      if b >= prune then G[gid] = {rs, b, unpack(tmp, 1, nk)} else G[gid] = {rs} end
    else
    local found, pos = nil, nrec
    for r = nrec - 1, 0, -1 do
      local id = bk[r * rs + 2]
      if id == b then found = r; break end
      if id < b then pos = r + 1; break end
      pos = r
    end
    if found then
      local base = found * rs + 1
      for j = 1, nk do
        local s = S[k0 + j]
        local o, x, y = S[e0 + s + 2], S[v0 + 1 + s], bk[base + j + 1]
        if o == 1 then bk[base + j + 1] = y + x
        elseif o == 2 then if x < y then bk[base + j + 1] = x end
        elseif x > y then bk[base + j + 1] = x end
      end
    else
      for k = total + 1, pos * rs + 2, -1 do bk[k + rs] = bk[k] end
      local base = pos * rs + 2
      bk[base] = b
      for j = 1, nk do bk[base + j] = S[v0 + 1 + S[k0 + j]] end
      total = total + rs
    end
    local cut = 0
    while cut < total and bk[cut + 2] < prune do cut = cut + rs end
    if cut > 0 then
      for k = cut + 2, total + 1 do bk[k - cut] = bk[k] end
      for k = total + 2 - cut, total + 1 do bk[k] = nil end
    end
    end
  end
  for di = 1, S[c] do
    local did, prune_t, nl = S[c + 1], S[c + 2], S[c + 3]
    local l0 = c + 4
    c = l0 + nl - 1
    local value, zkey = P[pi], KEYS[zk]
    pi, zk = pi + 1, zk + 1
    local m = DS[did]
    if type(m) == 'number' then  -- in the sorted set; m: a lower bound of its scores
      local last = nil
      if value ~= '' then
        last = redis.call('ZSCORE', zkey, value)
        if last then last = tonumber(last) end
      end
      for l = l0, l0 + nl - 1 do
        local lo_t = S[l]
        n = n + 1
        out[n] = redis.call('ZCOUNT', zkey, lo_t, '+inf')
        n = n + 1
        if last and last >= lo_t then out[n] = 1 else out[n] = 0 end
      end
      if value ~= '' and (not last or t > last) then
        redis.call('ZADD', zkey, t, value)
        if t < m then m = t end
      end
      if prune_t > m then
        redis.call('ZREMRANGEBYSCORE', zkey, '-inf', string.format('(%.17g', prune_t))
        m = prune_t
      end
      redis.call('PEXPIRE', zkey, ttl)
      DS[did] = m
    else
      m = m or {}
      local last = nil
      if value ~= '' then last = m[value] end
      for l = 1, nl do cnt[l] = 0 end
      local kept = 0
      for k, v in pairs(m) do  -- one pass: counts as of before the event, then the prune
        for l = 1, nl do if v >= S[l0 + l - 1] then cnt[l] = cnt[l] + 1 end end
        if v < prune_t then m[k] = nil else kept = kept + 1 end
      end
      for l = 1, nl do
        n = n + 1
        out[n] = cnt[l]
        n = n + 1
        if last and last >= S[l0 + l - 1] then out[n] = 1 else out[n] = 0 end
      end
      if value ~= '' and (not last or t > last) and t >= prune_t then
        m[value] = t
        if not last or last < prune_t then kept = kept + 1 end
      end
      if kept > KEEP then
        local args, floor = {}, huge
        for k, v in pairs(m) do
          args[#args + 1] = v
          args[#args + 1] = k
          if v < floor then floor = v end
        end
        redis.call('DEL', zkey)
        redis.call('ZADD', zkey, unpack(args))
        redis.call('PEXPIRE', zkey, ttl)
        DS[did] = floor
      elseif kept > 0 then DS[did] = m
      else DS[did] = nil end
    end
  end
  redis.call('SET', key, cmsgpack.pack(st), 'PX', ttl)
  e0, v0 = e0 + S[e0], v0 + ns
end
local packed = cmsgpack.pack(out)
redis.call('HSET', KEYS[1], 'r', packed, 'l', ARGV[3], 'f', 0)
redis.call('PEXPIRE', KEYS[1], txttl)
return {1, packed}
"""

LABEL_LUA = r"""
local f = redis.call('HGET', KEYS[1], 'f')
if not f then return -1 end
local want = tonumber(ARGV[1])
local delta = want - tonumber(f)
if delta == 0 then return 0 end
local lab = cmsgpack.unpack(redis.call('HGET', KEYS[1], 'l'))
for i = 1, #lab do
  local key = lab[i][1]
  if key ~= KEYS[i + 1] then return redis.error_reply('label targets changed; retry') end
  -- targets of layout 3 ([key, {gid, bucket, fraud's place in a record, ...}, 3]) in a
  -- layout 3 state only: the buckets of older records went with their layout
  if lab[i][3] == 3 then
    local raw = redis.call('GET', key)
    local st = raw and cmsgpack.unpack(raw)
    if st and st[1] == 3 then
      local G, lg = st[2], lab[i][2]
      for j = 1, #lg, 3 do
        local bk, q = G[lg[j]], lg[j + 2]
        if bk then  -- bk[1]: the record size; records [bucket, kept slots...] from bk[2]
          for base = 2, #bk, bk[1] do
            if bk[base] == lg[j + 1] then bk[base + q] = bk[base + q] + delta; break end
          end
        end
      end
      redis.call('SET', key, cmsgpack.pack(st), 'KEEPTTL')
    end
  end
end
redis.call('HSET', KEYS[1], 'f', want)
return 1
"""

LAYOUT = 3  # the state layout UPDATE_LUA writes (first element of the state)
_decode = msgspec.msgpack.Decoder()


@lru_cache(maxsize=256)
def _ms(ms: int) -> str:
    """A TTL as the script passes it on (a Lua number would be formatted with ``%.17g`` by every
    ``redis.call``); a handful of distinct values."""
    return str(ms)


_FRAUD_SLOT = 3  # slot 3 of a bucket counts fraud labels (engine.S_K)
_BIG_ENDIAN = sys.byteorder == "big"  # the script reads little-endian doubles


@lru_cache(maxsize=256)
def _doubles_format(n: int) -> str:
    """The ``struct`` format of n little-endian doubles (built in Lua it costs more than the
    decoding it serves: ``string.rep`` appends one character at a time)."""
    return "<" + "d" * n


def _as_dict(x: Any) -> dict[Any, Any]:
    """A Lua table as cmsgpack packed it: an array if its keys are 1..n, else a map."""
    return dict(enumerate(x, 1)) if isinstance(x, list) else dict(x)


_encode = msgspec.msgpack.Encoder()


def _results(replies: list[Any]) -> list[tuple[bool, list[float]]]:
    """The update script's replies as ``(first seen, numbers)``; an error reply in any place
    fails the whole call (the threaded and the loop round trip alike)."""
    out: list[tuple[bool, list[float]]] = []
    decode = _decode.decode
    for r in replies:
        if isinstance(r, Exception):
            raise DependencyError(f"feature store (redis) failed: {r}")
        first, packed = r
        out.append((bool(first), decode(packed)))
    return out


class RedisStore:
    """StateStore on Redis (standalone or Sentinel). ``client`` may be shared with other users."""

    def __init__(
        self,
        client: redis.Redis[bytes] | None = None,
        *,
        url: str | None = None,
        prefix: str = "txg:",
        timeout_s: float = 0.25,
    ) -> None:
        if client is None:
            if url is None:
                raise ValueError("RedisStore needs a client or a url")
            client = redis.Redis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
            )
        self.client = client
        self.prefix = prefix
        self._update = client.register_script(UPDATE_LUA)
        self._update_sha = hashlib.sha1(UPDATE_LUA.encode()).hexdigest()  # what EVALSHA names
        self._tx_prefix = f"{prefix}tx:"
        self._entity_prefix = f"{prefix}e:"
        self._label = client.register_script(LABEL_LUA)
        # id(groups) -> (packed static array, the lists it was built from..., set key prefixes)
        self._statics: dict[int, tuple[Any, ...]] = {}
        # execute_many_async: one link per event loop (None: not plain TCP, a thread instead)
        self._endpoint = Endpoint.of_client(client, timeout_s=timeout_s)
        self._links: dict[int, RedisLink] = {}  # id(loop) -> its link (which checks the loop)
        self._links_lock = threading.Lock()
        self._links_closed = False

    def tx_key(self, tx_id: str) -> str:
        return f"{self.prefix}tx:{tx_id}"

    def entity_key(self, key: str) -> str:
        return f"{self.prefix}e:{key}"

    def execute(
        self, tx_id: str, t_us: int, tx_ttl_ms: int, ops: list[EntityOp]
    ) -> tuple[bool, list[float]]:
        command = self._command(tx_id, t_us, tx_ttl_ms, ops)
        try:
            try:
                first, packed = self.client.execute_command(*command)
            except redis.exceptions.NoScriptError:  # server restarted or flushed: load, retry
                self.client.execute_command("SCRIPT", "LOAD", UPDATE_LUA)
                first, packed = self.client.execute_command(*command)
        except redis.RedisError as e:
            raise DependencyError(f"feature store (redis) failed: {e}") from e
        return bool(first), _decode.decode(packed)

    def _command(
        self, tx_id: str, t_us: int, tx_ttl_ms: int, ops: list[EntityOp]
    ) -> tuple[Any, ...]:
        """The EVALSHA of one transaction (the arguments are described in the module
        docstring). Per entity only its key, slot values and distinct values are new: the rest
        comes from :meth:`_static`'s cache."""
        ep = self._entity_prefix
        keys = [self._tx_prefix + tx_id]
        set_keys: list[str] = []
        head: list[Any] = [t_us, _ms(tx_ttl_ms), len(ops), 0]
        numbers: list[bytes] = []
        values: list[float] = []
        labels: list[Any] = []
        statics = self._statics
        nstatic = 0
        for op in ops:
            key, ttl, slot_ops, vals, groups, distincts, label_groups = op
            ek = ep + key
            keys.append(ek)
            e = statics.get(id(groups))
            if (
                e is None
                or e[1] is not slot_ops
                or e[2] is not label_groups
                or e[3] != ttl
                or e[4] != len(distincts)
                or (distincts and distincts[0][3] is not e[5])
            ):
                e = self._static(op)
            numbers.append(e[0])
            nstatic += e[6]
            values += vals
            head.append(e[7])
            if distincts:
                head += [d[1] for d in distincts]
                set_keys += [sp + key for sp in e[8]]
            if label_groups:
                labels.append((ek, e[9], LAYOUT))
        head[3] = nstatic
        slots = array("d", values)
        if _BIG_ENDIAN:
            slots.byteswap()
        numbers.append(slots.tobytes())
        keys += set_keys
        return (
            "EVALSHA",
            self._update_sha,
            len(keys),
            *keys,
            _encode.encode(head),
            b"".join(numbers),
            _encode.encode(labels),
            _doubles_format(nstatic + len(values)),
        )

    def _static(self, op: EntityOp) -> tuple[Any, ...]:
        """What the script needs of one entity op besides its key, slot values and distinct
        values: the static numbers (slot ops, groups with their ranges, distinct windows) as
        little-endian doubles, the TTL as a string, the sorted-set key prefixes and the label
        targets. Remembered by the identity of the op's ``groups`` list: the engine hands out
        the same lists for every transaction in the same buckets, builds new ones (``los``
        included) for other buckets and never mutates lists it handed out
        (``Plan.entity_ops``). A hit is checked against the identity of the other lists and
        of the first distinct window list, and the entry holds them, so their ids cannot be
        reused by other objects while it is remembered."""
        _, ttl, slot_ops, _, groups, distincts, label_groups = op
        flat: list[Any] = [0, len(slot_ops), *slot_ops, len(groups)]
        fraud_at: dict[int, int] = {}  # gid -> place of the fraud slot in its records
        labelled = {gid for gid, _ in label_groups}
        for gid, b, prune, ranges in groups:
            read = {s for _, _, want in ranges for s in want}
            kept = sorted(read | {_FRAUD_SLOT} if gid in labelled else read)
            place = {s: j for j, s in enumerate(kept, 1)}
            flat += (gid, b, prune, len(kept), *kept, len(ranges))
            for lo, hi, want in ranges:
                flat += (lo, hi, len(want))
                for s in want:
                    flat += (place[s], slot_ops[s])
            if _FRAUD_SLOT in place:
                fraud_at[gid] = place[_FRAUD_SLOT]
        flat.append(len(distincts))
        for did, _value, prune_t, los in distincts:
            flat += (did, prune_t, len(los), *los)
        flat[0] = len(flat)
        entry = (
            struct.pack(f"<{len(flat)}d", *flat),
            slot_ops,
            label_groups,
            ttl,
            len(distincts),
            distincts[0][3] if distincts else None,
            len(flat),
            str(ttl),  # a Lua number would be formatted with %.17g by every redis.call
            tuple(f"{self.prefix}d{d[0]}:" for d in distincts),
            tuple(x for gid, b in label_groups for x in (gid, b, fraud_at[gid])),
            groups,
        )
        if len(self._statics) >= 1024:  # a few per entity and bucket: bounded, rarely full
            self._statics.clear()
        self._statics[id(groups)] = entry
        return entry

    def execute_many(self, items: list[TxOps]) -> list[tuple[bool, list[float]]]:
        """One pipelined round trip of one EVALSHA per transaction (not MULTI: each script is
        atomic on its own and Redis runs them in order, which is all ``execute`` promises).
        Scripts missing on the server (restart, ``SCRIPT FLUSH``) are loaded and the refused
        items sent again, in their order."""
        if not items:
            return []
        command = self._command
        commands = [command(*item) for item in items]
        try:
            replies = self._pipeline(commands)
            missing = [
                i for i, r in enumerate(replies) if isinstance(r, redis.exceptions.NoScriptError)
            ]
            if missing:
                self.client.execute_command("SCRIPT", "LOAD", UPDATE_LUA)
                for i, r in zip(
                    missing, self._pipeline([commands[i] for i in missing]), strict=True
                ):
                    replies[i] = r
        except redis.RedisError as e:
            raise DependencyError(f"feature store (redis) failed: {e}") from e
        return _results(replies)

    def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send the commands in one write and read every reply (an error reply is returned in
        its place, like ``pipeline(transaction=False).execute(raise_on_error=False)``). This is
        that pipeline without its per-command Python work (argument checks before packing,
        reply callbacks): the commands are packed by hiredis in C. A dropped connection is
        retried by the connection's own retry policy, as redis-py does for pipelines (safe:
        a transaction already applied replays its first result)."""
        pool: Any = self.client.connection_pool
        try:
            conn = pool.get_connection()
        except TypeError:  # redis-py < 5.3 wants a command name
            conn = pool.get_connection("EVALSHA")
        try:
            return conn.retry.call_with_retry(  # type: ignore[no-any-return]
                lambda: self._roundtrip(conn, commands), lambda _error: conn.disconnect()
            )
        finally:
            pool.release(conn)

    @staticmethod
    def _roundtrip(conn: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        conn.send_packed_command([b"".join([pack_command(c) for c in commands])])
        replies: list[Any] = []
        read = conn.read_response
        for _ in commands:
            try:
                replies.append(read())
            except redis.exceptions.ResponseError as e:  # this command failed, not the call
                replies.append(e)
        return replies

    def apply_label(self, tx_id: str, is_fraud: bool) -> bool:
        key = self.tx_key(tx_id)
        try:
            raw = self.client.hget(key, "l")
            if raw is None:
                return False
            targets: list[Any] = _decode.decode(raw)
            keys = [key] + [t[0] for t in targets]
            res = self._label(keys=keys, args=[1 if is_fraud else 0])
        except redis.RedisError as e:
            raise DependencyError(f"feature store (redis) failed: {e}") from e
        return int(res) >= 0

    def entity_state(
        self, key: str
    ) -> tuple[dict[int, dict[float, list[float]]], dict[int, dict[Any, float]]]:
        """One entity's state as ``({gid: {bucket: [kept slots]}}, {did: {value: last seen
        µs}})`` (a group keeps the slots its windows read, in slot order), distinct sets read
        from their sorted sets where they moved there; empty if the entity is unknown or of
        another layout. For tests and debugging."""
        groups: dict[int, dict[float, list[float]]] = {}
        sets: dict[int, dict[Any, float]] = {}
        for did, m in self._distincts(key, groups).items():
            if isinstance(m, dict):
                sets[did] = m
            else:  # moved to its sorted set
                zset = self.client.zrange(f"{self.prefix}d{did}:{key}", 0, -1, withscores=True)
                sets[did] = {v.decode(): score for v, score in zset}
        return groups, sets

    def memory_usage(self, key: str) -> int:
        """``MEMORY USAGE`` of one entity's state, in bytes (0 if absent): its key plus the
        sorted sets its distinct sets moved to."""
        usage = int(self.client.memory_usage(self.entity_key(key)) or 0)
        for did, m in self._distincts(key, {}).items():
            if not isinstance(m, dict):
                usage += int(self.client.memory_usage(f"{self.prefix}d{did}:{key}") or 0)
        return usage

    def _distincts(self, key: str, groups: dict[int, dict[float, list[float]]]) -> dict[int, Any]:
        """The entity's distinct sets ``{did: {value: last} or sorted-set floor}``; its groups
        are put in ``groups``. Lua packs a table with keys 1..n as an array."""
        raw = self.client.get(self.entity_key(key))
        st = _decode.decode(raw) if raw else None
        if not isinstance(st, list) or st[0] != LAYOUT:
            return {}
        for gid, flat in _as_dict(st[1]).items():  # [record size, bucket, slot..., bucket, ...]
            rs = int(flat[0]) if flat else 1
            groups[gid] = {flat[i]: flat[i + 1 : i + rs] for i in range(1, len(flat), rs)}
        return {
            did: _as_dict(m) if isinstance(m, list | dict) else m
            for did, m in _as_dict(st[2]).items()
        }

    # ------------------------------------------------------------------ on the event loop

    async def execute_many_async(self, items: list[TxOps]) -> list[tuple[bool, list[float]]]:
        """``execute_many`` awaited on the running event loop, no worker thread: the same
        commands over this loop's :class:`~.redis_link.RedisLink` (see that module for its
        failure behaviour), the same results. Scripts missing on the server are loaded and the
        refused items sent again, in their order, in one more round trip (``SCRIPT LOAD``
        pipelined before them). Where the client is not plain TCP (unix socket, TLS,
        Sentinel), ``execute_many`` runs in a thread instead: correct, not faster."""
        if not items:
            return []
        if self._endpoint is None:
            return await asyncio.to_thread(self.execute_many, items)
        loop = asyncio.get_running_loop()
        link = self._links.get(id(loop))
        if link is None or link.loop is not loop:
            link = self._new_link(loop)
        command = self._command
        commands = [command(*item) for item in items]
        replies = await link.roundtrip(commands)
        missing = [
            i
            for i, r in enumerate(replies)
            if isinstance(r, ReplyError) and str(r).startswith("NOSCRIPT")
        ]
        if missing:
            again = await link.roundtrip(
                [("SCRIPT", "LOAD", UPDATE_LUA), *(commands[i] for i in missing)]
            )
            for i, r in zip(missing, again[1:], strict=True):
                replies[i] = r
        return _results(replies)

    def _new_link(self, loop: asyncio.AbstractEventLoop) -> RedisLink:
        """This loop's link; links of loops that ended (closed or collected) are closed here."""
        assert self._endpoint is not None
        with self._links_lock:
            if self._links_closed:
                raise DependencyError("feature store (redis) failed: store closed")
            for key, old in list(self._links.items()):
                was = old.loop
                if was is None or was.is_closed():
                    old.close()  # its loop is gone: just its socket, if one is open
                    del self._links[key]
            link = self._links[id(loop)] = RedisLink(loop, self._endpoint)
        return link

    def links(self) -> list[RedisLink]:
        """The event-loop links (for tests and debugging); one per loop that has called
        ``execute_many_async``, until that loop ends and another one calls it."""
        return list(self._links.values())

    def close_links(self) -> None:
        """Close every event-loop link, from any thread, whatever the state of its loop (running
        here or in another thread, stopped, closed); later async calls raise DependencyError.
        The redis-py client is left open (for a store that shares a client it does not own)."""
        with self._links_lock:
            self._links_closed = True
            links = list(self._links.values())
            self._links.clear()
        for link in links:
            link.close()

    def close(self) -> None:
        self.close_links()
        self.client.close()
