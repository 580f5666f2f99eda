"""Verifying the stored ledger: all of it (verify_ledger), and one entry at a time (the entry page)."""

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Q, Sum

from ledger import chain, merkle, notes, selectors
from ledger.export import export_records
from ledger.models import Account, Checkpoint, Entry, Escrow, LedgerHead, MerkleNode, SigningKey
from ledger.names import ISSUANCE
from ledger.verify import verify_export
from platform_site.accounts import selectors as accounts_selectors
from platform_site.errors import DomainError


@dataclass(frozen=True)
class Finding:
    ok: bool
    line: str
    seq: int | None = None


def _records(records: Iterator[dict], on_entry: Callable[[int], None] | None) -> Iterator[dict]:
    for record in records:
        if on_entry is not None and record["type"] == "entry":
            on_entry(record["seq"])
        yield record


def _stored_tree_problem(tree: merkle.InMemoryTree) -> str | None:
    """Stored leaf hashes and Merkle nodes must be those the verified entries give: proofs are served from them."""
    for seq, stored in (
        Entry.objects.order_by("seq").values_list("seq", "leaf_hash").iterator(chunk_size=10_000)
    ):
        if seq >= tree.size or tree.node(0, seq) != bytes(stored):
            return f"FAIL seq={seq}: the stored leaf hash is not the hash of the entry"
    nodes = 0
    for level, index, stored in MerkleNode.objects.values_list("level", "index", "hash").iterator(
        chunk_size=10_000
    ):
        nodes += 1
        if (index + 1) << level > tree.size or tree.node(level, index) != bytes(stored):
            return f"FAIL seq={index << level}: the stored Merkle node {level}/{index} is wrong"
    expected = sum(tree.size >> level for level in range(1, tree.size.bit_length()))
    if nodes != expected:
        return f"FAIL merkle: {nodes} stored nodes where {expected} complete subtrees exist"
    head = LedgerHead.objects.filter(pk=1).first()
    if head is not None and head.size != tree.size:
        return f"FAIL seq={min(head.size, tree.size)}: the head says {head.size} entries, the journal has {tree.size}"
    return None


def _escrow_problem() -> str | None:
    """Each escrow row must be what its entries made it."""
    replayed: dict[int, dict] = {}
    for entry in Entry.objects.filter(kind__startswith="ledger.escrow.").order_by("seq"):
        escrow_id = entry.payload.get("escrow")
        state = entry.kind.rsplit(".", 1)[1]
        if state == "opened":
            replayed[escrow_id] = {"status": "open", "amount": entry.payload["amount"],
                                   "payer": entry.payload["payer"], "payee": entry.payload["payee"]}  # fmt: skip
        elif escrow_id in replayed and replayed[escrow_id]["status"] == "open":
            replayed[escrow_id]["status"] = state
        else:
            return f"FAIL seq={entry.seq}: escrow {escrow_id} is {state} but was not open"
    for escrow in Escrow.objects.all():
        want = replayed.pop(escrow.pk, None)
        have = {
            "status": escrow.status,
            "amount": escrow.amount,
            "payer": escrow.payer,
            "payee": escrow.payee,
        }
        if want != have:
            return f"FAIL escrow={escrow.pk}: the table says {have}, the journal says {want}"
    if replayed:
        return f"FAIL escrow={next(iter(replayed))}: the journal has it, the table does not"
    return None


def _supply_problem(minted: int) -> str | None:
    """The invariant, on the stored accounts: those outside issuance hold exactly what the journal's mints
    created, and issuance holds minus that."""
    totals = Account.objects.aggregate(
        outside=Sum("balance", filter=~Q(name=ISSUANCE), default=0),
        issuance=Sum("balance", filter=Q(name=ISSUANCE), default=0),
    )
    if totals["outside"] != minted or totals["issuance"] != -minted:
        return (
            f"FAIL supply: the accounts outside {ISSUANCE} hold {totals['outside']} and {ISSUANCE} "
            f"{totals['issuance']}, but the journal's mints created {minted}"
        )
    return None


def audit(
    *,
    trusted_key: str | None = None,
    jobs: int = 1,
    since: int = 0,
    on_entry: Callable[[int], None] | None = None,
) -> Finding:
    """Re-verify the whole ledger from the stored fields; the first problem found, or OK.

    `since` skips re-checking signatures before that seq; everything is still re-hashed, linked and replayed."""
    report = verify_export(
        _records(export_records(), on_entry), trusted_key=trusted_key, jobs=jobs, since=since
    )
    if not report.ok:
        return Finding(False, report.line(), report.seq)
    for problem in (_stored_tree_problem(report.tree), _escrow_problem(), _supply_problem(report.minted)):
        if problem is not None:
            return Finding(False, problem)
    return Finding(True, report.line())


def progress_printer(total: int, stream=sys.stderr) -> Callable[[int], None]:
    """A one-line progress bar for long runs (only when the stream is a terminal)."""
    if not stream.isatty() or total < 10_000:
        return lambda seq: None
    step = max(total // 100, 1)

    def show(seq: int) -> None:
        if seq % step == 0 or seq == total - 1:
            done = (seq + 1) / total
            stream.write(f"\rreading [{'#' * int(done * 40):<40}] {seq + 1}/{total}")
            if seq == total - 1:
                stream.write("\n")

    return show


# ---------------------------------------------------------------------------------------------------- one entry
# What the entry page shows: every check an outsider would make of one entry, against the stored rows.


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
    key = accounts_selectors.public_key_get_by_key_id(key_id=entry.actor_key_id)
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
