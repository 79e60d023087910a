"""PII never reaches logs or metrics raw: a keyed hash (HMAC-SHA256 under ``Settings.pii_key``,
first 16 hex chars) stands in for it. The same value always gives the same token, so an
operator can still follow one account through the logs, and whoever holds the PII key can
check a suspected value — but the logs alone reveal nothing.

``mask_pii`` is a structlog processor: it replaces the values of known PII keys at any depth
of the event dict, and scrubs IP addresses, wallet addresses and card numbers found in free text
(the message included) — so a careless ``log.info(f"... {event.sender.account_id}")`` is caught
when the id sits under a PII key somewhere, and IPs/cards/wallets are caught anywhere.

An account id has no shape a regex could recognise, so the free-text half works by value: the
masker first collects every string (or integer) found under a PII key anywhere in the record,
then replaces each occurrence of those values in every other string — structlog's ``event``
key (the message) included — with the same token. Values shorter than
:data:`MIN_KNOWN_VALUE_LENGTH` are left in free text: replacing every "7" or "ab" in a message
would destroy it, and such a value identifies nobody. An id logged in the message *without* also
being passed under a PII key cannot be recognised; pass it as a field.

>>> h = PiiHasher("k")
>>> h.token("acct-1") == h.token("acct-1") != h.token("acct-2")
True
>>> p = PiiMasker(h)
>>> out = p(None, "info", {"event": "from 10.1.2.3 for acct-1", "account_id": "acct-1"})
>>> "10.1.2.3" in str(out) or "acct-1" in str(out)
False
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any

from txguard.settings import Settings

# Keys whose values are PII wherever they appear (matched case-insensitively, also as suffix
# of a dotted/underscored name, e.g. sender_account_id, recipient.wallet_address).
PII_KEYS: frozenset[str] = frozenset(
    {
        "account_id",
        "sender_account_id",
        "recipient_account_id",
        "wallet_address",
        "recipient_wallet_address",
        "sender_wallet_address",
        "ip",
        "ip_address",
        "client_ip",
        "remote_addr",
        "x_forwarded_for",
        "device_id",
        "card_number",
        "pan",
        "card",
        "iban",
        "email",
        "phone",
        "name_on_card",
    }
)
_SUFFIXES = tuple(sorted({k for k in PII_KEYS if "_" in k}))

# Values under PII keys at least this long are also replaced inside free text (see module doc).
MIN_KNOWN_VALUE_LENGTH = 4

_IPV4 = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])"
)
# IPv6 candidates (hex, colons, maybe a dotted tail), confirmed by ``ipaddress``
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?![\w:])")
_ETH = re.compile(r"\b0x[0-9a-fA-F]{40}\b")
_BTC = re.compile(r"\b(?:bc1[02-9ac-hj-np-z]{11,71}|[13][1-9A-HJ-NP-Za-km-z]{25,34})\b")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


class PiiHasher:
    def __init__(self, key: str) -> None:
        if not key:
            raise ValueError("empty PII key")
        self._key = key.encode()

    @classmethod
    def from_settings(cls, settings: Settings) -> PiiHasher:
        return cls(settings.pii_key.get_secret_value())

    def token(self, value: object) -> str:
        """``pii:`` + 16 hex chars (64 bits: collisions negligible at log scale)."""
        digest = hmac.new(self._key, str(value).encode(), hashlib.sha256).hexdigest()
        return f"pii:{digest[:16]}"

    def scrub_text(self, text: str, known: re.Pattern[str] | None = None) -> str:
        """Replace IPs, wallet addresses and Luhn-valid card numbers inside free text, and first
        any occurrence of ``known`` (the PII values of the same record, see ``known_values``)."""
        if known is not None:
            text = known.sub(lambda m: self.token(m.group(0)), text)
        text = _IPV6.sub(lambda m: self._ipv6(m.group(0)), text)
        for pattern in (_ETH, _BTC, _IPV4):
            text = pattern.sub(lambda m: self.token(m.group(0)), text)
        return _CARD.sub(lambda m: self._card(m.group(0)), text)

    def _ipv6(self, candidate: str) -> str:
        try:
            ipaddress.IPv6Address(candidate.rstrip("."))
        except ValueError:
            return candidate
        return self.token(candidate)

    def _card(self, candidate: str) -> str:
        digits = re.sub(r"\D", "", candidate)
        return self.token(digits) if _luhn_ok(digits) else candidate


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_pii_key(key: str) -> bool:
    k = key.lower().replace(".", "_").replace("-", "_")
    return k in PII_KEYS or k.endswith(_SUFFIXES)


def _leaves(value: Any) -> Iterator[str]:
    """The string and integer leaves of a (nested) value, as text."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, int) and not isinstance(value, bool):
        yield str(value)
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from _leaves(v)


def known_values(values: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern matching any of ``values`` (those of at least MIN_KNOWN_VALUE_LENGTH
    characters), longest first so a value that contains another is replaced whole; None when
    there is nothing to look for (the common case: no extra work per log line)."""
    vs = sorted({v for v in values if len(v) >= MIN_KNOWN_VALUE_LENGTH}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, vs))) if vs else None


class PiiMasker:
    """structlog processor; put it last before the renderer so it sees everything."""

    def __init__(self, hasher: PiiHasher, *, extra_keys: Iterable[str] = ()) -> None:
        self._hasher = hasher
        self._extra = frozenset(k.lower() for k in extra_keys)

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        known = known_values(self.pii_values(event_dict))
        for key in list(event_dict):
            event_dict[key] = self._mask(key, event_dict[key], known)
        return event_dict

    def _is_pii(self, key: str) -> bool:
        return is_pii_key(key) or key.lower() in self._extra

    def pii_values(self, value: Any, under_pii: bool = False) -> Iterator[str]:
        """Every string/integer leaf stored under a PII key anywhere in ``value``."""
        if under_pii:
            yield from _leaves(value)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                yield from self.pii_values(v, self._is_pii(str(k)))
        elif isinstance(value, list | tuple):
            for v in value:
                yield from self.pii_values(v)

    def _mask(self, key: str, value: Any, known: re.Pattern[str] | None = None) -> Any:
        if value is None:
            return None
        if self._is_pii(key):
            if isinstance(value, list | tuple | set | frozenset):
                return [self._hasher.token(v) for v in value]
            return self._hasher.token(value)
        if isinstance(value, str):
            return self._hasher.scrub_text(value, known)
        if isinstance(value, dict):
            return {k: self._mask(str(k), v, known) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._mask(key, v, known) for v in value]
        return value


class PiiLogFilter(logging.Filter):
    """The same protection for stdlib ``logging`` (which the service modules use): the formatted
    message and any traceback text are scrubbed, and ``extra=`` fields under PII keys hashed.
    Attach it to handlers (``install_pii_log_filter``): a filter on a logger does not apply to
    records from its children."""

    def __init__(self, hasher: PiiHasher) -> None:
        super().__init__()
        self._hasher = hasher
        self._masker = PiiMasker(hasher)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_txguard_pii_masked", False):
            return True
        known = known_values(self._masker.pii_values(vars(record)))
        record.msg = self._hasher.scrub_text(record.getMessage(), known)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._hasher.scrub_text(record.exc_text, known)
        for key, value in list(vars(record).items()):
            if is_pii_key(key) and value is not None:
                setattr(record, key, self._masker._mask(key, value))
        record._txguard_pii_masked = True
        return True


def install_pii_log_filter(
    settings: Settings, handlers: Iterable[logging.Handler] | None = None
) -> PiiLogFilter:
    """Attach the filter to ``handlers`` (default: the root logger's). Call after configuring
    logging, in each entry point (server, stream worker, CLI)."""
    flt = PiiLogFilter(PiiHasher.from_settings(settings))
    for handler in logging.getLogger().handlers if handlers is None else handlers:
        handler.addFilter(flt)
    return flt


def mask_pii(settings: Settings) -> PiiMasker:
    """The processor for ``structlog.configure(processors=[..., mask_pii(settings), renderer])``."""
    return PiiMasker(PiiHasher.from_settings(settings))
