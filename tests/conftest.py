"""Shared fixtures. Real Redis and PostgreSQL on loopback: if one is unreachable the tests that
need it ERROR (never skip) — `make test` starts them first (.ci/services)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("TXGUARD_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference datasets (../shared/data). Missing data is an error, not a skip."""
    if not (SHARED_DATA / "handbook" / "transactions.parquet").exists():
        raise RuntimeError(f"reference data not found at {SHARED_DATA} (set TXGUARD_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("TXGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as e:
        raise RuntimeError(f"Redis not reachable at {url}: {e} (run `make services`)") from e
    finally:
        client.close()
    return url


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix owned by one test; its keys are deleted afterwards."""
    import redis

    prefix = f"txgtest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    dsn = os.environ.get("TXGUARD_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("select 1")
    except psycopg.Error as e:
        raise RuntimeError(f"PostgreSQL not reachable at {dsn}: {e} (run `make services`)") from e
    return dsn


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """A PostgreSQL schema owned by one test, dropped afterwards. Use it as search_path."""
    import psycopg

    schema = f"txgtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'create schema "{schema}"')
    yield schema
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'drop schema "{schema}" cascade')


@pytest.fixture
def pg_url(pg_dsn: str, pg_schema: str) -> str:
    """A database URL whose connections use the test's own schema."""
    sep = "&" if "?" in pg_dsn else "?"
    return f"{pg_dsn}{sep}options=-csearch_path%3D{pg_schema}"
