"""The journal: one signed, hash-chained entry per state change, appended under the head lock."""

import hashlib
import json
import logging
import time
from typing import Any

import rfc8785
from django.conf import settings
from django.db import connection, transaction
from django.db.models import BigIntegerField, Case, Value, When
from django.utils import timezone

from ledger import chain, merkle
from ledger.models import Account, Entry, LedgerHead, MerkleNode, SigningKey
from ledger.services.keys import private_key_for, register_key
from platform_site.accounts import selectors as accounts_selectors
from platform_site.errors import DomainError, PermissionDenied
from platform_site.keys import load_or_create_ed25519

logger = logging.getLogger(__name__)


def lock_head() -> LedgerHead:
    # Appends are serialized by this row lock: no fork, no repeated or skipped seq, across all processes.
    head = LedgerHead.objects.select_for_update().filter(pk=1).first()
    if head is None:  # made by migration 0002; only a flushed database (the tests) lacks it
        LedgerHead.objects.get_or_create(pk=1, defaults={"head_hash": chain.ZERO_HASH})
        head = LedgerHead.objects.select_for_update().get(pk=1)
    if not head.active_key_id:
        key = load_or_create_ed25519(settings.LEDGER_KEY_FILE)
        head.active_key_id = register_key(key, first_seq=head.size).key_id
        head.save(update_fields=["active_key_id"])
    return head


def active_key_sign(message: bytes) -> tuple[str, bytes]:
    """(key id, Ed25519 signature) of `message` by the platform's active ledger key: for the signed records that
    apps issue beside the journal (a metered call's receipt). A message is never 32 bytes, the length of the
    entry hashes that the same key signs, so a receipt's signature cannot pass for an entry's."""
    if len(message) == len(chain.ZERO_HASH):
        raise ValueError("a 32-byte message could be taken for an entry hash")
    global _active_key
    key_id, until = _active_key
    if time.monotonic() >= until:
        key_id = SigningKey.objects.filter(active=True).values_list("key_id", flat=True).first()
        if key_id is None:  # a fresh ledger: the head lock makes its first key
            with transaction.atomic():
                key_id = lock_head().active_key_id
        _active_key = (key_id, time.monotonic() + ACTIVE_KEY_SECONDS)
    return key_id, chain.sign(private_key_for(key_id), message)


def active_key_forget() -> None:
    """Read the active key again on the next `active_key_sign` (after a rotation in this process)."""
    global _active_key
    _active_key = ("", 0.0)


# The active key's id, as active_key_sign last read it, and until when (time.monotonic()) it is trusted: a
# record signed for a few seconds after a rotation (in another process) carries the retired key, which every
# export still lists, so it still verifies.
ACTIVE_KEY_SECONDS = 5.0
_active_key: tuple[str, float] = ("", 0.0)


def require_transaction() -> None:
    if not connection.in_atomic_block:
        raise RuntimeError("ledger writes must run inside the caller's transaction.atomic()")


def _verify_actor_signature(
    *, actor: str, kind: str, payload: dict, actor_key_id: str, signature: bytes
) -> None:
    key = accounts_selectors.public_key_get_by_key_id(key_id=actor_key_id, active_only=True)
    if key is None:
        raise DomainError(f"the signing key {actor_key_id} is unknown or revoked")
    if key.owner_label != actor:
        raise PermissionDenied(f"the key {actor_key_id} does not belong to {actor}")
    if not chain.verify_signature(
        bytes(key.raw), signature, chain.actor_statement(actor=actor, kind=kind, payload=payload)
    ):
        raise DomainError("the actor's signature does not match the statement")


def entry_append(
    *,
    kind: str,
    actor: str,
    payload: dict[str, Any],
    actor_key_id: str | None = None,
    actor_signature: bytes | None = None,
    idempotency_key: str | None = None,
    balances: dict[int, int] | None = None,
) -> Entry:
    """Append one signed entry inside the caller's transaction.

    `balances` are the new balances (by account primary key) that the entry's postings make, for accounts the
    caller has locked and checked; they are written with the entry."""
    require_transaction()
    if "postings" in payload and balances is None:
        raise RuntimeError("entries that move tokens go through postings_post, which applies the balances")
    if (actor_key_id is None) != (actor_signature is None):
        raise DomainError("an actor signature needs its key id, and a key id its signature")
    if actor_key_id is not None:
        _verify_actor_signature(
            actor=actor, kind=kind, payload=payload, actor_key_id=actor_key_id, signature=actor_signature
        )
    head = lock_head()
    seq = head.size
    prev_hash = bytes(head.head_hash)
    created_at = timezone.now()
    canonical = chain.canonical_bytes(
        seq=seq,
        kind=kind,
        actor=actor,
        payload=payload,
        created_at=chain.format_timestamp(created_at),
        key_id=head.active_key_id,
        actor_key_id=actor_key_id,
    )
    entry_hash = chain.entry_hash(prev_hash, canonical)
    leaf_hash = chain.leaf_hash(canonical)
    entry = Entry(
        seq=seq,
        kind=kind,
        actor=actor,
        payload=payload,
        created_at=created_at,
        key_id=head.active_key_id,
        actor_key_id=actor_key_id,
        actor_signature=actor_signature,
        prev_hash=prev_hash,
        entry_hash=entry_hash,
        leaf_hash=leaf_hash,
        signature=chain.sign(private_key_for(head.active_key_id), entry_hash),
        idempotency_key=idempotency_key,
    )
    frontier = {level: bytes.fromhex(h) for level, h in head.frontier}
    completed = merkle.nodes_completed_by_append(seq, leaf_hash, lambda level, _index: frontier[level])
    top_level, _top_index, top_hash = completed[-1]
    for level, _index, _hash in completed[:-1]:
        frontier.pop(level, None)
    frontier[top_level] = top_hash
    head.size = seq + 1
    head.head_hash = entry_hash
    head.frontier = [[level, frontier[level].hex()] for level in sorted(frontier, reverse=True)]
    # Level 0 is the entry's own leaf_hash; only inner nodes get rows.
    nodes = [MerkleNode(level=lv, index=ix, hash=h) for lv, ix, h in completed[1:]]
    _write_append(entry, nodes, head, balances or {})
    every = settings.LEDGER_CHECKPOINT_EVERY
    if every and head.size % every == 0:
        transaction.on_commit(_dispatch_checkpoint)
    transaction.on_commit(lambda: _push_entry(seq))
    return entry


def _write_append(entry: Entry, nodes: list[MerkleNode], head: LedgerHead, balances: dict[int, int]) -> None:
    """Store the entry, its new Merkle nodes, the new head and the new balances: in one statement on
    PostgreSQL, where round trips are most of an append's cost."""
    if connection.vendor != "postgresql":
        entry.save(force_insert=True)
        MerkleNode.objects.bulk_create(nodes)
        head.save(update_fields=["size", "head_hash", "frontier"])
        Account.objects.filter(pk__in=balances).update(
            balance=Case(
                *(When(pk=pk, then=Value(b, output_field=BigIntegerField())) for pk, b in balances.items())
            )
        )
        return
    e, n, h, a = (m._meta.db_table for m in (Entry, MerkleNode, LedgerHead, Account))
    sql = f"""
        WITH new_entry AS (
            INSERT INTO {e} (seq, kind, actor, payload, created_at, key_id, actor_key_id, actor_signature,
                             prev_hash, entry_hash, leaf_hash, signature, idempotency_key)
            VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
        ), new_nodes AS (
            INSERT INTO {n} (level, "index", hash)
            SELECT * FROM unnest(%s::smallint[], %s::bigint[], %s::bytea[])
        ), new_head AS (
            UPDATE {h} SET size = %s, head_hash = %s, frontier = %s::jsonb WHERE id = %s
        ), new_balances AS (
            UPDATE {a} SET balance = b.balance
            FROM unnest(%s::bigint[], %s::bigint[]) AS b(id, balance) WHERE {a}.id = b.id
        )
        SELECT id FROM new_entry
    """  # noqa: S608  (table names are our models'; every value is a parameter)
    params = [
        entry.seq, entry.kind, entry.actor, json.dumps(entry.payload), entry.created_at, entry.key_id,
        entry.actor_key_id, entry.actor_signature, entry.prev_hash, entry.entry_hash, entry.leaf_hash,
        entry.signature, entry.idempotency_key,
        [node.level for node in nodes], [node.index for node in nodes], [node.hash for node in nodes],
        head.size, head.head_hash, json.dumps(head.frontier), head.pk,
        list(balances), list(balances.values()),
    ]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        entry.pk = cursor.fetchone()[0]
    entry._state.adding = False
    entry._state.db = connection.alias


def _dispatch_checkpoint() -> None:
    from ledger.tasks import ledger_checkpoint

    try:
        ledger_checkpoint.apply_async(queue="default")
    except Exception:
        logger.warning("could not queue a checkpoint; beat will make one", exc_info=True)


def _push_entry(seq: int) -> None:
    from platform_site import realtime

    realtime.group_send("ledger.entries", {"type": "ledger.entry", "seq": seq})


def content_hash(value: Any) -> str:
    """Hex SHA-256 of a JSON value's RFC 8785 bytes: how apps fingerprint terms and results. Unlike entries,
    the value may hold floats (scores, centroids); only the hash goes on the ledger."""
    return hashlib.sha256(rfc8785.dumps(value)).hexdigest()
