"""Witnesses: organizations that check our checkpoints and cosign them (C2SP cosignature/v1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction

from ledger import chain, notes
from ledger.models import Checkpoint, Cosignature, Witness
from platform_site.accounts import selectors as accounts_selectors
from platform_site.errors import Conflict, DomainError, NotFound, PermissionDenied

if TYPE_CHECKING:
    from platform_site.accounts.models import Organization, User


def witness_register(*, organization: Organization, actor: User, name: str, verifier_key: str) -> Witness:
    """Register an organization's witness key (C2SP cosignature/v1 verifier key); owners only."""
    if not accounts_selectors.organization_is_owned_by(organization=organization, user=actor):
        raise PermissionDenied("only an owner of the organization may register its witness")
    try:
        key_name, key_id, public_key = chain.parse_verifier_key(
            verifier_key, key_type=notes.COSIGNATURE_KEY_TYPE
        )
    except ValueError as exc:
        raise DomainError(f"not a cosignature/v1 verifier key: {exc}") from exc
    if key_name != name:
        raise DomainError(f"the verifier key is for {key_name!r}, not {name!r}")
    taken = Conflict(f"a witness named {name!r} is registered already")
    if Witness.objects.filter(name=name).exists():
        raise taken
    try:
        # Its own transaction: of two registrations of one name at once, the unique name lets one in; the other
        # is a 409, not an IntegrityError.
        with transaction.atomic():
            return Witness.objects.create(
                organization=organization, name=name, public_key=public_key, key_id=key_id,
                verifier_key=verifier_key,
            )  # fmt: skip
    except IntegrityError:
        raise taken from None


def cosignature_add(*, tree_size: int, cosignature_line: str) -> Cosignature:
    """Store a witness's cosignature of our checkpoint at `tree_size`, after checking it."""
    if not 0 < tree_size <= chain.JSON_INT_MAX:
        raise DomainError(f"tree_size must be from 1 to {chain.JSON_INT_MAX}")
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
    if timestamp > chain.JSON_INT_MAX:
        # A signed uint64, but it is stored in a bigint and served as exact JSON.
        raise DomainError(
            f"the cosignature's timestamp {timestamp} is past {chain.JSON_INT_MAX} (seconds since 1970)"
        )
    # Durable: the cosignature and the witness's progress commit together.
    with transaction.atomic(durable=True):
        cosignature, created = Cosignature.objects.get_or_create(
            checkpoint=checkpoint, witness=witness,
            defaults={"timestamp": timestamp, "line": line},
        )  # fmt: skip
        if not created and cosignature.line != line:
            raise Conflict("this witness has cosigned this checkpoint already")
        Witness.objects.filter(pk=witness.pk, last_tree_size__lt=tree_size).update(last_tree_size=tree_size)
    return cosignature
