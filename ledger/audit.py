"""verify_ledger's checks: the offline verifier over the database's own export, then what only the database has."""

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ledger import merkle
from ledger.export import export_records
from ledger.models import Entry, Escrow, LedgerHead, MerkleNode
from ledger.verify import verify_export


@dataclass(frozen=True)
class Finding:
    ok: bool
    line: str
    seq: int | None = None


def _lines(records: Iterator[dict], on_entry: Callable[[int], None] | None) -> Iterator[str]:
    for record in records:
        if on_entry is not None and record["type"] == "entry":
            on_entry(record["seq"])
        yield json.dumps(record, ensure_ascii=False)


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


def audit(
    *, trusted_key: str | None = None, jobs: int = 1, on_entry: Callable[[int], None] | None = None
) -> Finding:
    """Re-verify the whole ledger from the stored fields; the first problem found, or OK."""
    report = verify_export(_lines(export_records(), on_entry), trusted_key=trusted_key, jobs=jobs)
    if not report.ok:
        return Finding(False, report.line(), report.seq)
    for problem in (_stored_tree_problem(report.tree), _escrow_problem()):
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
