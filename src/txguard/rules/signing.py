"""Detached signatures for rules and list files.

``rules.yaml.sig`` next to ``rules.yaml`` holds the hex HMAC-SHA256 of the file's exact bytes
under a shared key. When the loader is given a key, every file it reads (the rules file and each
list file it names) must have a matching ``.sig``, or the load is refused with
:class:`~txguard.domain.errors.IntegrityError`: a swapped block list would otherwise bypass a
signed rules file. Without a key, signatures are not checked.

The bytes verified are the bytes parsed (read once), so a file replaced between the check and
the parse cannot slip through.

>>> sig = sign_bytes(b"version: 1\\n", "k")
>>> verify_bytes(b"version: 1\\n", sig, "k", name="rules.yaml")
>>> verify_bytes(b"version: 2\\n", sig, "k", name="rules.yaml")
Traceback (most recent call last):
...
txguard.domain.errors.IntegrityError: rules.yaml: signature does not match (file changed or wrong key)
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from txguard.domain.errors import ConfigurationError, IntegrityError

SIG_SUFFIX = ".sig"


def sig_path(path: Path) -> Path:
    return path.with_name(path.name + SIG_SUFFIX)


def _key(key: str) -> bytes:
    if not key:
        raise ConfigurationError("the rules signing key is empty")
    return key.encode("utf-8")


def sign_bytes(data: bytes, key: str) -> str:
    """Hex HMAC-SHA256 of ``data``."""
    return hmac.new(_key(key), data, hashlib.sha256).hexdigest()


def verify_bytes(data: bytes, signature: str, key: str, *, name: str) -> None:
    """Raise IntegrityError unless ``signature`` (hex, surrounding spaces ignored) matches."""
    expected = sign_bytes(data, key)
    if not hmac.compare_digest(expected, signature.strip().lower()):
        raise IntegrityError(f"{name}: signature does not match (file changed or wrong key)")


def read_verified(path: Path, key: str | None) -> bytes:
    """The file's bytes, verified against ``path.sig`` when a key is given."""
    data = path.read_bytes()
    if key is None:
        return data
    sp = sig_path(path)
    try:
        signature = sp.read_text(encoding="ascii")
    except FileNotFoundError:
        raise IntegrityError(
            f"{path}: signature file {sp.name} missing (a signing key is configured)"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise IntegrityError(f"{path}: unreadable signature file {sp.name}: {e}") from None
    verify_bytes(data, signature, key, name=str(path))
    return data


def sign_file(path: Path, key: str) -> Path:
    """Write ``path.sig`` for the file's current bytes; returns the signature's path."""
    sp = sig_path(path)
    sp.write_text(sign_bytes(path.read_bytes(), key) + "\n", encoding="ascii")
    return sp
