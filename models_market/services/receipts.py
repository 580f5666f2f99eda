"""Signed receipts of metered calls, their settlement to the ledger in batches, and their inclusion proofs.

A receipt's body is RFC 8785 JSON signed (Ed25519) by the platform's active ledger key. A call whose rows came
in a request body has a format 2 receipt (`"format": 2`; input_sha256 hashes that body as sent), any other a
format 1 receipt (no `format`; input_sha256 hashes the rows' RFC 8785 JSON): see models_market/verify_receipt.py.
Receipts written together by one statement are signed together: one signature of their group's Merkle root,
each leaf salted so that a receipt's path says nothing about its group-mates' calls.
Its leaf in its settlement's Merkle tree (RFC 6962) is the RFC 8785 bytes of {"body", "key_id", "signature"}
and, when it was signed in a group, "group"; the settlement's ledger entry carries the tree's root, so a
receipt, its proof and a ledger export verify offline (`python -m models_market.verify_receipt`).
"""

import hashlib
import os
from collections import defaultdict
from datetime import datetime
from typing import Any

import orjson
from django.db import transaction
from django.db.models import F

from ledger import chain, merkle
from ledger import services as ledger
from models_market.models import CallMeter, ModelLicense, ModelVersion, Receipt, Settlement
from models_market.services.lineage import payees_open, payment_shares
from models_market.verify_receipt import (
    FORMAT_ROWS,
    SALT_BYTES,
    canonical_json,
    group_statement,
    may_need_respelling,
    receipt_leaf,
    respelled,
)
from platform_site.errors import DomainError

SETTLED_KIND = "models_market.calls.settled"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# orjson writes a float as RFC 8785 (ECMAScript) does, except integral ones (5.0, -0.0), those from 1e-6 to 1e-5
# (1.5e-6) and those from 1e16 to 1e21 (1e+16), which these needles find, and NaN and the infinities (null).
_ORJSON_NEEDS_RESPELLING = ("e-6", "e+", ".0,", ".0]", ".0}")


def canonical_json_fast(value: Any) -> bytes:
    """canonical_json(value, checked=True), written by orjson (for 100 predictions, 14 µs where the standard
    library's encoder and the respelling of the numbers that it writes otherwise, Python's 3.2e-05, took about
    400). The caller vouches, as for checked=True, that every key is text and every integer within ±2**53-1.
    What orjson may not write as RFC 8785 does goes to canonical_json: a null (a NaN or an infinity, refused
    there), text beyond the BMP (whose keys sort otherwise), a backslash near a number to respell."""
    try:
        raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError: not JSON, or an integer beyond 64 bits
        return canonical_json(value, checked=True)
    if b"null" in raw:
        return canonical_json(value, checked=True)
    text = raw.decode()
    if not raw.isascii() and len(text.encode("utf-16-le")) != 2 * len(text):
        return canonical_json(value, checked=True)
    if not may_need_respelling(text, _ORJSON_NEEDS_RESPELLING):
        return raw
    text = respelled(text, _ORJSON_NEEDS_RESPELLING)
    return canonical_json(value, checked=True) if text is None else text.encode()


def receipt_issue(
    *, license: ModelLicense, version: ModelVersion, caller_id: int, price: int, rows: int, input_sha256: str,
    output_sha256: str, issued_at: datetime, receipt_id: int | None = None, receipt_format: int = FORMAT_ROWS,
) -> Receipt:  # fmt: skip
    """Sign and write one call's receipt, inside the caller's transaction (with the call's reservation). Its
    sequence number is `receipt_id` when the caller drew it from the table's sequence, else the new row's id."""
    receipt = Receipt(
        pk=receipt_id, license=license, version=version, caller_id=caller_id, price=price,
        model_sha256=version.artifact_sha256, input_sha256=input_sha256, output_sha256=output_sha256, rows=rows,
        issued_at=issued_at,
    )  # fmt: skip
    if receipt_id is None:  # numbered by the insert: signed once the row has its number
        receipt.body, receipt.key_id, receipt.signature = {}, "", ""
        receipt.save(force_insert=True)
    receipt.body, receipt.key_id, receipt.signature = receipt_sign(receipt, receipt_format=receipt_format)
    if receipt_id is None:
        Receipt.objects.filter(pk=receipt.pk).update(
            body=receipt.body, key_id=receipt.key_id, signature=receipt.signature
        )
    else:
        receipt.save(force_insert=True)
    return receipt


_COLUMNS = [field.attname for field in Receipt._meta.concrete_fields]


def receipt_new(**columns: Any) -> Receipt:
    """An unsaved receipt from its columns' values (by attname, those left out None), built positionally, as
    Django builds the rows it reads: keyword arguments cost a metered call several times more, since each
    related object given is checked."""
    return Receipt(*[columns.get(name) for name in _COLUMNS])


def _body(receipt: Receipt, receipt_format: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "seq": receipt.pk,
        "version": receipt.version_id,
        "model_sha256": receipt.model_sha256,
        "input_sha256": receipt.input_sha256,
        "output_sha256": receipt.output_sha256,
        "price": receipt.price,
        "caller": ledger.account_name(user=receipt.caller_id),
        "issued_at": chain.format_timestamp(receipt.issued_at),
        "rows": receipt.rows,
    }
    if receipt_format != FORMAT_ROWS:  # format 1 bodies stay as every receipt before format 2 was
        body["format"] = receipt_format
    return body


def _body_json(body: dict[str, Any]) -> bytes:
    """RFC 8785 JSON of a receipt body (or of a body and its salt, its group leaf). Its values are whole numbers
    and ASCII text that needs no escape (hex, `user:<id>`, a timestamp), which orjson with sorted keys writes byte
    for byte as RFC 8785 does, at a tenth of the cost; the verifier writes it by the RFC (chain.jcs), so a
    difference would fail every receipt's check."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def receipt_sign(receipt: Receipt, *, receipt_format: int = FORMAT_ROWS) -> tuple[dict[str, Any], str, str]:
    """A numbered receipt's body, as signed, the signing key's id and the signature (hex)."""
    body = _body(receipt, receipt_format)
    key_id, signature = ledger.active_key_sign(_body_json(body))
    return body, key_id, signature.hex()


def receipts_sign_together(receipts: list[tuple[Receipt, int]]) -> None:
    """Sign numbered receipts (with their formats) that are written together: one signature of their group's
    Merkle root, each receipt keeping its audit path to it (`signing_group`), or, for one receipt, its own
    signature (see models_market/verify_receipt.py). Sets each receipt's body, key_id, signature and group."""
    if len(receipts) == 1:
        receipt, receipt_format = receipts[0]
        receipt.body, receipt.key_id, receipt.signature = receipt_sign(receipt, receipt_format=receipt_format)
        return
    bodies = [_body(receipt, receipt_format) for receipt, receipt_format in receipts]
    salts = [os.urandom(SALT_BYTES).hex() for _ in bodies]
    root, proofs = merkle.root_and_inclusion_proofs(
        [
            merkle.hash_leaf(_body_json({"body": body, "salt": salt}))
            for body, salt in zip(bodies, salts, strict=True)
        ]
    )
    size = len(bodies)
    key_id, signature = ledger.active_key_sign(group_statement(root, size))
    signature_hex = signature.hex()
    for index, ((receipt, _), body, salt, proof) in enumerate(
        zip(receipts, bodies, salts, proofs, strict=True)
    ):
        receipt.body, receipt.key_id, receipt.signature = body, key_id, signature_hex
        receipt.signing_group = {"index": index, "size": size, "salt": salt, "path": [h.hex() for h in proof]}


def leaf_bytes(receipt: Receipt) -> bytes:
    """The receipt's leaf in its settlement's Merkle tree: its body, key, signature and signing group (the
    offline verifier's own function, so both build the same tree)."""
    return receipt_leaf(receipt.body, receipt.key_id, receipt.signature, receipt.signing_group)


def settle_pending(*, limit: int) -> Settlement | None:
    """Settle up to `limit` unsettled receipts, oldest first, in one durable transaction: each call's price is
    paid from its caller's deposit by payment_shares, all in one `models_market.calls.settled` entry that
    carries the Merkle root of the receipts; their reservations are released. None when nothing was pending."""
    if limit < 1:
        raise DomainError("settle at least one receipt")
    with transaction.atomic(durable=True):
        # Locked, skipping those another settlement holds: two workers settle disjoint batches, never one twice.
        receipts = list(
            Receipt.objects.select_for_update(skip_locked=True)
            .filter(settlement__isnull=True)
            .order_by("pk")[:limit]
        )
        if not receipts:
            return None
        owed: dict[int, int] = defaultdict(int)  # by caller
        calls: dict[tuple[int, int, int], int] = defaultdict(int)  # (version, price, caller) -> calls
        for receipt in receipts:
            owed[receipt.caller_id] += receipt.price
            if receipt.price:
                calls[(receipt.version_id, receipt.price, receipt.caller_id)] += 1
        # Locked in primary-key order, as the calls lock them: a caller's deposit and reservation change together.
        meters = list(CallMeter.objects.select_for_update().filter(user_id__in=owed).order_by("pk"))
        versions = ModelVersion.objects.select_related("token").in_bulk({v for v, _, _ in calls})
        deltas: dict[str, int] = defaultdict(int)
        shares_of: dict[tuple[int, int], list[tuple[str, int]]] = {}
        for (version_id, price, caller_id), n in calls.items():
            if (version_id, price) not in shares_of:
                payer = ledger.account_name(user=caller_id)
                shares_of[version_id, price] = payment_shares(
                    version=versions[version_id], amount=price, payer=payer
                )
            deltas[ledger.account_name(deposit=caller_id)] -= price * n
            for account, part in shares_of[version_id, price]:
                deltas[account] += part * n
        tree = merkle.InMemoryTree([merkle.hash_leaf(leaf_bytes(r)) for r in receipts])
        total = sum(owed.values())
        payload = {
            "merkle_root": tree.root().hex(), "count": len(receipts), "first_receipt": receipts[0].pk,
            "last_receipt": receipts[-1].pk, "total": total,
        }  # fmt: skip
        postings = [{"account": a, "amount": d} for a, d in sorted(deltas.items()) if d]
        # What was earned is owed even to an owner deactivated since, rather than one stopping every settlement.
        payees_open(postings)
        if postings:
            entry = ledger.postings_post(
                kind=SETTLED_KIND, actor="system", postings=postings, payload=payload
            )
        else:  # calls under quota licences only: recorded, nothing to pay
            entry = ledger.entry_append(kind=SETTLED_KIND, actor="system", payload=payload)
        settlement = Settlement.objects.create(
            entry_seq=entry.seq, merkle_root=payload["merkle_root"], calls=len(receipts), total=total
        )
        for index, receipt in enumerate(receipts):
            receipt.settlement, receipt.leaf_index = settlement, index
        Receipt.objects.bulk_update(receipts, ["settlement", "leaf_index"])
        for meter in meters:
            meter.reserved -= owed[meter.user_id]
            meter.deposit -= owed[meter.user_id]
        CallMeter.objects.bulk_update(meters, ["reserved", "deposit"])
        # The calls made under perpetual and timed licences are counted here, not on every call (a quota
        # licence counts each call as it spends it).
        per_license: dict[int, int] = defaultdict(int)
        for receipt in receipts:
            per_license[receipt.license_id] += 1
        for license_id, n in per_license.items():
            ModelLicense.objects.filter(pk=license_id).exclude(kind=ModelLicense.Kind.QUOTA).update(
                calls_made=F("calls_made") + n
            )
    return settlement


def receipt_proof(*, receipt: Receipt) -> dict[str, Any] | None:
    """The receipt's inclusion proof in its settlement's Merkle tree, once settled (None before): the ledger
    entry that carries the root, the leaf's index, the tree's size and the audit path (hex)."""
    if receipt.settlement_id is None:
        return None
    settlement = receipt.settlement
    batch = Receipt.objects.filter(settlement=settlement).order_by("leaf_index")
    tree = merkle.InMemoryTree(
        [merkle.hash_leaf(leaf_bytes(r)) for r in batch.only("body", "key_id", "signature", "signing_group")]
    )
    return {
        "entry_seq": settlement.entry_seq,
        "leaf_index": receipt.leaf_index,
        "tree_size": tree.size,
        "root": settlement.merkle_root,
        "path": [h.hex() for h in tree.inclusion_proof(receipt.leaf_index)],
    }
