"""PII masking: keyed hashes stand in for account ids, IPs, wallets and card numbers."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from txguard.security.pii import PiiHasher, PiiMasker, is_pii_key, mask_pii
from txguard.settings import Settings

ETH = "0x52908400098527886E0F7030069857D2E4169EE7"
BTC = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
CARD = "4111 1111 1111 1111"  # Luhn-valid test number


def test_token_is_truncated_hmac_under_the_pii_key() -> None:
    h = PiiHasher("key-1")
    expected = hmac.new(b"key-1", b"acct-42", hashlib.sha256).hexdigest()[:16]
    assert h.token("acct-42") == f"pii:{expected}"
    assert PiiHasher("key-2").token("acct-42") != h.token("acct-42")


def test_masker_hashes_pii_keys_at_any_depth() -> None:
    h = PiiHasher("k")
    m = PiiMasker(h)
    event: dict[str, Any] = {
        "event": "scored",
        "transaction_id": "t-1",
        "sender_account_id": "acct-A",
        "recipient": {"account_id": "acct-B", "wallet_address": ETH, "country": "DE"},
        "client_ip": "203.0.113.9",
        "device_id": "dev-9",
        "accounts": [{"account_id": "acct-C"}],
        "amount": 12.5,
    }
    out = m(None, "info", event)
    text = repr(out)
    for raw in ("acct-A", "acct-B", "acct-C", ETH, "203.0.113.9", "dev-9"):
        assert raw not in text
    assert out["sender_account_id"] == h.token("acct-A")
    assert out["recipient"]["country"] == "DE"
    assert out["transaction_id"] == "t-1"
    assert out["amount"] == 12.5


def test_free_text_scrubbing() -> None:
    h = PiiHasher("k")
    m = PiiMasker(h)
    msg = f"from 198.51.100.7 and 2001:db8::1 and ::ffff:10.0.0.1 at 12:00:00 paying {ETH} / {BTC} card {CARD}, order 12345678"
    out = m(None, "info", {"event": msg})["event"]
    assert "at 12:00:00" in out
    for raw in ("198.51.100.7", "2001:db8::1", "10.0.0.1", ETH, BTC, CARD, "4111111111111111"):
        assert raw not in out
    assert "order 12345678" in out  # short numbers and non-Luhn digit runs stay
    assert h.token("4111111111111111") in out
    assert m(None, "info", {"event": "version 1.2.3 ok"})["event"] == "version 1.2.3 ok"


def test_is_pii_key() -> None:
    assert is_pii_key("sender.account_id")
    assert is_pii_key("Recipient_Wallet_Address")
    assert is_pii_key("IP")
    assert not is_pii_key("transaction_id")
    assert not is_pii_key("country")


def test_mask_pii_from_settings() -> None:
    s = Settings(pii_key="configured")
    assert mask_pii(s)(None, "info", {"ip": "1.2.3.4"})["ip"] == PiiHasher("configured").token(
        "1.2.3.4"
    )


def test_stdlib_log_filter_masks_message_extra_and_traceback() -> None:
    import io
    import logging

    from txguard.security.pii import PiiLogFilter

    h = PiiHasher("k")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s %(client_ip)s"))
    handler.addFilter(PiiLogFilter(h))
    logger = logging.getLogger("txguard.test.pii")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("paid %s from %s", ETH, "203.0.113.5", extra={"client_ip": "198.51.100.3"})
        try:
            raise ValueError(f"bad wallet {ETH}")
        except ValueError:
            logger.exception("failed for %s", "10.9.8.7", extra={"client_ip": None})
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    for raw in (ETH, "203.0.113.5", "198.51.100.3", "10.9.8.7"):
        assert raw not in text
    assert h.token(ETH) in text
    assert "ValueError: bad wallet pii:" in text


def test_pii_value_is_masked_in_the_message_and_other_fields_too() -> None:
    """An account id has no recognisable shape: it is caught in free text because the same
    record also carries it under a PII key (structlog's ``event`` is the message)."""
    h = PiiHasher("k")
    m = PiiMasker(h)
    out = m(
        None,
        "info",
        {
            "event": "scored acct-77 then acct-7",
            "recipient": {"account_id": "acct-7"},
            "sender_account_id": "acct-77",
            "note": ["paid by acct-77"],
            "device_id": 123456,
            "detail": {"text": "device 123456"},
        },
    )
    text = repr(out)
    for raw in ("acct-77", "acct-7", "123456"):
        assert raw not in text
    # longest value first: acct-77 is one token, not acct-7's token followed by "7"
    assert out["event"] == f"scored {h.token('acct-77')} then {h.token('acct-7')}"
    assert out["note"] == [f"paid by {h.token('acct-77')}"]
    assert out["detail"]["text"] == f"device {h.token(123456)}"


def test_short_pii_values_do_not_shred_free_text() -> None:
    h = PiiHasher("k")
    out = PiiMasker(h)(None, "info", {"event": "batch 7 of 9 done", "account_id": "7"})
    assert out == {"event": "batch 7 of 9 done", "account_id": h.token("7")}


def test_stdlib_log_filter_masks_pii_extra_values_in_the_message() -> None:
    import logging

    from txguard.security.pii import PiiLogFilter

    h = PiiHasher("k")
    record = logging.LogRecord(
        "txguard.test", logging.INFO, __file__, 1, "refused %s", ("acct-XYZ1",), None
    )
    record.account_id = "acct-XYZ1"
    assert PiiLogFilter(h).filter(record)
    assert record.getMessage() == f"refused {h.token('acct-XYZ1')}"
    assert record.account_id == h.token("acct-XYZ1")


def test_property_no_pii_value_survives_masking() -> None:
    """Whatever the nesting, a value stored under a PII key never comes out raw — also where the
    same value sits under an ordinary key, e.g. the message (``event``)."""
    from hypothesis import example, given, settings
    from hypothesis import strategies as st

    from txguard.security.pii import PII_KEYS

    h = PiiHasher("prop")
    masker = PiiMasker(h)
    raw_values = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=6, max_size=12).map(
        lambda s: f"acct-{s}"
    )
    pii_key = st.sampled_from(sorted(PII_KEYS))
    other_key = st.sampled_from(["event", "transaction_id", "note", "country"])
    leaf = st.one_of(raw_values, st.integers(), st.none())
    tree = st.recursive(
        st.dictionaries(st.one_of(pii_key, other_key), leaf, max_size=4),
        lambda children: st.dictionaries(
            st.one_of(pii_key, other_key),
            st.one_of(children, st.lists(children, max_size=3)),
            max_size=3,
        ),
        max_leaves=12,
    )

    def pii_values(node: object, under_pii: bool = False) -> list[str]:
        if isinstance(node, dict):
            return [v for k, c in node.items() for v in pii_values(c, under_pii or k in PII_KEYS)]
        if isinstance(node, list):
            return [v for c in node for v in pii_values(c, under_pii)]
        return [node] if under_pii and isinstance(node, str) else []

    @settings(max_examples=150, deadline=None)
    @given(tree)
    # found by hypothesis: the id logged in the message as well as under account_id
    @example({"account_id": "acct-AAAAAA", "event": "acct-AAAAAA"})
    @example({"note": [{"recipient_account_id": "acct-BBBBBBB"}], "event": "to acct-BBBBBBB"})
    def check(event: dict[str, object]) -> None:
        secrets = pii_values(event)
        out = repr(masker(None, "info", dict(event)))
        for value in secrets:
            assert value not in out

    check()
