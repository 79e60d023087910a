"""One suite over both KeyStore adapters: SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from txguard.domain.clock import FixedClock
from txguard.domain.errors import NotFoundError, ValidationError
from txguard.security.keys import KeyStore, SecretBox, hash_key, key_id_of
from txguard.security.keystore import PostgresKeyStore, SqliteKeyStore
from txguard.security.roles import Role

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[KeyStore, FixedClock]]:
    clock = FixedClock(T0)
    box = SecretBox("test-master")
    if request.param == "sqlite":
        yield SqliteKeyStore(tmp_path / "keys.sqlite3", clock=clock, box=box), clock
    else:
        pg_url = request.getfixturevalue("pg_url")
        yield PostgresKeyStore(pg_url, clock=clock, box=box), clock


def test_create_returns_plaintext_once_and_stores_only_hash(
    env: tuple[KeyStore, FixedClock],
) -> None:
    store, _ = env
    plain, secret, rec = store.create_key(name="payments", roles=[Role.SCORER])
    assert secret is None
    assert key_id_of(plain) == rec.key_id
    assert rec.roles == {Role.SCORER}
    assert rec.created_at == T0
    assert not rec.can_sign
    [row] = store.load_keys()
    assert row.key_hash == hash_key(plain)
    assert plain not in repr(row)
    assert row.signing_secret_enc is None
    assert store.list_keys() == [rec]


def test_signing_secret_issued_for_admin_or_required_and_stored_encrypted(
    env: tuple[KeyStore, FixedClock],
) -> None:
    store, _ = env
    _, s_admin, r_admin = store.create_key(name="ops", roles=[Role.ADMIN])
    _, s_req, r_req = store.create_key(name="p", roles=[Role.SCORER], require_signature=True)
    assert s_admin and s_req and s_admin != s_req
    assert r_admin.can_sign and r_req.can_sign and r_req.require_signature
    rows = {r.record.key_id: r for r in store.load_keys()}
    box = SecretBox("test-master")
    for rec, secret in ((r_admin, s_admin), (r_req, s_req)):
        sealed = rows[rec.key_id].signing_secret_enc
        assert sealed is not None and secret not in sealed
        assert box.open(sealed, key_id=rec.key_id) == secret


def test_revoke_is_idempotent_and_hides_key_from_load(env: tuple[KeyStore, FixedClock]) -> None:
    store, clock = env
    _, _, a = store.create_key(name="a", roles=[Role.ANALYST])
    _, _, b = store.create_key(name="b", roles=[Role.AUDITOR])
    clock.advance(seconds=10)
    revoked = store.revoke_key(a.key_id)
    assert revoked.revoked_at == T0 + timedelta(seconds=10)
    clock.advance(seconds=10)
    assert store.revoke_key(a.key_id).revoked_at == revoked.revoked_at
    assert [r.record.key_id for r in store.load_keys()] == [b.key_id]
    assert {r.key_id for r in store.list_keys()} == {a.key_id, b.key_id}
    with pytest.raises(NotFoundError, match="txg_nothere"):
        store.revoke_key("txg_nothere")


def test_expiry_round_trips_as_aware_utc(env: tuple[KeyStore, FixedClock]) -> None:
    store, _ = env
    at = T0 + timedelta(days=30)
    store.create_key(name="tmp", roles=[Role.SCORER], expires_at=at)
    [listed] = store.list_keys()
    assert listed.expires_at == at
    assert listed.expires_at.tzinfo is not None
    assert listed.active_at(at - timedelta(seconds=1))
    assert not listed.active_at(at)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "", "roles": [Role.SCORER]}, "name"),
        ({"name": "x", "roles": []}, "roles"),
        ({"name": "x", "roles": [Role.SCORER], "expires_at": T0}, "expires_at"),
        ({"name": "x", "roles": [Role.SCORER], "expires_at": datetime(2030, 1, 1)}, "expires_at"),
    ],
)
def test_bad_input_names_the_field(
    env: tuple[KeyStore, FixedClock], kwargs: dict[str, object], field: str
) -> None:
    store, _ = env
    with pytest.raises(ValidationError, match=field):
        store.create_key(**kwargs)  # type: ignore[arg-type]
    assert store.list_keys() == []
