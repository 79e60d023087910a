"""Numeric simulator columns → the canonical event table (``txguard.io.events.EVENT_SCHEMA``).

Strings are made once per distinct value (accounts, devices, IPs …) and gathered with Arrow's
``take``; transaction ids are numbered in time order, so ``sim-00000001`` is the first payment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from txguard.datasets.sim.population import AccountBook
from txguard.datasets.sim.world import (
    ATMS_PER_COUNTRY,
    CHANNELS,
    COUNTRY_CODES,
    CURRENCIES,
    DECIMALS,
    EXT_BASE,
    MERCHANT_TERMINALS,
    RATE,
    SOURCES,
    TERMINAL_ATM_BASE,
    TYPES,
    TYPOLOGIES,
    WEB_TERMINAL,
    Cols,
    take,
)
from txguard.io.events import EVENT_SCHEMA, KIND_LABEL, KIND_TRANSACTION, conform

_TS = pa.timestamp("us", tz="UTC")
_KINDS = (KIND_TRANSACTION, KIND_LABEL)


def _strings(codes: np.ndarray, fmt: Callable[[int], str]) -> pa.Array:
    """Format each distinct non-negative code once; negative codes become nulls. (Arrow's hash
    dictionary-encoding is linear; ``np.unique`` would sort a million codes per column.)"""
    enc = pa.array(codes, mask=codes < 0).dictionary_encode()
    vocab = pa.array([fmt(v) for v in enc.dictionary.to_pylist()], pa.string())
    return vocab.take(enc.indices)


def _dict(codes: np.ndarray, vocab: Sequence[str]) -> pa.DictionaryArray:
    idx = pa.array(codes.astype(np.int32), pa.int32(), mask=codes < 0)
    return pa.DictionaryArray.from_arrays(idx, pa.array(list(vocab), pa.string()))


def _hash(prefix: str, n: int, size: int) -> str:
    return prefix + hashlib.blake2b(n.to_bytes(8, "little"), digest_size=size).hexdigest()


def account_id(n: int) -> str:
    return f"x-{n - EXT_BASE:07d}" if n >= EXT_BASE else f"c-{n:07d}"


def device_id(n: int) -> str:
    # hashed, so nothing about who owns a device can be read from its id
    return _hash("dev-", n, 6)


def wallet_address(n: int) -> str:
    if n % 3 == 0:
        return _hash("bc1q", n, 19)
    return _hash("0x", n, 20) if n % 3 == 1 else "T" + _hash("", n, 17)


def bank_name(code: int) -> str:
    if code == 0:
        return "TXGBANK"
    c, k = divmod(code - 1, 3)
    return f"{COUNTRY_CODES[c]}-BANK-{k + 1}"


def terminal_id(n: int) -> str:
    if n >= TERMINAL_ATM_BASE:
        c, k = divmod(n - TERMINAL_ATM_BASE, ATMS_PER_COUNTRY)
        return f"atm-{COUNTRY_CODES[c]}-{k:03d}"
    m, k = divmod(n, MERCHANT_TERMINALS)
    return f"m-{m:06d}-" + ("web" if k == WEB_TERMINAL else f"t{k}")


def ipv4(n: int) -> str:
    return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def _metadata(cols: Cols) -> pa.Array:
    code = np.where(
        cols["typology"] >= 0, cols["typology"].astype(np.int64) * (1 << 40) + cols["incident"], -1
    )
    return _strings(
        code,
        lambda v: f'{{"typology":"{TYPOLOGIES[v >> 40]}","incident":{v & ((1 << 40) - 1)}}}',
    )


def to_table(cols: Cols, book: AccountBook) -> pa.Table:
    """Transactions in time order, then one label row per planned label."""
    cols = take(cols, np.argsort(cols["t"], kind="stable"))
    n = len(cols["t"])
    country, created, kyc, ext_country = book.arrays()
    sender = cols["sender"]
    ours = sender < EXT_BASE
    s_int = np.where(ours, sender, 0)
    s_country = np.where(ours, country[s_int], ext_country[np.where(ours, 0, sender - EXT_BASE)])
    recipient = cols["recipient"]
    r_ours = (recipient >= 0) & (recipient < EXT_BASE)
    jurisdiction = np.where(
        ours, s_country, np.where(r_ours, country[np.where(r_ours, recipient, 0)], cols["rcountry"])
    )

    ccy = cols["ccy"]
    scale = 10.0 ** DECIMALS[ccy]
    amount = np.maximum(np.round(cols["usd"] / RATE[ccy] * scale), 1.0) / scale
    amount_usd = np.round(amount * RATE[ccy], 2)

    num = pc.cast(pa.array(np.arange(1, n + 1)), pa.string())
    tid = pc.binary_join_element_wise("sim-", pc.utf8_lpad(num, width=8, padding="0"), "")
    metadata = _metadata(cols)
    tx = {
        "kind": _dict(np.zeros(n, np.int32), _KINDS),
        "transaction_id": tid,
        "occurred_at": pa.array(cols["t"], _TS),
        "amount": pa.array(amount),
        "currency": _dict(ccy, CURRENCIES),
        "amount_usd": pa.array(amount_usd),
        "type": _dict(cols["type"], [t.value for t in TYPES]),
        "channel": _dict(cols["channel"], [c.value for c in CHANNELS]),
        "sender_account_id": _strings(sender, account_id),
        "sender_created_at": pa.array(np.where(ours, created[s_int], 0), _TS, mask=~ours),
        "sender_country": _dict(s_country, COUNTRY_CODES),
        "sender_kyc_level": pa.array(np.where(ours, kyc[s_int], 0), pa.int8(), mask=~ours),
        "recipient_account_id": _strings(recipient, account_id),
        "recipient_country": _dict(cols["rcountry"], COUNTRY_CODES),
        "recipient_bank": _strings(cols["bank"], bank_name),
        "recipient_wallet_address": _strings(cols["wallet"], wallet_address),
        "merchant_id": _strings(cols["merchant"], lambda m: f"m-{m:06d}"),
        "terminal_id": _strings(cols["terminal"], terminal_id),
        "device_id": _strings(cols["device"], device_id),
        "ip": _strings(cols["ip"], ipv4),
        "jurisdiction": _dict(jurisdiction, COUNTRY_CODES),
        "metadata": metadata,
        "is_fraud": pa.nulls(n, pa.bool_()),
        "known_at": pa.nulls(n, _TS),
        "label_source": _dict(np.full(n, -1), [s.value for s in SOURCES]),
    }
    lab = np.flatnonzero(cols["labelled"])
    m = len(lab)
    labels = {
        name: pa.nulls(m, f.type) for name, f in zip(EVENT_SCHEMA.names, EVENT_SCHEMA, strict=True)
    }
    labels.update(
        kind=_dict(np.ones(m, np.int32), _KINDS),
        transaction_id=tid.take(pa.array(lab)),
        metadata=metadata.take(pa.array(lab)),
        is_fraud=pa.array(cols["label_fraud"][lab]),
        known_at=pa.array(cols["label_t"][lab], _TS),
        label_source=_dict(cols["label_src"][lab], [s.value for s in SOURCES]),
    )
    for name in (
        "currency",
        "type",
        "channel",
        "sender_country",
        "recipient_country",
        "jurisdiction",
    ):
        labels[name] = pa.DictionaryArray.from_arrays(pa.nulls(m, pa.int32()), tx[name].dictionary)
    t1 = conform(pa.table(tx))
    t2 = conform(pa.table(labels))
    return pa.concat_tables([t1, t2]).combine_chunks()
