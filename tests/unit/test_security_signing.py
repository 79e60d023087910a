"""Request signatures, key format and the signing-secret box: pure functions, no I/O."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from txguard.domain.errors import AuthenticationError, IntegrityError, ValidationError
from txguard.security.keys import (
    KEY_ID_LEN,
    SecretBox,
    hash_key,
    key_id_of,
    new_plaintext_key,
    parse_roles,
)
from txguard.security.roles import Role
from txguard.security.signing import sign_request, string_to_sign, verify_signature

NOW = 1_800_000_000


def _verify(secret: str = "sec", **over: object) -> None:
    args: dict[str, object] = {
        "method": "POST",
        "path": "/v1/models/promote",
        "timestamp_header": str(NOW),
        "signature_header": sign_request(
            "sec", method="POST", path="/v1/models/promote", timestamp=NOW, body=b'{"a":1}'
        ),
        "body": b'{"a":1}',
        "now": float(NOW),
        "max_skew": 120.0,
    }
    args.update(over)
    verify_signature(secret, **args)  # type: ignore[arg-type]


def test_signature_is_hmac_sha256_over_documented_string() -> None:
    body = b'{"x": 1}'
    expected_msg = f"POST\n/p?q=1\n{NOW}\n{hashlib.sha256(body).hexdigest()}".encode()
    assert string_to_sign(method="post", path="/p?q=1", timestamp=NOW, body=body) == expected_msg
    sig = sign_request("k", method="POST", path="/p?q=1", timestamp=NOW, body=body)
    assert sig == hmac.new(b"k", expected_msg, hashlib.sha256).hexdigest()


def test_good_signature_verifies_within_skew() -> None:
    _verify()
    _verify(now=float(NOW + 120))
    _verify(now=float(NOW - 120))


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"secret": "other"}, "does not verify"),
        ({"body": b'{"a":2}'}, "does not verify"),
        ({"path": "/v1/models/rollback"}, "does not verify"),
        ({"method": "PUT"}, "does not verify"),
        ({"now": float(NOW + 121)}, "clock skew"),
        ({"now": float(NOW - 121)}, "clock skew"),
        ({"timestamp_header": None}, "signed request required"),
        ({"signature_header": ""}, "signed request required"),
        ({"timestamp_header": "yesterday"}, "integer Unix seconds"),
        ({"signature_header": "00" * 32}, "does not verify"),
    ],
)
def test_bad_or_stale_signatures_are_refused(over: dict[str, object], message: str) -> None:
    secret = str(over.pop("secret", "sec"))
    with pytest.raises(AuthenticationError, match=message):
        _verify(secret, **over)


def test_key_format_and_id() -> None:
    keys = {new_plaintext_key() for _ in range(200)}
    assert len(keys) == 200
    for k in keys:
        assert k.startswith("txg_")
        assert key_id_of(k) == k[:KEY_ID_LEN]
        assert len(hash_key(k)) == 64
    k = next(iter(keys))
    assert key_id_of(k[:-1]) is None
    assert key_id_of("xxx_" + k[4:]) is None
    assert key_id_of(k[:KEY_ID_LEN] + "-" + k[KEY_ID_LEN + 1 :]) is None


def test_secret_box_round_trip_and_binding() -> None:
    box = SecretBox("master")
    sealed = box.seal("txs_abc", key_id="txg_00000001")
    assert "txs_abc" not in sealed
    assert box.open(sealed, key_id="txg_00000001") == "txs_abc"
    with pytest.raises(IntegrityError, match="txg_00000002"):
        box.open(sealed, key_id="txg_00000002")  # copied onto another row
    with pytest.raises(IntegrityError):
        SecretBox("other master").open(sealed, key_id="txg_00000001")


def test_parse_roles() -> None:
    assert parse_roles("scorer, Analyst") == {Role.SCORER, Role.ANALYST}
    with pytest.raises(ValidationError, match="unknown role 'root'"):
        parse_roles(["scorer", "root"])
    with pytest.raises(ValidationError, match="at least one role"):
        parse_roles("")


def test_nonce_is_signed_and_validated() -> None:
    body = b"{}"
    plain = sign_request("k", method="GET", path="/v1/models", timestamp=NOW, body=body)
    with_nonce = sign_request(
        "k", method="GET", path="/v1/models", timestamp=NOW, body=body, nonce="n-1"
    )
    assert plain != with_nonce
    common: dict[str, object] = {
        "method": "GET",
        "path": "/v1/models",
        "timestamp_header": str(NOW),
        "body": body,
        "now": float(NOW),
        "max_skew": 120.0,
    }
    verify_signature("k", signature_header=with_nonce, nonce_header="n-1", **common)  # type: ignore[arg-type]
    with pytest.raises(AuthenticationError, match="does not verify"):
        verify_signature("k", signature_header=with_nonce, nonce_header="n-2", **common)  # type: ignore[arg-type]
    with pytest.raises(AuthenticationError, match="does not verify"):
        verify_signature("k", signature_header=with_nonce, **common)  # type: ignore[arg-type]
    with pytest.raises(AuthenticationError, match="Nonce"):
        verify_signature("k", signature_header=with_nonce, nonce_header="bad nonce!", **common)  # type: ignore[arg-type]
