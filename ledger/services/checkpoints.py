"""Signed checkpoints of the Merkle tree (C2SP signed notes), and rotating the platform's signing key."""

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.db import transaction

from ledger import chain, merkle, notes
from ledger.models import Checkpoint, Entry, LedgerHead, SigningKey
from ledger.services.journal import entry_append, lock_head
from ledger.services.keys import (
    private_key_for,
    public_raw,
    register_key,
    retired_key_path,
    write_private_key,
)


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
    # Durable, under the head lock: the checkpoint covers exactly the head it read.
    with transaction.atomic(durable=True):
        head = lock_head()
        if head.size == 0:
            return None
        existing = Checkpoint.objects.filter(tree_size=head.size).first()
        if existing is not None:
            return existing
        root = _frontier_root(head.frontier)
        body = notes.checkpoint_body(settings.LEDGER_ORIGIN, head.size, root)
        # The key that signed the last entry covered signs the checkpoint.
        key_id = Entry.objects.values_list("key_id", flat=True).get(seq=head.size - 1)
        note = notes.sign_note(body, settings.LEDGER_ORIGIN, private_key_for(key_id))
        return Checkpoint.objects.create(tree_size=head.size, root_hash=root, note=note, key_id=key_id)


def signing_key_rotate() -> SigningKey:
    """Make a new platform key: announced by an entry signed with the old one, then used for all later entries.

    The new private key replaces LEDGER_KEY_FILE; the old one is kept beside it as `<file>.<key_id>.retired`.
    """
    path = Path(settings.LEDGER_KEY_FILE)
    # Durable, under the head lock: the announcement is the last entry the old key signs, and no append
    # slips between it and the switch.
    with transaction.atomic(durable=True):
        head = lock_head()
        old_id = head.active_key_id
        old_key = private_key_for(old_id)
        new_key = Ed25519PrivateKey.generate()
        raw = public_raw(new_key)
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
        signing_key = register_key(new_key, first_seq=entry.seq + 1)
        LedgerHead.objects.filter(pk=1).update(active_key_id=new_id)
        # Both keys are on disk before the commit; the new one takes LEDGER_KEY_FILE's place only after it.
        write_private_key(retired_key_path(old_id), old_key)
        staged = path.with_name(f"{path.name}.{new_id}.new")  # its own name: two rotations never share it
        write_private_key(staged, new_key)
        transaction.on_commit(lambda: os.replace(staged, path))
    return signing_key
