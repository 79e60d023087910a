"""RedisStore: shared feature state for several API replicas, one atomic round trip per transaction.

Key layout (``prefix`` defaults to ``txg:``)::

    {prefix}e:{entity}:{key}   string, MessagePack [groups, distincts, 2] PX = entity span + 1 h
                               groups    [[bucket, slot, ..., bucket, slot, ...], ...] one flat
                                         array per group, records sorted by bucket id; buckets
                                         outside every window pruned on update
                               distincts {did: {value: last_seen_us}}     values pruned likewise
    {prefix}tx:{transaction_id} hash r = result (MessagePack), l = label targets, f = fraud 0/1
                               PX = label horizon (longest fraud window + delay, >= 1 day)

``execute`` is one EVALSHA of :data:`UPDATE_LUA`: if the transaction record exists it returns the
stored result (idempotent: same id, same numbers, nothing counted twice); otherwise it reads each
entity's state, aggregates the requested windows, applies the update, prunes, stores the result
with the record and returns it. Redis runs a script atomically, so replicas updating the same
entity at once serialise on the server. The Lua mirrors ``stores/memory.py`` operation for
operation (doubles, same order), which is why both stores return bit-identical numbers.

Every key a script touches is passed in KEYS, but one transaction's keys belong to different
entities: on Redis Cluster they would hash to different slots (see ADR 0002).
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import redis
from hiredis import pack_command  # the C RESP packer (a dependency: redis[hiredis])

from txguard.domain.errors import DependencyError
from txguard.features.ports import EntityOp, TxOps

UPDATE_LUA = r"""
local LAYOUT = 2  -- state layout version: state of another layout is discarded
local rec = redis.call('HGET', KEYS[1], 'r')
if rec then return {0, rec} end
local p = cmsgpack.unpack(ARGV[1])
local t, txttl, ents = p[1], p[2], p[3]
local out, labels, huge = {}, {}, math.huge
for i = 1, #ents do
  local e, key = ents[i], KEYS[i + 1]
  local ttl, ops, vals, groups, dists, lgroups = e[2], e[3], e[4], e[5], e[6], e[7]
  local raw = redis.call('GET', key)
  local st
  if raw then st = cmsgpack.unpack(raw) end
  if not st or st[3] ~= LAYOUT then st = {{}, {}, LAYOUT} end
  local G, D = st[1], st[2]
  local ns = #ops
  local rs = ns + 1
  for gi = 1, #groups do
    local g = groups[gi]
    local gid, b, prune, ranges = g[1], g[2], g[3], g[4]
    local bk = G[gid]
    if not bk then bk = {}; G[gid] = bk end
    local total = #bk
    local nrec = total / rs
    for ri = 1, #ranges do
      local lo, hi, want = ranges[ri][1], ranges[ri][2], ranges[ri][3]
      local nw, ws, wo, acc = #want, {}, {}, {}
      for j = 1, nw do
        local s = want[j] + 1
        local o = ops[s]
        ws[j], wo[j] = s, o
        if o == 1 then acc[j] = 0 elseif o == 2 then acc[j] = huge else acc[j] = -huge end
      end
      for base = 1, total, rs do
        local id = bk[base]
        if id > hi then break end
        if id >= lo then
          for j = 1, nw do
            local x, o = bk[base + ws[j]], wo[j]
            if o == 1 then acc[j] = acc[j] + x
            elseif o == 2 then if x < acc[j] then acc[j] = x end
            elseif x > acc[j] then acc[j] = x end
          end
        end
      end
      for j = 1, nw do out[#out + 1] = acc[j] end
    end
    local found, pos = nil, nrec
    for r = nrec - 1, 0, -1 do
      local id = bk[r * rs + 1]
      if id == b then found = r; break end
      if id < b then pos = r + 1; break end
      pos = r
    end
    if found then
      local base = found * rs + 1
      for s = 1, ns do
        local o, x, y = ops[s], vals[s], bk[base + s]
        if o == 1 then bk[base + s] = y + x
        elseif o == 2 then if x < y then bk[base + s] = x end
        elseif x > y then bk[base + s] = x end
      end
    else
      for i = total, pos * rs + 1, -1 do bk[i + rs] = bk[i] end
      local base = pos * rs + 1
      bk[base] = b
      for s = 1, ns do bk[base + s] = vals[s] end
      total = total + rs
    end
    local cut = 0
    while cut < total and bk[cut + 1] < prune do cut = cut + rs end
    if cut > 0 then
      for i = cut + 1, total do bk[i - cut] = bk[i] end
      for i = total - cut + 1, total do bk[i] = nil end
    end
  end
  for di = 1, #dists do
    local d = dists[di]
    local did, value, prune_t, los = d[1], d[2], d[3], d[4]
    local m = D[did]
    if not m then m = {}; D[did] = m end
    local last = nil
    if value ~= '' then last = m[value] end
    for li = 1, #los do
      local lo_t, c = los[li], 0
      for _, v in pairs(m) do if v >= lo_t then c = c + 1 end end
      out[#out + 1] = c
      if last and last >= lo_t then out[#out + 1] = 1 else out[#out + 1] = 0 end
    end
    if value ~= '' and (not last or t > last) then m[value] = t end
    for k, v in pairs(m) do if v < prune_t then m[k] = nil end end
  end
  redis.call('SET', key, cmsgpack.pack(st), 'PX', ttl)
  if #lgroups > 0 then labels[#labels + 1] = {key, lgroups, rs} end
end
local packed = cmsgpack.pack(out)
redis.call('HSET', KEYS[1], 'r', packed, 'l', cmsgpack.pack(labels), 'f', 0)
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
  local raw = redis.call('GET', key)
  local st = raw and cmsgpack.unpack(raw)
  local rs = lab[i][3]  -- nil for a record written by layout 1: its buckets are gone anyway
  if rs and st and st[3] == 2 then
    local G = st[1]
    for _, gb in ipairs(lab[i][2]) do
      local bk = G[gb[1]]
      if bk then
        for base = 1, #bk, rs do
          if bk[base] == gb[2] then bk[base + 4] = bk[base + 4] + delta; break end
        end
      end
    end
    redis.call('SET', key, cmsgpack.pack(st), 'KEEPTTL')
  end
end
redis.call('HSET', KEYS[1], 'f', want)
return 1
"""

_decode = msgspec.msgpack.Decoder()
_encode = msgspec.msgpack.Encoder()


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
        """The EVALSHA of one transaction: its record key, its entities' keys, the packed ops."""
        ep = self._entity_prefix
        keys = [self._tx_prefix + tx_id]
        keys += [ep + op[0] for op in ops]
        payload = _encode.encode([t_us, tx_ttl_ms, ops])
        return ("EVALSHA", self._update_sha, len(keys), *keys, payload)

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
        out: list[tuple[bool, list[float]]] = []
        decode = _decode.decode
        for r in replies:
            if isinstance(r, Exception):
                raise DependencyError(f"feature store (redis) failed: {r}")
            first, packed = r
            out.append((bool(first), decode(packed)))
        return out

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

    def memory_usage(self, key: str) -> int:
        """``MEMORY USAGE`` of one entity's state, in bytes (0 if absent)."""
        return int(self.client.memory_usage(self.entity_key(key)) or 0)

    def close(self) -> None:
        self.client.close()
