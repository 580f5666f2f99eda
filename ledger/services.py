"""Every write to the ledger: appends, accounts and transfers, mints, contracts, checkpoints, keys, witnesses.

Functions that take `*` arguments and no `durable` transaction of their own (entry_append, transfer, mint,
escrow_*, split_pay) must run inside the caller's transaction, so that the business rows and the entry commit
together. The `*_request` functions are the outermost services the API and pages call: they open it.
"""

import json
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import BigIntegerField, Case, Value, When
from django.utils import timezone

from ledger import chain, merkle, notes
from ledger.models import (
    Account,
    Checkpoint,
    Cosignature,
    Entry,
    Escrow,
    LedgerHead,
    MerkleNode,
    SigningKey,
    Witness,
)
from platform_site.accounts.models import Organization, PublicKey, User
from platform_site.errors import Conflict, DomainError, NotFound, PermissionDenied
from platform_site.keys import load_or_create_ed25519

logger = logging.getLogger(__name__)

ISSUANCE = "issuance"
TREASURY = "treasury"


class InsufficientFunds(DomainError):
    code = "insufficient_funds"


class UnknownAccount(DomainError):
    code = "unknown_account"


# ---------------------------------------------------------------------------------------------------- keys


_private_keys: dict[str, Ed25519PrivateKey] = {}
_keys_lock = threading.Lock()


def _public_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def _retired_key_path(key_id: str) -> Path:
    path = Path(settings.LEDGER_KEY_FILE)
    return path.with_name(f"{path.name}.{key_id}.retired")


def _private_key_for(key_id: str) -> Ed25519PrivateKey:
    """The private key with this id: LEDGER_KEY_FILE holds the active one, `<file>.<id>.retired` older ones."""
    with _keys_lock:
        key = _private_keys.get(key_id)
        if key is None:
            retired = _retired_key_path(key_id)
            key = load_or_create_ed25519(retired if retired.exists() else settings.LEDGER_KEY_FILE)
            loaded_id = chain.key_id_for(settings.LEDGER_ORIGIN, _public_raw(key))
            _private_keys[loaded_id] = key
            if loaded_id != key_id:
                raise RuntimeError(
                    f"the ledger's active key is {key_id} but LEDGER_KEY_FILE holds {loaded_id}; "
                    "restore the key file or rotate keys with `manage.py rotate_ledger_key`"
                )
        return key


def _register_key(key: Ed25519PrivateKey, *, first_seq: int) -> SigningKey:
    raw = _public_raw(key)
    key_id = chain.key_id_for(settings.LEDGER_ORIGIN, raw)
    SigningKey.objects.filter(active=True).update(active=False)
    signing_key = SigningKey.objects.create(
        key_id=key_id,
        public_key=raw,
        verifier_key=chain.verifier_key(settings.LEDGER_ORIGIN, raw),
        first_seq=first_seq,
        active=True,
    )
    with _keys_lock:
        _private_keys[key_id] = key
    return signing_key


# ---------------------------------------------------------------------------------------------------- append


def _lock_head() -> LedgerHead:
    # Appends are serialized by this row lock: no fork, no repeated or skipped seq, across all processes.
    head = LedgerHead.objects.select_for_update().filter(pk=1).first()
    if head is None:  # made by migration 0002; only a flushed database (the tests) lacks it
        LedgerHead.objects.get_or_create(pk=1, defaults={"head_hash": chain.ZERO_HASH})
        head = LedgerHead.objects.select_for_update().get(pk=1)
    if not head.active_key_id:
        key = load_or_create_ed25519(settings.LEDGER_KEY_FILE)
        head.active_key_id = _register_key(key, first_seq=head.size).key_id
        head.save(update_fields=["active_key_id"])
    return head


def _require_transaction() -> None:
    if not connection.in_atomic_block:
        raise RuntimeError("ledger writes must run inside the caller's transaction.atomic()")


def _verify_actor_signature(
    *, actor: str, kind: str, payload: dict, actor_key_id: str, signature: bytes
) -> None:
    key = PublicKey.objects.filter(key_id=actor_key_id, revoked_at__isnull=True).first()
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
    _require_transaction()
    if "postings" in payload and balances is None:
        raise RuntimeError("entries that move tokens go through postings_post, which applies the balances")
    if (actor_key_id is None) != (actor_signature is None):
        raise DomainError("an actor signature needs its key id, and a key id its signature")
    if actor_key_id is not None:
        _verify_actor_signature(
            actor=actor, kind=kind, payload=payload, actor_key_id=actor_key_id, signature=actor_signature
        )
    head = _lock_head()
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
        signature=chain.sign(_private_key_for(head.active_key_id), entry_hash),
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


# ---------------------------------------------------------------------------------------------------- accounts


def account_name_for_user(user: User) -> str:
    return f"user:{user.pk}"


def account_name_for_org(org: Organization) -> str:
    return f"org:{org.pk}"


def _account_kind(name: str) -> str:
    kind, _, ident = name.partition(":")
    if name in (ISSUANCE, TREASURY):
        return name
    if (
        kind in (Account.Kind.USER, Account.Kind.ORG, Account.Kind.DAO, Account.Kind.ESCROW)
        and ident.isdigit()
    ):
        return kind
    raise UnknownAccount(
        f"{name!r} is not an account name (user:<id>, org:<id>, dao:<id>, escrow:<id>, treasury)"
    )


def account_open(*, name: str) -> Account:
    """The account with this name, created (empty) when its owner exists; UnknownAccount otherwise."""
    kind = _account_kind(name)
    account = Account.objects.filter(name=name).first()
    if account is not None:
        return account
    ident = name.partition(":")[2]
    exists = {
        Account.Kind.USER: lambda: User.objects.filter(pk=ident, is_active=True).exists(),
        Account.Kind.ORG: lambda: Organization.objects.filter(pk=ident).exists(),
    }.get(kind, lambda: kind in (ISSUANCE, TREASURY))
    if not exists():
        raise UnknownAccount(f"no account {name!r}")
    try:
        # A savepoint: losing the race to another creator must not abort the caller's transaction.
        with transaction.atomic():
            return Account.objects.create(name=name, kind=kind)
    except IntegrityError:
        return Account.objects.get(name=name)


def account_open_for_app(*, name: str, kind: str) -> Account:
    """For apps whose owners the ledger cannot look up (DAOs): open `dao:<id>` once the app has made the DAO."""
    if _account_kind(name) != kind:
        raise UnknownAccount(f"{name!r} is not a {kind} account")
    account, _ = Account.objects.get_or_create(name=name, defaults={"kind": kind})
    return account


def _lock_accounts(names: list[str]) -> dict[str, Account]:
    # Locked in primary-key order, so two transfers between the same accounts cannot deadlock.
    return {a.name: a for a in Account.objects.select_for_update().filter(name__in=names).order_by("pk")}


def _lock_and_check_postings(postings: list[dict[str, Any]]) -> dict[int, int]:
    """Lock the accounts the postings name and check they can pay; the new balance of each, by primary key."""
    names = sorted({p["account"] for p in postings})
    accounts = _lock_accounts(names)
    if len(accounts) < len(names):  # first use of an account: open it, then lock them all again
        for name in set(names) - accounts.keys():
            account_open(name=name)
        accounts = _lock_accounts(names)
    deltas: dict[str, int] = {}
    for posting in postings:
        deltas[posting["account"]] = deltas.get(posting["account"], 0) + posting["amount"]
    for name, delta in deltas.items():
        account = accounts[name]
        if account.kind != Account.Kind.ISSUANCE and account.balance + delta < 0:
            raise InsufficientFunds(
                f"{name} holds {format_amount(account.balance)}, which is less than {format_amount(-delta)}"
            )
    return {accounts[name].pk: accounts[name].balance + delta for name, delta in deltas.items() if delta}


def format_amount(minor: int) -> str:
    """Minor units as tokens with two decimals: 12345 → '123.45 tokens'."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole:,}.{cents:02d} tokens"


def postings_post(
    *,
    kind: str,
    actor: str,
    postings: list[dict[str, Any]],
    payload: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    actor_key_id: str | None = None,
    actor_signature: bytes | None = None,
) -> Entry:
    """Move tokens by double-entry postings and write one entry, inside the caller's transaction."""
    _require_transaction()
    try:
        chain.check_postings(postings)
    except ValueError as exc:
        raise DomainError(str(exc)) from exc
    balances = _lock_and_check_postings(postings)
    return entry_append(
        kind=kind,
        actor=actor,
        payload={**(payload or {}), "postings": postings},
        idempotency_key=idempotency_key,
        actor_key_id=actor_key_id,
        actor_signature=actor_signature,
        balances=balances,
    )


def _positive(amount: int) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise DomainError(f"the amount must be a positive whole number of minor units, not {amount!r}")
    return amount


def transfer(
    *,
    source: str,
    destination: str,
    amount: int,
    actor: str,
    memo: str = "",
    kind: str = "ledger.transfer",
    idempotency_key: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Entry:
    """Move `amount` from one account to another and write one entry (inside the caller's transaction)."""
    _positive(amount)
    if source == destination:
        raise DomainError("the source and destination are the same account")
    if source == ISSUANCE:
        raise PermissionDenied("tokens leave issuance only by a mint")
    payload = {**(extra or {}), **({"memo": memo} if memo else {})}
    return postings_post(
        kind=kind,
        actor=actor,
        payload=payload,
        postings=[{"account": source, "amount": -amount}, {"account": destination, "amount": amount}],
        idempotency_key=idempotency_key,
    )


def mint(
    *, destination: str, amount: int, actor: str, reason: str, idempotency_key: str | None = None
) -> Entry:
    """Create tokens: the only way in. Debits issuance, whose negative balance is the total supply."""
    _positive(amount)
    if not reason.strip():
        raise DomainError("say why the tokens are minted")
    return postings_post(
        kind="ledger.mint",
        actor=actor,
        payload={"reason": reason},
        postings=[{"account": ISSUANCE, "amount": -amount}, {"account": destination, "amount": amount}],
        idempotency_key=idempotency_key,
    )


@dataclass(frozen=True)
class Share:
    account: str
    basis_points: int


def split_amounts(amount: int, shares: Iterable[Share]) -> list[tuple[str, int]]:
    """Split by basis points, rounding each share down; the remainder (at most one unit per share) goes to the
    first share. Shares must add up to 10,000 basis points, so the parts always sum to exactly `amount`."""
    shares = list(shares)
    if not shares or sum(s.basis_points for s in shares) != 10_000:
        raise DomainError("the shares must add up to 10,000 basis points (100%)")
    if any(s.basis_points <= 0 for s in shares) or len({s.account for s in shares}) != len(shares):
        raise DomainError("each receiver appears once, with a positive share")
    parts = [(s.account, amount * s.basis_points // 10_000) for s in shares]
    remainder = amount - sum(p for _, p in parts)
    parts[0] = (parts[0][0], parts[0][1] + remainder)
    return parts


def split_pay(
    *, source: str, amount: int, shares: Iterable[Share], actor: str, kind: str = "ledger.split.paid",
    memo: str = "", idempotency_key: str | None = None,
) -> Entry:  # fmt: skip
    """Pay `amount` from `source` to several receivers by basis points, in one entry."""
    _positive(amount)
    parts = split_amounts(amount, shares)
    postings = [{"account": source, "amount": -amount}]
    postings += [{"account": account, "amount": part} for account, part in parts if part]
    payload = {"shares": [{"account": a, "amount": p} for a, p in parts], **({"memo": memo} if memo else {})}
    return postings_post(
        kind=kind, actor=actor, postings=postings, payload=payload, idempotency_key=idempotency_key
    )


# ---------------------------------------------------------------------------------------------------- escrow


def escrow_open(
    *, payer: str, payee: str, amount: int, actor: str, condition: str = "", deadline: datetime | None = None
) -> Escrow:
    """Move `amount` from the payer into a new escrow account, held for the payee."""
    _positive(amount)
    account_open(name=payee)  # an escrow for nobody could only ever be refunded
    escrow = Escrow.objects.create(
        payer=payer, payee=payee, amount=amount, condition=condition, deadline=deadline
    )
    Account.objects.create(name=escrow.account_name, kind=Account.Kind.ESCROW)
    entry = postings_post(
        kind="ledger.escrow.opened",
        actor=actor,
        payload={
            "escrow": escrow.pk,
            "payer": payer,
            "payee": payee,
            "amount": amount,
            "condition": condition,
            "deadline": chain.format_timestamp(deadline) if deadline else None,
        },
        postings=[{"account": payer, "amount": -amount}, {"account": escrow.account_name, "amount": amount}],
    )
    escrow.opened_seq = entry.seq
    escrow.save(update_fields=["opened_seq"])
    return escrow


def _escrow_close(escrow_id: int, *, pay: str, status: str, actor: str, reason: str) -> Escrow:
    # Locked: a release and a refund racing for the same escrow must not both pay out.
    escrow = Escrow.objects.select_for_update().get(pk=escrow_id)
    if escrow.status != Escrow.Status.OPEN:
        raise Conflict(f"the escrow is already {escrow.status}")
    to = escrow.payee if pay == "payee" else escrow.payer
    entry = postings_post(
        kind=f"ledger.escrow.{status}",
        actor=actor,
        payload={"escrow": escrow.pk, "reason": reason},
        postings=[
            {"account": escrow.account_name, "amount": -escrow.amount},
            {"account": to, "amount": escrow.amount},
        ],
    )
    escrow.status = status
    escrow.closed_seq = entry.seq
    escrow.save(update_fields=["status", "closed_seq"])
    return escrow


def escrow_release(*, escrow: Escrow, actor: str, reason: str = "condition met") -> Escrow:
    """Pay the held funds to the payee."""
    return _escrow_close(escrow.pk, pay="payee", status=Escrow.Status.RELEASED, actor=actor, reason=reason)


def escrow_refund(*, escrow: Escrow, actor: str, reason: str = "refunded") -> Escrow:
    """Return the held funds to the payer."""
    return _escrow_close(escrow.pk, pay="payer", status=Escrow.Status.REFUNDED, actor=actor, reason=reason)


def escrow_refund_expired() -> int:
    """Refund every open escrow whose deadline has passed; returns how many."""
    refunded = 0
    for escrow_id in Escrow.objects.filter(
        status=Escrow.Status.OPEN, deadline__lt=timezone.now()
    ).values_list("pk", flat=True):
        # One transaction per escrow: one failure must not undo the others.
        with transaction.atomic(durable=True):
            try:
                _escrow_close(escrow_id, pay="payer", status=Escrow.Status.REFUNDED, actor="system",
                              reason="deadline passed")  # fmt: skip
                refunded += 1
            except Conflict:
                pass
    return refunded


# ---------------------------------------------------------------------------------------------------- requests


def _idempotent(key: str | None, work) -> Entry:
    """Run `work` in its own durable transaction; a retried request with the same key gets the first result."""
    if key:
        existing = Entry.objects.filter(idempotency_key=key).first()
        if existing is not None:
            return existing
    try:
        with transaction.atomic(durable=True):
            return work()
    except IntegrityError:
        existing = Entry.objects.filter(idempotency_key=key).first() if key else None
        if existing is None:
            raise
        return existing


def transfer_request(
    *, user: User, destination: str, amount: int, memo: str = "", idempotency_key: str | None = None
) -> Entry:
    """A user's transfer from their own account."""
    key = f"user:{user.pk}:{idempotency_key}" if idempotency_key else None
    entry = _idempotent(
        key,
        lambda: transfer(
            source=account_name_for_user(user),
            destination=destination,
            amount=amount,
            actor=f"user:{user.pk}",
            memo=memo,
            idempotency_key=key,
        ),
    )
    expected = [
        {"account": account_name_for_user(user), "amount": -amount},
        {"account": destination, "amount": amount},
    ]
    if entry.kind != "ledger.transfer" or entry.payload.get("postings") != expected:
        raise Conflict("this idempotency key was used for a different request")
    return entry


def faucet_request(*, user: User) -> Entry:
    """The demo faucet: mints LEDGER_FAUCET_AMOUNT to the user, at most once a day."""
    amount = settings.LEDGER_FAUCET_AMOUNT
    if not amount:
        raise PermissionDenied("the faucet is closed on this site")
    day = timezone.now().date().isoformat()
    key = f"faucet:{user.pk}:{day}"
    if Entry.objects.filter(idempotency_key=key).exists():
        raise Conflict("you have used the faucet today; come back tomorrow")
    return _idempotent(
        key,
        lambda: mint(destination=account_name_for_user(user), amount=amount, actor=f"user:{user.pk}",
                     reason="demo faucet", idempotency_key=key),
    )  # fmt: skip


def mint_request(*, staff: User, destination: str, amount: int, reason: str) -> Entry:
    """An administrator's grant of new tokens."""
    if not staff.is_staff:
        raise PermissionDenied("only staff may mint")
    with transaction.atomic(durable=True):
        return mint(destination=destination, amount=amount, actor=f"user:{staff.pk}", reason=reason)


# ---------------------------------------------------------------------------------------------------- checkpoints


def _frontier_root(frontier: list) -> bytes:
    if not frontier:
        return merkle.EMPTY_ROOT
    hashes = [bytes.fromhex(h) for _level, h in frontier]
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = merkle.hash_children(left, root)
    return root


def checkpoint_create() -> Checkpoint | None:
    """Sign a checkpoint of the current tree, unless the latest already covers it (None for an empty log)."""
    with transaction.atomic(durable=True):
        head = _lock_head()
        if head.size == 0:
            return None
        existing = Checkpoint.objects.filter(tree_size=head.size).first()
        if existing is not None:
            return existing
        root = _frontier_root(head.frontier)
        body = notes.checkpoint_body(settings.LEDGER_ORIGIN, head.size, root)
        # The key that signed the last entry covered signs the checkpoint.
        key_id = Entry.objects.values_list("key_id", flat=True).get(seq=head.size - 1)
        note = notes.sign_note(body, settings.LEDGER_ORIGIN, _private_key_for(key_id))
        return Checkpoint.objects.create(tree_size=head.size, root_hash=root, note=note, key_id=key_id)


def signing_key_rotate() -> SigningKey:
    """Make a new platform key: announced by an entry signed with the old one, then used for all later entries.

    The new private key replaces LEDGER_KEY_FILE; the old one is kept beside it as `<file>.<key_id>.retired`.
    """
    path = Path(settings.LEDGER_KEY_FILE)
    with transaction.atomic(durable=True):
        head = _lock_head()
        old_id = head.active_key_id
        old_key = _private_key_for(old_id)
        new_key = Ed25519PrivateKey.generate()
        raw = _public_raw(new_key)
        new_id = chain.key_id_for(settings.LEDGER_ORIGIN, raw)
        entry = entry_append(
            kind="ledger.key.rotated",
            actor="system",
            payload={
                "new_key_id": new_id,
                "new_public_key": chain.b64encode(raw),
                "new_verifier_key": chain.verifier_key(settings.LEDGER_ORIGIN, raw),
            },
        )
        signing_key = _register_key(new_key, first_seq=entry.seq + 1)
        LedgerHead.objects.filter(pk=1).update(active_key_id=new_id)
        # Both keys are on disk before the commit; the new one takes LEDGER_KEY_FILE's place only after it.
        _write_private_key(_retired_key_path(old_id), old_key)
        staged = path.with_name(path.name + ".new")
        _write_private_key(staged, new_key)
        transaction.on_commit(lambda: os.replace(staged, path))
    return signing_key


def _write_private_key(target: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


# ---------------------------------------------------------------------------------------------------- witnesses


def witness_register(*, organization: Organization, actor: User, name: str, verifier_key: str) -> Witness:
    """Register an organization's witness key (C2SP cosignature/v1 verifier key); owners only."""
    from platform_site.accounts.models import Membership

    if not Membership.objects.filter(
        organization=organization, user=actor, role=Membership.Role.OWNER
    ).exists():
        raise PermissionDenied("only an owner of the organization may register its witness")
    try:
        key_name, key_id, public_key = chain.parse_verifier_key(
            verifier_key, key_type=notes.COSIGNATURE_KEY_TYPE
        )
    except ValueError as exc:
        raise DomainError(f"not a cosignature/v1 verifier key: {exc}") from exc
    if key_name != name:
        raise DomainError(f"the verifier key is for {key_name!r}, not {name!r}")
    if Witness.objects.filter(name=name).exists():
        raise Conflict(f"a witness named {name!r} is registered already")
    return Witness.objects.create(
        organization=organization, name=name, public_key=public_key, key_id=key_id, verifier_key=verifier_key
    )


def cosignature_add(*, tree_size: int, cosignature_line: str) -> Cosignature:
    """Store a witness's cosignature of our checkpoint at `tree_size`, after checking it."""
    checkpoint = Checkpoint.objects.filter(tree_size=tree_size).first()
    if checkpoint is None:
        raise NotFound(f"no checkpoint at tree size {tree_size}")
    line = cosignature_line.strip() + "\n"
    if not line.startswith("— ") or "\n" in line[:-1]:
        raise DomainError("a cosignature is one line: '— <witness name> <base64>'")
    name = line.removeprefix("— ").split(" ", 1)[0]
    witness = Witness.objects.filter(name=name, active=True).first()
    if witness is None:
        raise PermissionDenied(f"{name!r} is not a registered witness")
    try:
        timestamp = notes.verify_cosignature(
            notes.add_signature_line(checkpoint.note, line), witness.verifier_key
        )
    except ValueError as exc:
        raise DomainError(f"malformed cosignature: {exc}") from exc
    if timestamp is None:
        raise DomainError("the cosignature does not verify against this checkpoint and the witness's key")
    with transaction.atomic(durable=True):
        cosignature, created = Cosignature.objects.get_or_create(
            checkpoint=checkpoint, witness=witness,
            defaults={"timestamp": timestamp, "line": line},
        )  # fmt: skip
        if not created and cosignature.line != line:
            raise Conflict("this witness has cosigned this checkpoint already")
        Witness.objects.filter(pk=witness.pk, last_tree_size__lt=tree_size).update(last_tree_size=tree_size)
    return cosignature


def content_hash(value: Any) -> str:
    """Hex SHA-256 of a JSON value's RFC 8785 bytes: how apps fingerprint terms and results. Unlike entries,
    the value may hold floats (scores, centroids); only the hash goes on the ledger."""
    import hashlib

    import rfc8785

    return hashlib.sha256(rfc8785.dumps(value)).hexdigest()
