"""Request signatures: HMAC-SHA256 over method, path, timestamp and the body's SHA-256.

The string signed (UTF-8), one field per line::

    POST
    /v1/models/promote?stage=production
    1795430400
    <hex SHA-256 of the raw body bytes>

sent as ``X-Txguard-Timestamp: 1795430400`` (Unix seconds) and ``X-Txguard-Signature: <hex
HMAC-SHA256 under the key's signing secret>``. The timestamp must be within ``max_skew``
seconds of the server's clock, and each signature is accepted once (``replay.ReplayCache``
remembers it for the whole window it could still be valid in). Two identical requests in the
same second would carry the same signature, so a client that needs that sends
``X-Txguard-Nonce`` (1..64 of ``[A-Za-z0-9_-]``), which is then signed as a fifth line.

>>> sig = sign_request("s3cret", method="post", path="/v1/x", timestamp=1700000000, body=b"{}")
>>> verify_signature("s3cret", method="POST", path="/v1/x", timestamp_header="1700000000",
...                  signature_header=sig, body=b"{}", now=1700000050.0, max_skew=120)
"""

from __future__ import annotations

import hashlib
import hmac
import re

from txguard.domain.errors import AuthenticationError

TIMESTAMP_HEADER = "x-txguard-timestamp"
SIGNATURE_HEADER = "x-txguard-signature"
NONCE_HEADER = "x-txguard-nonce"
_NONCE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def string_to_sign(
    *, method: str, path: str, timestamp: int, body: bytes, nonce: str | None = None
) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    text = f"{method.upper()}\n{path}\n{timestamp}\n{digest}"
    return (text if nonce is None else f"{text}\n{nonce}").encode()


def sign_request(
    secret: str, *, method: str, path: str, timestamp: int, body: bytes, nonce: str | None = None
) -> str:
    """The hex signature a client sends in ``X-Txguard-Signature``."""
    msg = string_to_sign(method=method, path=path, timestamp=timestamp, body=body, nonce=nonce)
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
    nonce_header: str | None = None,
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
    nonce = None
    if nonce_header is not None:
        nonce = nonce_header.strip()
        if not _NONCE.fullmatch(nonce):
            raise AuthenticationError("X-Txguard-Nonce must be 1..64 of [A-Za-z0-9_-]")
    expected = sign_request(secret, method=method, path=path, timestamp=ts, body=body, nonce=nonce)
    if not hmac.compare_digest(expected, signature_header.strip().lower()):
        raise AuthenticationError("request signature does not verify")
