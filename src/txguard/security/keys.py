"""API keys: format, hashing, the encrypted signing secret, and the ``KeyStore`` port.

A key looks like ``txg_3f9a0c1b_<40 base62 chars>``. The first 12 characters (``txg_3f9a0c1b``)
are its public id: shown in ``txguard keys list``, logged, used as the identity's subject. The
plaintext is shown once at creation; the store keeps only its SHA-256 (a key carries ~238 bits
of randomness, so a plain fast hash is enough — there is nothing to brute-force, unlike a
password).

Signed requests need a secret the server can read back (HMAC verification needs the secret
itself, and the server only has the key's hash). So a key that may sign gets a separate random
*signing secret*, shown once next to the key and stored encrypted with AES-256-GCM under a key
derived from ``Settings.key_encryption_key``, with the key id as associated data (a ciphertext
copied onto another row does not decrypt).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from txguard.domain.errors import FieldError, IntegrityError, ValidationError
from txguard.security.roles import Role

KEY_MARK = "txg_"
KEY_ID_LEN = len(KEY_MARK) + 8  # "txg_" + 8 hex chars
_SECRET_LEN = 40
_ALPHABET = string.ascii_letters + string.digits
KEY_LEN = KEY_ID_LEN + 1 + _SECRET_LEN


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What may be shown about a key: never its plaintext, hash or signing secret."""

    key_id: str
    name: str
    roles: frozenset[Role]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    require_signature: bool = False
    can_sign: bool = False

    def active_at(self, now: datetime) -> bool:
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A row as the authentication cache needs it."""

    record: KeyRecord
    key_hash: str  # hex SHA-256 of the plaintext key
    signing_secret_enc: str | None  # base64(nonce || AES-GCM ciphertext)


def new_plaintext_key() -> str:
    key_id = KEY_MARK + secrets.token_hex(4)
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LEN))
    return f"{key_id}_{body}"


def key_id_of(presented: str) -> str | None:
    """The public id of a presented key, or None when it is not shaped like one of ours."""
    if len(presented) != KEY_LEN or not presented.startswith(KEY_MARK):
        return None
    if presented[KEY_ID_LEN] != "_":
        return None
    return presented[:KEY_ID_LEN]


def hash_key(presented: str) -> str:
    return hashlib.sha256(presented.encode()).hexdigest()


def new_signing_secret() -> str:
    return "txs_" + secrets.token_urlsafe(32)


def parse_roles(values: list[str] | tuple[str, ...] | str) -> frozenset[Role]:
    """Roles from CLI/config text; an unknown role is a validation error naming it."""
    items = [v for v in (values.split(",") if isinstance(values, str) else values) if v.strip()]
    out: set[Role] = set()
    for raw in items:
        try:
            out.add(Role(raw.strip().lower()))
        except ValueError:
            allowed = ", ".join(r.value for r in Role)
            raise ValidationError(
                [FieldError("roles", f"unknown role {raw!r}; expected one of {allowed}")]
            ) from None
    if not out:
        raise ValidationError([FieldError("roles", "at least one role is required")])
    return frozenset(out)


def roles_text(roles: frozenset[Role]) -> str:
    return ",".join(sorted(r.value for r in roles))


class SecretBox:
    """AES-256-GCM under a key derived from ``Settings.key_encryption_key``."""

    def __init__(self, master: str) -> None:
        if not master:
            raise ValueError("empty key encryption key")
        derived = hashlib.sha256(b"txguard/signing-secret/v1\x00" + master.encode()).digest()
        self._aead = AESGCM(derived)

    def seal(self, plaintext: str, *, key_id: str) -> str:
        nonce = os.urandom(12)
        ct = self._aead.encrypt(nonce, plaintext.encode(), key_id.encode())
        return base64.b64encode(nonce + ct).decode()

    def open(self, sealed: str, *, key_id: str) -> str:
        raw = base64.b64decode(sealed)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], key_id.encode()).decode()
        except InvalidTag:
            raise IntegrityError(
                f"signing secret of {key_id} does not decrypt (wrong TXGUARD_KEY_ENCRYPTION_KEY?)"
            ) from None


class KeyStore(Protocol):
    """Where API keys live (SQLite by default, PostgreSQL when ``database_url`` is set)."""

    def create_key(
        self,
        *,
        name: str,
        roles: frozenset[Role] | set[Role] | list[Role],
        expires_at: datetime | None = None,
        require_signature: bool = False,
    ) -> tuple[str, str | None, KeyRecord]:
        """Returns (plaintext key, signing secret or None, record); both secrets are shown once.
        A signing secret is issued when the key requires signing or holds ``admin`` (admin
        routes always need a signed request)."""
        ...

    def list_keys(self) -> list[KeyRecord]:
        """Every key, revoked and expired included, oldest first."""
        ...

    def revoke_key(self, key_id: str) -> KeyRecord:
        """Revoke now (idempotent: a revoked key keeps its first revocation time).
        ``NotFoundError`` for an unknown id."""
        ...

    def load_keys(self) -> list[StoredKey]:
        """Every non-revoked key with its hash: what the authentication cache holds."""
        ...
