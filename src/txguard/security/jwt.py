"""JWT bearer tokens, the alternative to API keys for callers with their own identity provider.

One algorithm from configuration (HS256 with a shared secret, or RS256 with the provider's
public key) — the token's own ``alg`` header is never trusted, which closes the classic
``alg: none`` / HS-with-public-key confusions. ``iss``, ``aud`` and ``exp`` are required and
checked; ``exp``/``nbf`` against the injected clock, not the machine's. Roles come from a claim
(a list, or a space/comma separated string); unknown role names are ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt as pyjwt

from txguard.domain.clock import Clock
from txguard.domain.errors import AuthenticationError, ConfigurationError
from txguard.security.roles import Identity, Role
from txguard.settings import Settings


class JwtVerifier:
    def __init__(
        self,
        *,
        algorithm: str,
        key: str,
        issuer: str,
        audience: str,
        roles_claim: str = "roles",
        leeway: float = 0.0,
        clock: Clock,
    ) -> None:
        if algorithm not in ("HS256", "RS256"):
            raise ConfigurationError(f"unsupported JWT algorithm {algorithm!r}")
        self._alg = algorithm
        self._key: Any = key
        if algorithm == "RS256":
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            try:
                self._key = load_pem_public_key(key.encode())
            except ValueError as e:
                raise ConfigurationError(f"TXGUARD_JWT_PUBLIC_KEY is not a PEM key: {e}") from e
        self._issuer = issuer
        self._audience = audience
        self._roles_claim = roles_claim
        self._leeway = leeway
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock) -> JwtVerifier | None:
        if settings.jwt_algorithm is None:
            return None
        if settings.jwt_algorithm == "HS256":
            assert settings.jwt_secret is not None  # Settings refuses otherwise
            key = settings.jwt_secret.get_secret_value()
        else:
            assert settings.jwt_public_key is not None
            key = settings.jwt_public_key
        return cls(
            algorithm=settings.jwt_algorithm,
            key=key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            roles_claim=settings.jwt_roles_claim,
            leeway=settings.jwt_leeway_seconds,
            clock=clock,
        )

    def verify(self, token: str) -> Identity:
        try:
            claims = pyjwt.decode(
                token,
                self._key,
                algorithms=[self._alg],
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require": ["exp", "iss", "aud", "sub"],
                    "verify_exp": False,  # checked below against the injected clock
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except pyjwt.InvalidAudienceError:
            raise AuthenticationError("token audience is not accepted") from None
        except pyjwt.InvalidIssuerError:
            raise AuthenticationError("token issuer is not accepted") from None
        except pyjwt.PyJWTError as e:
            raise AuthenticationError(f"invalid token: {e}") from None
        now = self._clock.now().timestamp()
        exp = _number(claims, "exp")
        if now >= exp + self._leeway:
            raise AuthenticationError("token has expired")
        if "nbf" in claims and now + self._leeway < _number(claims, "nbf"):
            raise AuthenticationError("token is not valid yet")
        return Identity(
            subject=f"jwt:{claims['sub']}",
            roles=_roles(claims.get(self._roles_claim)),
            method="jwt",
            expires_at=datetime.fromtimestamp(exp, UTC),
        )


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthenticationError(f"invalid token: claim {name!r} must be a number")
    return float(value)


def _roles(value: object) -> frozenset[Role]:
    if isinstance(value, str):
        items: list[Any] = value.replace(",", " ").split()
    elif isinstance(value, list):
        items = value
    else:
        return frozenset()
    known = {r.value for r in Role}
    return frozenset(Role(v) for v in items if isinstance(v, str) and v in known)
