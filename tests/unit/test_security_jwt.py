"""JWT bearer tokens: signature, issuer, audience, expiry (against the injected clock), roles."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from txguard.domain.clock import FixedClock
from txguard.domain.errors import AuthenticationError, ConfigurationError
from txguard.security.jwt import JwtVerifier
from txguard.security.roles import Role
from txguard.settings import Settings

SECRET = "x" * 40
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _claims(**over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "sub": "alice",
        "iss": "https://idp.example",
        "aud": "txguard-api",
        "exp": int(T0.timestamp()) + 300,
        "roles": ["analyst", "auditor", "wizard"],
    }
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def _hs(clock: FixedClock) -> JwtVerifier:
    return JwtVerifier(
        algorithm="HS256",
        key=SECRET,
        issuer="https://idp.example",
        audience="txguard-api",
        clock=clock,
    )


def test_valid_token_gives_identity_with_known_roles() -> None:
    ident = _hs(FixedClock(T0)).verify(jwt.encode(_claims(), SECRET, algorithm="HS256"))
    assert ident.subject == "jwt:alice"
    assert ident.method == "jwt"
    assert ident.roles == {Role.ANALYST, Role.AUDITOR}
    assert ident.expires_at == datetime.fromtimestamp(T0.timestamp() + 300, UTC)


def test_roles_claim_as_string() -> None:
    token = jwt.encode(_claims(roles="scorer admin"), SECRET, algorithm="HS256")
    assert _hs(FixedClock(T0)).verify(token).roles == {Role.SCORER, Role.ADMIN}


def test_expired_token_is_refused_by_injected_clock() -> None:
    clock = FixedClock(T0)
    v = _hs(clock)
    token = jwt.encode(_claims(), SECRET, algorithm="HS256")
    v.verify(token)
    clock.advance(seconds=300)
    with pytest.raises(AuthenticationError, match="expired"):
        v.verify(token)


@pytest.mark.parametrize(
    ("claims", "key", "message"),
    [
        (_claims(aud="other-api"), SECRET, "audience"),
        (_claims(iss="https://evil.example"), SECRET, "issuer"),
        (_claims(exp=None), SECRET, "exp"),
        (_claims(aud=None), SECRET, "aud"),
        (_claims(sub=None), SECRET, "sub"),
        (_claims(), "y" * 40, "Signature verification failed"),
        (_claims(nbf=int(T0.timestamp()) + 60), SECRET, "not valid yet"),
    ],
)
def test_bad_tokens_are_refused(claims: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(AuthenticationError, match=message):
        _hs(FixedClock(T0)).verify(jwt.encode(claims, key, algorithm="HS256"))


def test_alg_none_and_garbage_are_refused() -> None:
    v = _hs(FixedClock(T0))
    unsigned = jwt.encode(_claims(), None, algorithm="none")  # type: ignore[arg-type]
    for token in (unsigned, "not.a.token", ""):
        with pytest.raises(AuthenticationError):
            v.verify(token)


def test_rs256_and_algorithm_confusion() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = Settings(
        jwt_algorithm="RS256", jwt_public_key=public_pem, jwt_issuer="https://idp.example"
    )
    v = JwtVerifier.from_settings(settings, clock=FixedClock(T0))
    assert v is not None
    assert v.verify(jwt.encode(_claims(), private, algorithm="RS256")).subject == "jwt:alice"
    # an HS256 token "signed" with the public key must not pass an RS256 verifier
    forged = jwt.encode(_claims(), SECRET, algorithm="HS256")
    with pytest.raises(AuthenticationError):
        v.verify(forged)


def test_settings_refuse_weak_or_missing_jwt_keys() -> None:
    with pytest.raises(ConfigurationError, match="at least 32"):
        Settings(jwt_algorithm="HS256", jwt_secret="short")
    with pytest.raises(ConfigurationError, match="JWT_PUBLIC_KEY"):
        Settings(jwt_algorithm="RS256")
    with pytest.raises(ConfigurationError, match="PEM"):
        JwtVerifier.from_settings(
            Settings(jwt_algorithm="RS256", jwt_public_key="nope"), clock=FixedClock(T0)
        )
    assert JwtVerifier.from_settings(Settings(), clock=FixedClock(T0)) is None
