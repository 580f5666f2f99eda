"""The ledger as export records (FORMAT.md, "Export"): what export_ledger writes and verify_ledger checks."""

from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.utils import timezone

from ledger import chain
from ledger.models import Account, Checkpoint, Entry, LedgerHead, SigningKey
from platform_site.accounts import selectors as accounts_selectors

CHUNK = 2000


def _b64(data) -> str | None:
    return None if data is None else chain.b64encode(bytes(data))


def entry_record(entry: Entry) -> dict[str, Any]:
    return {
        "type": "entry",
        "seq": entry.seq,
        "kind": entry.kind,
        "actor": entry.actor,
        "payload": entry.payload,
        "created_at": chain.format_timestamp(entry.created_at),
        "key_id": entry.key_id,
        "actor_key_id": entry.actor_key_id,
        "prev_hash": bytes(entry.prev_hash).hex(),
        "entry_hash": bytes(entry.entry_hash).hex(),
        "signature": _b64(entry.signature),
        "actor_signature": _b64(entry.actor_signature),
    }


def export_records(*, since: int = 0) -> Iterator[dict[str, Any]]:
    """Every record of an export, in order; entries stream from the database in chunks."""
    size = LedgerHead.objects.values_list("size", flat=True).filter(pk=1).first() or 0
    yield {
        "type": "header",
        "format": "platform-ledger-export/1",
        "origin": settings.LEDGER_ORIGIN,
        "tree_size": size,
        "exported_at": chain.format_timestamp(timezone.now()),
    }
    for key in SigningKey.objects.order_by("first_seq"):
        yield {
            "type": "key",
            "key_id": key.key_id,
            "public_key": _b64(key.public_key),
            "verifier_key": key.verifier_key,
            "first_seq": key.first_seq,
        }
    actor_key_ids = Entry.objects.filter(actor_key_id__isnull=False).values_list("actor_key_id", flat=True)
    for key in accounts_selectors.public_key_list_by_key_ids(key_ids=actor_key_ids.distinct()):
        yield {
            "type": "actor_key",
            "key_id": key.key_id,
            "public_key": _b64(key.raw),
            "owner": key.owner_label,
        }
    for entry in Entry.objects.filter(seq__gte=since).order_by("seq").iterator(chunk_size=CHUNK):
        yield entry_record(entry)
    for checkpoint in Checkpoint.objects.order_by("tree_size").prefetch_related("cosignatures"):
        note = checkpoint.note + "".join(c.line for c in checkpoint.cosignatures.all())
        yield {"type": "checkpoint", "tree_size": checkpoint.tree_size, "note": note}
    for account in Account.objects.order_by("name").iterator(chunk_size=CHUNK):
        yield {"type": "balance", "account": account.name, "balance": account.balance}
