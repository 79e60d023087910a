"""``KeyStore`` adapters: SQLite (embedded default) and PostgreSQL.

Both open a short-lived connection per operation: key management is rare and the request path
never reaches the store (``gate.KeyCache`` reloads it every few seconds), so a pool would only
add a failure mode. Timestamps are stored as aware UTC (ISO text in SQLite, ``timestamptz`` in
PostgreSQL).
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from txguard.domain.clock import Clock
from txguard.domain.errors import (
    DependencyError,
    FieldError,
    NotFoundError,
    ValidationError,
)
from txguard.security.keys import (
    KeyRecord,
    SecretBox,
    StoredKey,
    hash_key,
    key_id_of,
    new_plaintext_key,
    new_signing_secret,
    parse_roles,
    roles_text,
)
from txguard.security.roles import Role
from txguard.settings import Settings

_COLUMNS = (
    "key_id, name, roles, key_hash, signing_secret_enc, require_signature, "
    "created_at, expires_at, revoked_at"
)


class _SqlKeyStore(ABC):
    """The SQL shared by both adapters; subclasses supply connections and the placeholder."""

    _ph = "?"
    _ddl = ""

    def __init__(self, *, clock: Clock, box: SecretBox) -> None:
        self._clock = clock
        self._box = box

    # -- subclass hooks -------------------------------------------------------------------
    @abstractmethod
    def _connect(self) -> AbstractContextManager[Any]:
        """A connection whose context commits on success (each adapter supplies its own)."""

    def _ts_in(self, value: datetime | None) -> Any:
        return value

    def _ts_out(self, value: Any) -> datetime | None:
        return value  # type: ignore[no-any-return]

    # -- the port -------------------------------------------------------------------------
    def create_key(
        self,
        *,
        name: str,
        roles: frozenset[Role] | set[Role] | list[Role],
        expires_at: datetime | None = None,
        require_signature: bool = False,
    ) -> tuple[str, str | None, KeyRecord]:
        role_set = parse_roles([str(r) for r in roles])
        name = name.strip()
        if not name or len(name) > 200:
            raise ValidationError([FieldError("name", "must be 1..200 characters")])
        now = self._clock.now()
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise ValidationError([FieldError("expires_at", "must be timezone-aware")])
            if expires_at <= now:
                raise ValidationError([FieldError("expires_at", "must be in the future")])
            expires_at = expires_at.astimezone(UTC)
        plaintext = new_plaintext_key()
        key_id = key_id_of(plaintext)
        assert key_id is not None
        secret: str | None = None
        sealed: str | None = None
        if require_signature or Role.ADMIN in role_set:
            secret = new_signing_secret()
            sealed = self._box.seal(secret, key_id=key_id)
        p = self._ph
        with self._connect() as conn:
            conn.execute(
                f"insert into api_keys ({_COLUMNS}) values ({', '.join([p] * 9)})",
                (
                    key_id,
                    name,
                    roles_text(role_set),
                    hash_key(plaintext),
                    sealed,
                    bool(require_signature),
                    self._ts_in(now),
                    self._ts_in(expires_at),
                    None,
                ),
            )
        record = KeyRecord(
            key_id=key_id,
            name=name,
            roles=role_set,
            created_at=now,
            expires_at=expires_at,
            require_signature=bool(require_signature),
            can_sign=secret is not None,
        )
        return plaintext, secret, record

    def list_keys(self) -> list[KeyRecord]:
        return [s.record for s in self._select("")]

    def load_keys(self) -> list[StoredKey]:
        return self._select("where revoked_at is null")

    def revoke_key(self, key_id: str) -> KeyRecord:
        p = self._ph
        with self._connect() as conn:
            conn.execute(
                f"update api_keys set revoked_at = {p} where key_id = {p} and revoked_at is null",
                (self._ts_in(self._clock.now()), key_id),
            )
        found = self._select(f"where key_id = {p}", (key_id,))
        if not found:
            raise NotFoundError(f"no API key with id {key_id!r}")
        return found[0].record

    def _select(self, where: str, params: Sequence[Any] = ()) -> list[StoredKey]:
        with self._connect() as conn:
            rows = conn.execute(
                f"select {_COLUMNS} from api_keys {where} order by created_at, key_id", params
            ).fetchall()
        out = []
        for kid, name, roles, khash, sealed, req, created, expires, revoked in rows:
            created_at = self._ts_out(created)
            assert created_at is not None
            rec = KeyRecord(
                key_id=kid,
                name=name,
                roles=parse_roles(roles),
                created_at=created_at,
                expires_at=self._ts_out(expires),
                revoked_at=self._ts_out(revoked),
                require_signature=bool(req),
                can_sign=sealed is not None,
            )
            out.append(StoredKey(record=rec, key_hash=khash, signing_secret_enc=sealed))
        return out


class SqliteKeyStore(_SqlKeyStore):
    _ph = "?"

    def __init__(self, path: Path | str, *, clock: Clock, box: SecretBox) -> None:
        super().__init__(clock=clock, box=box)
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("pragma journal_mode=wal")
            conn.execute(
                "create table if not exists api_keys (key_id text primary key, name text not null,"
                " roles text not null, key_hash text not null unique, signing_secret_enc text,"
                " require_signature integer not null, created_at text not null,"
                " expires_at text, revoked_at text)"
            )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            with closing(sqlite3.connect(self._path, timeout=5.0)) as conn, conn:
                yield conn
        except sqlite3.Error as e:
            raise DependencyError(f"key store (sqlite {self._path}): {e}") from e

    def _ts_in(self, value: datetime | None) -> Any:
        return None if value is None else value.astimezone(UTC).isoformat()

    def _ts_out(self, value: Any) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)


class PostgresKeyStore(_SqlKeyStore):
    _ph = "%s"

    def __init__(self, url: str, *, clock: Clock, box: SecretBox, timeout: float = 2.0) -> None:
        super().__init__(clock=clock, box=box)
        self._url = url
        self._timeout = timeout
        with self._connect() as conn:
            conn.execute(
                "create table if not exists api_keys (key_id text primary key, name text not null,"
                " roles text not null, key_hash text not null unique, signing_secret_enc text,"
                " require_signature boolean not null, created_at timestamptz not null,"
                " expires_at timestamptz, revoked_at timestamptz)"
            )

    @contextmanager
    def _connect(self) -> Iterator[Any]:
        import psycopg

        try:
            with psycopg.connect(self._url, connect_timeout=max(1, round(self._timeout))) as conn:
                yield conn
        except psycopg.Error as e:
            raise DependencyError(f"key store (postgres): {type(e).__name__}: {e}") from e

    def _ts_out(self, value: Any) -> datetime | None:
        return None if value is None else value.astimezone(UTC)


def open_key_store(settings: Settings, *, clock: Clock) -> SqliteKeyStore | PostgresKeyStore:
    """PostgreSQL when ``database_url`` is set, else SQLite at ``settings.sqlite_path``."""
    box = SecretBox(settings.key_encryption_key.get_secret_value())
    if settings.database_url:
        return PostgresKeyStore(
            settings.database_url, clock=clock, box=box, timeout=settings.database_timeout
        )
    return SqliteKeyStore(settings.sqlite_path, clock=clock, box=box)
