"""The one way txguard opens a Redis client (feature state, rate limits, replay cache)."""

from __future__ import annotations

from typing import Any

from txguard.settings import Settings


def connect_redis(settings: Settings) -> Any:
    """A client for ``settings.redis_url`` with the service's timeouts and ONE immediate retry
    (a pooled connection gone stale), never a backoff: a dead Redis must cost the hot path one
    timeout, not redis-py's default retries with sleeps (seen: 15 s per request)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        settings.redis_url or "",
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=max(settings.redis_timeout, 0.5),
        retry=Retry(NoBackoff(), 1),
    )
