"""The ledger's pages: the live explorer, one entry with its server-side verification, and the demo faucet."""

import base64
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from ledger import chain, merkle, notes, selectors, services
from ledger.forms import EntryFilterForm
from ledger.models import Checkpoint, Entry, SigningKey
from platform_site.accounts.models import PublicKey
from platform_site.errors import DomainError

PAGE_SIZE = 50
# The columns a list row needs: signatures and the leaf hash stay in the database.
LIST_FIELDS = ("seq", "kind", "actor", "created_at", "entry_hash", "payload")


# ---------------------------------------------------------------------------------------------------- summaries


def _account_names(names: list[str]) -> str:
    return ", ".join(names[:2]) + (f" +{len(names) - 2}" if len(names) > 2 else "")


def amount_summary(payload: Any) -> str:
    """One line for an entry's postings: '1,000.00 tokens: issuance → user:3' ('' when it moves no tokens)."""
    postings = payload.get("postings") if isinstance(payload, dict) else None
    if not postings:
        return ""
    try:
        moved = sum(p["amount"] for p in postings if p["amount"] > 0)
        debits = [p["account"] for p in postings if p["amount"] < 0]
        credits = [p["account"] for p in postings if p["amount"] > 0]
    except (KeyError, TypeError):
        # A payload changed behind the ledger's back may hold anything; its entry page says what is wrong.
        return "malformed postings"
    return f"{services.format_amount(moved)}: {_account_names(debits)} → {_account_names(credits)}"


def entry_summary(entry: Entry) -> dict[str, Any]:
    """A list row, for the explorer's table and its websocket (the same keys in both)."""
    entry_hash = bytes(entry.entry_hash).hex()
    return {
        "seq": entry.seq,
        "kind": entry.kind,
        "actor": entry.actor,
        "created_at": chain.format_timestamp(entry.created_at),
        "created": entry.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        "entry_hash": entry_hash,
        "short_hash": entry_hash[:12],
        "amount": amount_summary(entry.payload),
        "url": reverse("ledger:entry", args=[entry.seq]),
    }


# ---------------------------------------------------------------------------------------------------- explorer


class _LedgerPaginator(Paginator):
    """Counts with the head's size when the list is unfiltered: entries are never deleted, and COUNT(*) over a
    long journal is a full scan on PostgreSQL."""

    def __init__(self, *args, known_count: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._known_count = known_count

    @cached_property
    def count(self) -> int:
        return self._known_count if self._known_count is not None else super().count


def _header() -> dict[str, Any]:
    return {"size": selectors.ledger_size(), "checkpoint": selectors.checkpoint_latest()}


@login_required
def index(request: HttpRequest) -> HttpResponse:
    form = EntryFilterForm(request.GET)
    filters: dict[str, Any] = {}
    if form.is_valid():
        filters = form.filters()
    else:
        for error in [e for errors in form.errors.values() for e in errors]:
            messages.error(request, f"{error} The filter was ignored.")
    header = _header()
    entries = selectors.entry_list(**filters).only(*LIST_FIELDS)
    paginator = _LedgerPaginator(entries, PAGE_SIZE, known_count=None if filters else header["size"])
    page = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        **header,
        "form": form,
        "filters": filters,
        "page": page,
        "rows": [entry_summary(entry) for entry in page],
        "query": query.urlencode(),
        # New entries go on top: only the first page shows them as they come.
        "live": page.number == 1,
        "top_seq": page[0].seq if page.object_list else -1,
    }
    return render(request, "ledger/index.html", context)


# ---------------------------------------------------------------------------------------------------- one entry


@dataclass
class Check:
    name: str
    ok: bool | None  # None: nothing to check (no actor signature) or not yet (no checkpoint covers the entry)
    detail: str
    label: str = ""

    def __post_init__(self) -> None:
        self.label = self.label or {True: "valid", False: "invalid", None: "pending"}[self.ok]


@dataclass
class Verification:
    checks: list[Check] = field(default_factory=list)
    leaf_hash: bytes | None = None
    checkpoint: Checkpoint | None = None
    proof: list[bytes] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return all(check.ok is not False for check in self.checks)

    @property
    def reason(self) -> str:
        return next((f"{c.name}: {c.detail}" for c in self.checks if c.ok is False), "")

    def add(self, name: str, ok: bool | None, detail: str, label: str = "") -> None:
        self.checks.append(Check(name, ok, detail, label))


def _expected_key_id(seq: int, keys: list[SigningKey]) -> str | None:
    """The platform key that must sign entry `seq`: the last one whose first entry is at or before it."""
    current = None
    for key in keys:
        if key.first_seq <= seq:
            current = key.key_id
    return current


def _verify_checkpoint(checkpoint: Checkpoint, keys: dict[str, SigningKey]) -> str:
    """'' when the checkpoint's note is signed by its platform key and states its size and root; else why not."""
    key = keys.get(checkpoint.key_id)
    if key is None:
        return f"the checkpoint is signed by an unknown key {checkpoint.key_id}"
    if not notes.verify_note(checkpoint.note, key.verifier_key):
        return f"the checkpoint's note does not carry a valid signature by {checkpoint.key_id}"
    try:
        origin, size, root = notes.parse_checkpoint(notes.parse_note(checkpoint.note)[0])
    except ValueError as exc:
        return f"the checkpoint's note is malformed: {exc}"
    if (origin, size, root) != (settings.LEDGER_ORIGIN, checkpoint.tree_size, bytes(checkpoint.root_hash)):
        return "the checkpoint's note does not state the stored origin, size and root"
    return ""


def verify_entry(entry: Entry) -> Verification:
    """Recompute everything an outsider would check about one entry (FORMAT.md), against the stored rows."""
    result = Verification()
    try:
        canonical = chain.canonical_bytes(
            seq=entry.seq,
            kind=entry.kind,
            actor=entry.actor,
            payload=entry.payload,
            created_at=chain.format_timestamp(entry.created_at),
            key_id=entry.key_id,
            actor_key_id=entry.actor_key_id,
        )
    except (ValueError, TypeError) as exc:
        result.add("canonical bytes", False, f"the entry cannot be canonicalized: {exc}")
        return result
    prev_hash, stored_hash = bytes(entry.prev_hash), bytes(entry.entry_hash)
    computed = chain.entry_hash(prev_hash, canonical)
    result.leaf_hash = chain.leaf_hash(canonical)
    if computed == stored_hash:
        result.add("entry hash", True, "SHA-256(prev_hash ‖ canonical bytes) equals the stored hash")
    else:
        result.add(
            "entry hash", False, f"the content hashes to {computed.hex()}, not the stored {stored_hash.hex()}"
        )
    if result.leaf_hash == bytes(entry.leaf_hash):
        result.add("leaf hash", True, "SHA-256(0x00 ‖ canonical bytes) equals the stored leaf hash")
    else:
        result.add("leaf hash", False, "the stored leaf hash is not the hash of the entry's canonical bytes")

    if entry.seq == 0:
        expected_prev: bytes | None = chain.ZERO_HASH
    else:
        row = Entry.objects.filter(seq=entry.seq - 1).values_list("entry_hash", flat=True).first()
        expected_prev = bytes(row) if row is not None else None
    if expected_prev is None:
        result.add("chain link", False, f"entry {entry.seq - 1} is missing")
    elif prev_hash == expected_prev:
        what = "32 zero bytes (the first entry)" if entry.seq == 0 else f"the hash of entry {entry.seq - 1}"
        result.add("chain link", True, f"prev_hash is {what}")
    else:
        result.add("chain link", False, f"prev_hash is not the hash of entry {entry.seq - 1}")

    keys = list(selectors.signing_key_list())
    keys_by_id = {key.key_id: key for key in keys}
    expected_key = _expected_key_id(entry.seq, keys)
    signing_key = keys_by_id.get(entry.key_id)
    if signing_key is None:
        result.add("platform signature", False, f"no platform key {entry.key_id}")
    elif expected_key != entry.key_id:
        result.add(
            "platform signature",
            False,
            f"entry {entry.seq} must be signed by {expected_key}, not {entry.key_id}",
        )
    elif chain.verify_signature(bytes(signing_key.public_key), bytes(entry.signature), stored_hash):
        result.add("platform signature", True, f"valid Ed25519 signature of the entry hash by {entry.key_id}")
    else:
        result.add("platform signature", False, f"the signature is not valid under key {entry.key_id}")

    _verify_actor(entry, result)
    _verify_inclusion(entry, result, keys_by_id)
    return result


def _verify_actor(entry: Entry, result: Verification) -> None:
    name = "actor signature"
    if entry.actor_key_id is None:
        if entry.actor_signature is not None:
            result.add(name, False, "an actor signature without an actor key id")
        else:
            result.add(
                name, None, "not signed by the actor (the platform's signature vouches for it)", "none"
            )
        return
    key = PublicKey.objects.filter(key_id=entry.actor_key_id).first()
    if key is None:
        result.add(name, False, f"no registered key {entry.actor_key_id}")
    elif key.owner_label != entry.actor:
        result.add(
            name, False, f"the key {entry.actor_key_id} belongs to {key.owner_label}, not {entry.actor}"
        )
    elif entry.actor_signature is None:
        result.add(name, False, "the entry names an actor key but carries no actor signature")
    else:
        try:
            statement = chain.actor_statement(actor=entry.actor, kind=entry.kind, payload=entry.payload)
        except ValueError as exc:
            result.add(name, False, f"the statement cannot be canonicalized: {exc}")
            return
        if chain.verify_signature(bytes(key.raw), bytes(entry.actor_signature), statement):
            result.add(name, True, f"valid Ed25519 signature by {entry.actor}'s key {entry.actor_key_id}")
        else:
            result.add(
                name, False, f"the signature is not valid under {entry.actor}'s key {entry.actor_key_id}"
            )


def _verify_inclusion(entry: Entry, result: Verification, keys: dict[str, SigningKey]) -> None:
    name = "inclusion proof"
    checkpoint = selectors.checkpoint_latest()
    if checkpoint is None or entry.seq >= checkpoint.tree_size:
        result.add(name, None, "not yet in a checkpoint")
        return
    result.checkpoint = checkpoint
    problem = _verify_checkpoint(checkpoint, keys)
    if problem:
        result.add(name, False, problem)
        return
    try:
        proof = selectors.inclusion_proof(seq=entry.seq, tree_size=checkpoint.tree_size)
    except (DomainError, RuntimeError) as exc:
        result.add(name, False, f"no proof: {exc}")
        return
    result.proof = proof.proof
    if merkle.verify_inclusion(
        entry.seq, checkpoint.tree_size, result.leaf_hash, proof.proof, bytes(checkpoint.root_hash)
    ):
        detail = f"the entry is leaf {entry.seq} of the signed checkpoint of {checkpoint.tree_size} entries"
        result.add(name, True, detail)
    else:
        result.add(
            name, False, f"the entry's leaf does not lead to the root of checkpoint {checkpoint.tree_size}"
        )


def _b64(data: bytes | memoryview | None) -> str:
    return base64.b64encode(bytes(data)).decode() if data is not None else ""


def _postings(payload: Any) -> list[dict[str, Any]]:
    postings = payload.get("postings") if isinstance(payload, dict) else None
    if not isinstance(postings, list):
        return []
    rows = []
    for posting in postings:
        amount = posting.get("amount") if isinstance(posting, dict) else None
        ok = isinstance(amount, int) and not isinstance(amount, bool)
        rows.append(
            {
                "account": posting.get("account", "?") if isinstance(posting, dict) else "?",
                "amount": services.format_amount(amount) if ok else repr(amount),
                "credit": ok and amount > 0,
            }
        )
    return rows


@login_required
def entry_detail(request: HttpRequest, seq: int) -> HttpResponse:
    entry = selectors.entry_get(seq=seq)
    verification = verify_entry(entry)
    context = {
        "entry": entry,
        "summary": entry_summary(entry),
        "payload_json": json.dumps(entry.payload, indent=2, ensure_ascii=False, sort_keys=True),
        "postings": _postings(entry.payload),
        "hashes": {
            "prev_hash": bytes(entry.prev_hash).hex(),
            "entry_hash": bytes(entry.entry_hash).hex(),
            "leaf_hash": bytes(entry.leaf_hash).hex(),
        },
        "signature": _b64(entry.signature),
        "actor_signature": _b64(entry.actor_signature),
        "verification": verification,
        "proof_hex": [h.hex() for h in verification.proof],
        "checkpoint_root": bytes(verification.checkpoint.root_hash).hex() if verification.checkpoint else "",
        "previous_seq": seq - 1 if seq > 0 else None,
        "next_seq": seq + 1 if seq + 1 < selectors.ledger_size() else None,
    }
    return render(request, "ledger/entry.html", context)


# ---------------------------------------------------------------------------------------------------- faucet


@login_required
@require_POST
def faucet(request: HttpRequest) -> HttpResponse:
    try:
        entry = services.faucet_request(user=request.user)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        amount = sum(p["amount"] for p in entry.payload["postings"] if p["amount"] > 0)
        messages.success(
            request, f"{services.format_amount(amount)} added to your wallet (entry #{entry.seq})."
        )
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("accounts:profile")
    return redirect(target)
