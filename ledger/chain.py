"""The ledger's bytes: canonical entries, hashes, key ids and Ed25519 signatures (see FORMAT.md).

Pure: no Django, no I/O. Imports only the standard library, `cryptography` and `rfc8785`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ZERO_HASH = bytes(32)
ED25519_KEY_TYPE = 0x01

# RFC 8785 numbers are IEEE-754 doubles: only these integers survive a round trip through any JSON parser, so
# this bounds every amount, id and count the ledger signs or serves.
JSON_INT_MAX = 2**53 - 1
_INT_MAX = JSON_INT_MAX

# With sorted keys, no whitespace, no ASCII escaping and no floats, the stdlib encoder writes exactly RFC 8785
# (same escapes, lowercase \u00xx) — except that RFC 8785 sorts keys by UTF-16 code units, which differs from
# code-point order only when a string holds characters beyond U+FFFF. Those rare texts go through rfc8785.
_dumps = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def b64decode_strict(text: str) -> bytes:
    """Standard base64 with padding; refuses every other spelling of the same bytes."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"bad base64: {exc}") from None
    # b64decode ignores the unused low bits of the last symbol; two texts must never give one value.
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("non-canonical base64")
    return raw


def _check_json(value: Any, path: str = "$") -> None:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return
    if kind is int:
        if not -_INT_MAX <= value <= _INT_MAX:
            raise ValueError(f"{path}: integer {value} is outside the exact JSON range (±2**53-1)")
    elif kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise ValueError(f"{path}: object key {key!r} is not a string")
            _check_json(item, f"{path}.{key}")
    elif kind is list or kind is tuple:
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]")
    elif kind is float:
        raise ValueError(f"{path}: floats are not allowed (amounts are integers in minor units)")
    else:
        raise ValueError(f"{path}: {kind.__name__} is not a JSON value")


def jcs(value: Any, *, checked: bool = False) -> bytes:
    """RFC 8785 bytes of a JSON value without floats.

    `checked=True` skips the type walk: only for values from a JSON parser that already refused floats,
    non-finite numbers and integers beyond ±2**53-1.
    """
    if not checked:
        _check_json(value)
    text = _dumps(value)
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text contains a lone surrogate (not valid Unicode)") from None
    if len(raw) != len(text) and len(text.encode("utf-16-le")) != 2 * len(text):
        return rfc8785.dumps(value)
    return raw


def canonical_bytes(
    *,
    seq: int,
    kind: str,
    actor: str,
    payload: Mapping[str, Any],
    created_at: str,
    key_id: str,
    actor_key_id: str | None,
) -> bytes:
    """C: the RFC 8785 bytes of an entry's seven signed members."""
    return jcs(
        {
            "seq": seq,
            "kind": kind,
            "actor": actor,
            "payload": payload,
            "created_at": created_at,
            "key_id": key_id,
            "actor_key_id": actor_key_id,
        }
    )


def format_timestamp(dt: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC; naive datetimes are refused."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("naive datetime: the ledger needs an aware one")
    u = dt.astimezone(UTC)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond:06d}Z"


def entry_hash(prev_hash: bytes, canonical: bytes) -> bytes:
    return hashlib.sha256(prev_hash + canonical).digest()


def leaf_hash(canonical: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + canonical).digest()


def actor_statement(*, actor: str, kind: str, payload: Mapping[str, Any]) -> bytes:
    """What an actor signs before the platform assigns seq, time and chain position."""
    return jcs({"actor": actor, "kind": kind, "payload": payload})


def _check_name(name: str) -> None:
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise ValueError(f"bad key name {name!r}: must be non-empty, without spaces or '+'")


def key_hash(name: str, key_type: int, public_key_raw: bytes) -> bytes:
    """The C2SP signed-note key id: SHA-256(name || 0x0A || type || key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([key_type]) + public_key_raw).digest()[:4]


def key_id_for(origin: str, public_key_raw: bytes) -> str:
    return key_hash(origin, ED25519_KEY_TYPE, public_key_raw).hex()


def verifier_key(origin: str, public_key_raw: bytes, *, key_type: int = ED25519_KEY_TYPE) -> str:
    _check_name(origin)
    if len(public_key_raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    key_id = key_hash(origin, key_type, public_key_raw).hex()
    return f"{origin}+{key_id}+{b64encode(bytes([key_type]) + public_key_raw)}"


def parse_verifier_key(s: str, *, key_type: int = ED25519_KEY_TYPE) -> tuple[str, str, bytes]:
    """`name+hex8+base64(type || key)` -> (name, key id hex, raw 32-byte key); ValueError unless exact."""
    parts = s.split("+", 2)
    if len(parts) != 3:
        raise ValueError("a verifier key is name+keyid+key")
    name, key_id, encoded = parts
    _check_name(name)
    if len(key_id) != 8 or key_id.strip("0123456789abcdef"):
        raise ValueError("key id must be 8 lowercase hex digits")
    blob = b64decode_strict(encoded)
    if len(blob) != 33:
        raise ValueError(f"key must be 1 type byte and 32 key bytes, got {len(blob)} bytes")
    if blob[0] != key_type:
        raise ValueError(f"key type 0x{blob[0]:02x}, expected 0x{key_type:02x}")
    public_key_raw = blob[1:]
    if key_hash(name, key_type, public_key_raw).hex() != key_id:
        raise ValueError("key id does not match the name and key")
    return name, key_id, public_key_raw


@lru_cache(maxsize=1024)
def _public_key(public_key_raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public_key_raw)


@lru_cache(maxsize=64)
def _private_key(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_raw(private_key: Ed25519PrivateKey | bytes) -> bytes:
    if isinstance(private_key, bytes):
        private_key = _private_key(private_key)
    return private_key.public_key().public_bytes_raw()


def sign(private_key: Ed25519PrivateKey | bytes, message: bytes) -> bytes:
    """Ed25519 signature; the key is a key object or its raw 32-byte seed."""
    if isinstance(private_key, bytes):
        private_key = _private_key(private_key)
    return private_key.sign(message)


def verify_signature(public_key_raw: bytes, signature: bytes, message: bytes) -> bool:
    try:
        _public_key(public_key_raw).verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def check_postings(postings: Any) -> None:
    """ValueError unless `postings` is a non-empty list of {"account": str, "amount": nonzero int} summing to 0."""
    if type(postings) is not list or not postings:
        raise ValueError("postings must be a non-empty list")
    total = 0
    for i, posting in enumerate(postings):
        if type(posting) is not dict or posting.keys() != {"account", "amount"}:
            raise ValueError(f"posting {i} must be an object with exactly 'account' and 'amount'")
        account = posting["account"]
        amount = posting["amount"]
        if type(account) is not str or not account:
            raise ValueError(f"posting {i}: account must be a non-empty string")
        if type(amount) is not int:
            raise ValueError(f"posting {i}: amount must be an integer (minor units), got {amount!r}")
        if amount == 0:
            raise ValueError(f"posting {i}: amount must not be zero")
        total += amount
    if total != 0:
        raise ValueError(f"postings sum to {total}, not 0")
