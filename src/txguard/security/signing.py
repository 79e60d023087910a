"""Request signatures: HMAC-SHA256 over method, path, timestamp and the body's SHA-256.

The string signed (UTF-8), one field per line::

    POST
    /v1/models/promote?stage=production
    1795430400
    <hex SHA-256 of the raw body bytes>

sent as ``X-Txguard-Timestamp: 1795430400`` (Unix seconds) and ``X-Txguard-Signature: <hex
HMAC-SHA256 under the key's signing secret>``. The timestamp must be within ``max_skew``
seconds of the server's clock, and each signature is accepted once (``replay.ReplayCache``
remembers it for the whole window it could still be valid in).

>>> sig = sign_request("s3cret", method="post", path="/v1/x", timestamp=1700000000, body=b"{}")
>>> verify_signature("s3cret", method="POST", path="/v1/x", timestamp_header="1700000000",
...                  signature_header=sig, body=b"{}", now=1700000050.0, max_skew=120)
"""

from __future__ import annotations

import hashlib
import hmac

from txguard.domain.errors import AuthenticationError

TIMESTAMP_HEADER = "x-txguard-timestamp"
SIGNATURE_HEADER = "x-txguard-signature"


def string_to_sign(*, method: str, path: str, timestamp: int, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return f"{method.upper()}\n{path}\n{timestamp}\n{digest}".encode()


def sign_request(secret: str, *, method: str, path: str, timestamp: int, body: bytes) -> str:
    """The hex signature a client sends in ``X-Txguard-Signature``."""
    msg = string_to_sign(method=method, path=path, timestamp=timestamp, body=body)
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str,
    *,
    method: str,
    path: str,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    now: float,
    max_skew: float,
) -> None:
    """Raises ``AuthenticationError`` unless the signature is present, fresh and right. The
    timestamp is checked first so a stale request costs no HMAC."""
    if not timestamp_header or not signature_header:
        raise AuthenticationError(
            "signed request required: send X-Txguard-Timestamp and X-Txguard-Signature"
        )
    try:
        ts = int(timestamp_header.strip())
    except ValueError:
        raise AuthenticationError("X-Txguard-Timestamp must be integer Unix seconds") from None
    if abs(now - ts) > max_skew:
        raise AuthenticationError(
            f"X-Txguard-Timestamp is outside the allowed clock skew of {max_skew:g} s"
        )
    expected = sign_request(secret, method=method, path=path, timestamp=ts, body=body)
    if not hmac.compare_digest(expected, signature_header.strip().lower()):
        raise AuthenticationError("request signature does not verify")
