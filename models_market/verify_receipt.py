"""Verify a metered call's receipt offline: `python -m models_market.verify_receipt RECEIPT.json EXPORT.json
[--key VERIFIER_KEY] [--input ROWS.json] [--output PREDICTIONS.json]`.

RECEIPT.json is what `GET /api/models/receipts/<id>/` returns (or the `receipt` of a predict answer, fetched
again once settled for its proof); EXPORT.json is the ledger's export (`manage.py export_ledger`). Checks that
the export verifies (ledger.verify), that the platform signed the receipt with a key the export lists, that the
receipt is included in the Merkle root of the settlement entry its proof names, and, when given, that the
input sent and the predictions received hash to the receipt's input_sha256 and output_sha256. Exit 0 and an
`OK` line, or exit 1 and a `FAIL <what>` line.

Two receipt formats. A call whose rows came in a request body (the API, JSON or CSV) has a format 2 receipt:
its body holds `"format": 2`, and input_sha256 is the SHA-256 of the request body exactly as sent (--input is
that body, byte for byte). A call without one (rows typed on the model's page) has a format 1 receipt, as every
receipt had before format 2: no `format` field, and input_sha256 is the SHA-256 of the rows' RFC 8785 JSON
(--input is the rows, or a JSON request holding them). output_sha256 is, in both, the SHA-256 of the RFC 8785
JSON of the predictions.

Signed alone, or in a group. A receipt signed alone carries the signature of its body's RFC 8785 JSON. Calls
written together (by one statement, a few at a time under load) are signed once for the group: a receipt signed
in a group carries `"group": {"index", "size", "salt", "path"}`, its place among the group's receipts, a random
salt of its own and the RFC 6962 audit path from its leaf (`group_leaf`: RFC 8785 JSON of the body and the salt)
to the group's Merkle root, and the signature is of `group_statement(root, size)`, RFC 8785 JSON of
{"receipts_root": root (hex), "size": size}. Either way, a receipt's body is what the platform vouches for, and a
changed body fails the signature. The salts keep the other callers' calls out of a path: each hash in it mixes in
128 random bits that only the receipt's own holder is given, so no guess of another caller's body (their input,
their time) can be checked against it. A receipt's leaf in its settlement's tree holds its group too (salt
included), for the same reason: its group-mates know its signature.

Uses only the standard library, `cryptography` and `rfc8785` (through ledger.chain, ledger.merkle and
ledger.verify), like ledger.verify: no Django.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
from typing import Any

import rfc8785

from ledger import chain, merkle
from ledger.verify import read_export, verify_export

SETTLED_KIND = "models_market.calls.settled"
MINTED_KIND = "models_market.token.minted"
BODY_FIELDS = (
    "seq", "version", "model_sha256", "input_sha256", "output_sha256", "price", "caller", "issued_at", "rows",
)  # fmt: skip
FORMAT_ROWS = 1  # input_sha256: the rows' RFC 8785 JSON; the body has no "format" field
FORMAT_BODY = 2  # input_sha256: the request body as sent; the body holds "format": 2
SALT_BYTES = 16  # of a receipt's salt in its signing group


_SAFE_INT = 2**53 - 1


class ReceiptError(Exception):
    pass


def es_number(x: float) -> str:
    """ECMAScript's Number::toString of a finite double, which RFC 8785 prescribes: the shortest digits that
    read back as `x` (Python's repr finds the same), in fixed notation from 1e-7 to below 1e21."""
    if x == 0:
        return "0"
    mantissa, _, exponent = repr(abs(x)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    n = len(whole) + int(exponent or 0) - (len(digits) - len(digits.lstrip("0")))  # x = 0.DIGITS * 10**n
    digits = digits.strip("0")
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        text = digits[0] + (f".{digits[1:]}" if k > 1 else "") + ("e+" if e >= 0 else "e-") + str(abs(e))
    return ("-" if x < 0 else "") + text


_MARK = (
    "\ue000"  # a private-use character: a number spelled by es_number stands in the encoded text as "<mark>i"
)
_SPELLED = re.compile(f'"{_MARK}([0-9]+)"')
_encode = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


class _Unusual(Exception):
    """Text holding the mark: only the rfc8785 package writes such a value."""


def _prepared(value: Any, spelled: list[str]) -> Any:
    """`value` for the standard library's encoder: floats whose repr is their RFC 8785 text as they are,
    integral ones as ints (5.0 → 5), others (1e-05, 1e+21) as marks for their es_number spelling."""
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a JSON number")
        if value.is_integer():
            if abs(value) <= _SAFE_INT:
                return int(value)
        elif 1e-4 <= abs(value) < 1e16:
            return value
        spelled.append(es_number(value))
        return f"{_MARK}{len(spelled) - 1}"
    if kind is str:
        if _MARK in value:
            raise _Unusual
        return value
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise ValueError(f"object key {key!r} is not text")
            if _MARK in key:
                raise _Unusual
            out[key] = _prepared(item, spelled)
        return out
    if kind is list or kind is tuple:
        return [_prepared(item, spelled) for item in value]
    if kind is int and not -_SAFE_INT <= value <= _SAFE_INT:
        raise ValueError(f"the integer {value} is beyond the exact JSON range (±2**53-1)")
    return value


# What marks, in the standard encoder's compact text, a number that RFC 8785 spells otherwise: an exponent
# (1e-05, 1.5e+16) or an integral float (5.0, -0.0), also when it ends the text. Such text inside strings is
# told apart by respelled.
NEEDS_RESPELLING = ("e-", "e+", ".0,", ".0]", ".0}")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:e[+-][0-9]+)?")


def may_need_respelling(text: str, needles: tuple[str, ...] = NEEDS_RESPELLING) -> bool:
    return any(needle in text for needle in needles) or text.endswith(".0")


def respelled(text: str, needles: tuple[str, ...] = NEEDS_RESPELLING) -> str | None:
    """An encoder's compact text (the standard library's, or another's whose numbers `needles` mark the same
    way) with each number that RFC 8785 spells otherwise respelled by es_number; None when the text holds a
    backslash (a quote may then be escaped: the caller walks the value). Found from the needles, so that the rest
    of the text is not scanned in Python."""
    if "\\" in text:
        return None
    hits = set()
    for needle in needles:
        at = text.find(needle)
        while at >= 0:
            hits.add(at)
            at = text.find(needle, at + 1)
    if text.endswith(".0"):
        hits.add(len(text) - 2)
    parts, done, counted, quotes = [], 0, 0, 0
    for at in sorted(hits):
        if at < done:
            continue  # in the number just respelled
        quotes += text.count('"', counted, at)
        counted = at
        if quotes % 2:
            continue  # inside a string
        # A number in the encoder's text (at most 24 characters) follows ":", "," or "[", or starts the text.
        near = max(0, at - 32)
        start = max(text.rfind(":", near, at), text.rfind(",", near, at), text.rfind("[", near, at)) + 1
        number = _NUMBER.match(text, start)
        if (
            (start == 0 and near > 0)
            or number is None
            or number.end() <= at
            or text[number.end() : number.end() + 1] not in ("", ",", "]", "}")
        ):
            return None  # not the encoder's text as expected: the caller walks the value
        parts += (text[done:start], es_number(float(number.group())))
        done = counted = number.end()  # a number holds no quote
    parts.append(text[done:])
    return "".join(parts)


def canonical_json(value: Any, *, checked: bool = False) -> bytes:
    """RFC 8785 bytes of a JSON value that may hold floats (rows, predictions), written by the standard
    library's encoder (fast) with ECMAScript's spelling of numbers; the rfc8785 package writes the rare values
    that encoder cannot (keys beyond U+FFFF sort differently). ValueError for what JSON cannot say.

    `checked=True`: the caller knows that every object key is text and every integer within ±2**53-1 (rows
    that the feature schema accepted, predictions); the value is then encoded as it is, the numbers that need
    it respelled in the text, and walked only when the text holds a backslash."""
    if checked:
        try:
            text = _encode(value)
        except (ValueError, TypeError):
            text = None  # NaN, infinity or not JSON: the walk below says which
        if text is not None and may_need_respelling(text):
            text = respelled(text)  # None: walked below
        if text is not None:
            try:
                raw = text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("text contains a lone surrogate (not valid Unicode)") from None
            if len(raw) == len(text) or len(text.encode("utf-16-le")) == 2 * len(text):
                return raw
    spelled: list[str] = []
    try:
        text = _encode(_prepared(value, spelled))
        if spelled:
            text = _SPELLED.sub(lambda m: spelled[int(m.group(1))], text)
        raw = text.encode("utf-8")
        if len(raw) != len(text) and len(text.encode("utf-16-le")) != 2 * len(text):
            return rfc8785.dumps(value)
        return raw
    except _Unusual:
        try:
            return rfc8785.dumps(value)
        except rfc8785.CanonicalizationError as exc:
            raise ValueError(str(exc)) from None
    except UnicodeEncodeError:
        raise ValueError("text contains a lone surrogate (not valid Unicode)") from None
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def group_statement(root: bytes, size: int) -> bytes:
    """What the platform signs for a group of receipts written together: RFC 8785 JSON of their Merkle root
    (leaves: `group_leaf` of each, in the group's order) and their number. Never 32 bytes (an entry hash), never a
    receipt body (no body holds these names)."""
    return chain.jcs({"receipts_root": root.hex(), "size": size})


def group_leaf(body: dict[str, Any], salt: str) -> bytes:
    """A receipt's leaf bytes in its signing group's tree: RFC 8785 JSON of its body and its salt (hex)."""
    return chain.jcs({"body": body, "salt": salt})


def receipt_leaf(
    body: dict[str, Any], key_id: str, signature: str, group: dict[str, Any] | None = None
) -> bytes:
    """A receipt's leaf bytes in its settlement's Merkle tree: RFC 8785 JSON of its body, the key id and the
    signature (hex), and its signing group when it has one. The platform builds its trees from the same
    function."""
    leaf: dict[str, Any] = {"body": body, "key_id": key_id, "signature": signature}
    if group is not None:
        leaf["group"] = group
    return chain.jcs(leaf)


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise ReceiptError(what)


def _hex(value: Any, size: int, what: str) -> bytes:
    _need(isinstance(value, str) and len(value) == 2 * size, f"{what} is not {size} bytes of hex")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ReceiptError(f"{what} is not {size} bytes of hex") from None


def _check_form(receipt: Any) -> tuple[dict[str, Any], str, bytes]:
    _need(isinstance(receipt, dict), "the receipt is not a JSON object")
    body, key_id = receipt.get("body"), receipt.get("key_id")
    _need(
        isinstance(body, dict) and set(body) - {"format"} == set(BODY_FIELDS),
        f"the receipt body must hold {BODY_FIELDS}",
    )
    _need(
        "format" not in body or (type(body["format"]) is int and body["format"] == FORMAT_BODY),
        f"receipt format {body.get('format')!r} is not one this verifier knows (2, or none for 1)",
    )
    _need(isinstance(key_id, str) and bool(key_id), "the receipt names no key_id")
    signature = _hex(receipt.get("signature"), 64, "the signature")
    for name in ("seq", "version", "price", "rows"):
        _need(type(body[name]) is int and body[name] >= 0, f"body.{name} is not a whole number")
    return body, key_id, signature


def _signed_statement(receipt: dict[str, Any], body: dict[str, Any]) -> tuple[bytes, str]:
    """What the signature is of (the body alone, or its group's root), and how it was signed, in words."""
    try:
        statement = chain.jcs(body)
    except ValueError as exc:
        raise ReceiptError(f"the receipt body is not canonical JSON: {exc}") from None
    group = receipt.get("group")
    if group is None:
        return statement, "alone"
    _need(isinstance(group, dict) and isinstance(group.get("path"), list), "the receipt's group is malformed")
    index, size = group.get("index"), group.get("size")
    _need(
        type(index) is int and type(size) is int and 0 <= index < size,
        f"the receipt's place in its group ({index!r} of {size!r}) is malformed",
    )
    salt = group.get("salt")
    _hex(salt, SALT_BYTES, "the receipt's group salt")
    path = [_hex(h, 32, "a group path hash") for h in group["path"]]
    root = merkle.root_from_inclusion(index, size, merkle.hash_leaf(group_leaf(body, salt)), path)
    _need(root is not None, "the receipt's group path does not fit its place in the group")
    return group_statement(root, size), f"in a group of {size}"


def receipt_format(body: dict[str, Any]) -> int:
    """FORMAT_BODY or FORMAT_ROWS: what the receipt's input_sha256 is the hash of."""
    return body.get("format", FORMAT_ROWS)


def _exact_sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _canonical_sha256(path: str, *, key: str) -> str:
    with open(path, "rb") as fh:
        value = json.load(fh)
    if isinstance(value, dict) and key in value:  # a whole request or answer, as sent or received
        value = value[key]
    return hashlib.sha256(canonical_json(value)).hexdigest()


def verify_receipt(
    receipt: Any,
    export_path: str,
    *,
    trusted_key: str | None = None,
    input_path: str | None = None,
    output_path: str | None = None,
) -> str:
    """The OK line for a receipt that verifies against the export; ReceiptError naming the first problem."""
    body, key_id, signature = _check_form(receipt)
    report = verify_export(export_path, trusted_key=trusted_key)
    _need(report.ok, f"the export does not verify: {report.line()}")
    export = read_export(export_path)
    key = next((k for k in export.keys if k.key_id == key_id), None)
    _need(key is not None, f"the receipt is signed by key {key_id}, which the export does not list")
    statement, signed = _signed_statement(receipt, body)
    _need(
        chain.verify_signature(key.public_key, signature, statement),
        "the platform's signature does not verify",
    )
    proof = receipt.get("proof")
    _need(
        proof is not None,
        f"receipt {body['seq']} is not settled yet: fetch it again once settled, for its proof",
    )
    _need(isinstance(proof, dict), "the proof is not a JSON object")
    seq, index, path = proof.get("entry_seq"), proof.get("leaf_index"), proof.get("path")
    _need(type(seq) is int and type(index) is int and isinstance(path, list), "the proof is malformed")
    entry = next((e for e in export.entries if isinstance(e, dict) and e.get("seq") == seq), None)
    _need(
        entry is not None and entry.get("kind") == SETTLED_KIND, f"entry {seq} is not a settlement of calls"
    )
    payload = entry["payload"]
    root, count = _hex(payload.get("merkle_root"), 32, "the settlement's root"), payload.get("count")
    _need(
        type(count) is int and 0 <= index < count,
        f"leaf {index} is outside the settlement's {count} receipts",
    )
    _need(
        payload.get("first_receipt", -1) <= body["seq"] <= payload.get("last_receipt", -1),
        f"receipt {body['seq']} is outside the receipts settled by entry {seq}",
    )
    hashes = [_hex(h, 32, "a proof hash") for h in path]
    leaf = merkle.hash_leaf(receipt_leaf(body, key_id, receipt["signature"], receipt.get("group")))
    _need(
        merkle.verify_inclusion(index, count, leaf, hashes, root),
        f"the receipt is not included in the root of entry {seq}",
    )
    minted = [
        e for e in export.entries
        if isinstance(e, dict) and e.get("kind") == MINTED_KIND and e["payload"].get("version") == body["version"]
    ]  # fmt: skip
    if minted:
        _need(
            minted[0]["payload"].get("artifact_sha256") == body["model_sha256"],
            f"the model that ran ({body['model_sha256']}) is not the one tokenized for version {body['version']}",
        )
    if input_path is not None and receipt_format(body) == FORMAT_BODY:
        _need(
            _exact_sha256(input_path) == body["input_sha256"],
            "the request body does not hash to input_sha256 (format 2: give the body exactly as sent)",
        )
    elif input_path is not None:
        _need(
            _canonical_sha256(input_path, key="rows") == body["input_sha256"],
            "the rows do not hash to input_sha256",
        )
    if output_path is not None:
        _need(
            _canonical_sha256(output_path, key="predictions") == body["output_sha256"],
            "the predictions do not hash to output_sha256",
        )
    return (
        f"OK receipt {body['seq']}: version {body['version']}, {body['rows']} rows, price {body['price']}, "
        f"caller {body['caller']}; signed {signed} by {key_id}; leaf {index} of {count} in entry {seq}; {report.line()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models_market.verify_receipt", description=__doc__.split("\n")[0]
    )
    parser.add_argument("receipt", help="the receipt (JSON), with its proof once settled")
    parser.add_argument("export", help="the ledger export (JSON lines)")
    parser.add_argument("--key", help="the trusted first platform key (verifier key), obtained out of band")
    parser.add_argument(
        "--input",
        help="what was sent: the request body exactly as sent (format 2), or the rows (format 1: JSON of the "
        "rows, or the request with its rows)",
    )
    parser.add_argument("--output", help="the predictions received (JSON: them, or the answer with them)")
    args = parser.parse_args(argv)
    try:
        with open(args.receipt, "rb") as fh:
            receipt = json.load(fh)
        if isinstance(receipt, dict) and isinstance(receipt.get("receipt"), dict):
            receipt = receipt["receipt"]  # a whole predict answer
        print(
            verify_receipt(
                receipt, args.export, trusted_key=args.key, input_path=args.input, output_path=args.output
            )
        )
    except (ReceiptError, ValueError, OSError) as exc:
        print(f"FAIL {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
