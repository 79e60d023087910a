"""Replay protection for signed requests: each signature is accepted once while its timestamp
could still pass the skew check. In-process by default; Redis (``SET NX EX``, one round trip)
when configured, so a request captured from one worker cannot be replayed against another."""

from __future__ import annotations

import heapq
import math
import threading
from typing import Any, Protocol

from txguard.domain.clock import Clock
from txguard.domain.errors import DependencyError


class ReplayCache(Protocol):
    def first_use(self, token: str, *, ttl: float) -> bool:
        """Record ``token``; True the first time within ``ttl`` seconds, False on a replay."""
        ...


class MemoryReplayCache:
    """Bounded by time: entries expire after ``ttl``; expired ones are dropped on each call."""

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def first_use(self, token: str, *, ttl: float) -> bool:
        now = self._clock.monotonic()
        with self._lock:
            while self._expiry and self._expiry[0][0] <= now:
                at, old = heapq.heappop(self._expiry)
                if self._seen.get(old) == at:
                    del self._seen[old]
            if token in self._seen:
                return False
            self._seen[token] = now + ttl
            heapq.heappush(self._expiry, (now + ttl, token))
            return True

    def __len__(self) -> int:
        return len(self._seen)


class RedisReplayCache:
    def __init__(self, client: Any, *, prefix: str = "txguard:") -> None:
        self._client = client
        self._prefix = prefix + "replay:"

    def first_use(self, token: str, *, ttl: float) -> bool:
        import redis

        try:
            created = self._client.set(self._prefix + token, b"1", nx=True, ex=math.ceil(ttl))
        except redis.RedisError as e:
            # fail closed: without the cache a captured admin request could be replayed
            raise DependencyError(f"replay cache (redis): {e}") from e
        return bool(created)
