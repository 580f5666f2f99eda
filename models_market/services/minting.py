"""Minting: the one token of a model version (ERC-721 semantics), written to the ledger with the version."""

import json
from typing import Any

from django.conf import settings
from django.db import transaction

from ledger import services as ledger
from models_market.models import ModelToken, ModelVersion
from platform_site.accounts.models import User
from platform_site.errors import Conflict, DomainError

METADATA_MAX_BYTES = 4_000


def royalty_check(royalty_bp: Any) -> int:
    """A creator's resale royalty in basis points: a whole number from 0 to MODELS_ROYALTY_MAX_BP."""
    cap = settings.MODELS_ROYALTY_MAX_BP
    if isinstance(royalty_bp, bool) or not isinstance(royalty_bp, int) or not 0 <= royalty_bp <= cap:
        raise DomainError(
            f"the royalty is a whole number of basis points from 0 to {cap} ({cap / 100:g}% of each resale)"
        )
    return royalty_bp


def token_mint(
    *, version: ModelVersion, owner: User, royalty_bp: int, metadata: dict[str, Any]
) -> ModelToken:
    """The version's token, owned by `owner` who is also its creator (the receiver of its royalty), with a
    `models_market.token.minted` ledger entry; inside the caller's durable transaction, which records the
    version. The token id is its primary key, a sequence never reused."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("a token is minted inside the caller's transaction.atomic()")
    royalty_bp = royalty_check(royalty_bp)
    if version.status != ModelVersion.Status.READY or len(version.artifact_sha256) != 64:
        raise Conflict("only a ready model version with its artifact's SHA-256 is minted")
    if not isinstance(metadata, dict) or len(json.dumps(metadata, default=str)) > METADATA_MAX_BYTES:
        raise DomainError(f"token metadata is a JSON object of at most {METADATA_MAX_BYTES:,} bytes")
    if ModelToken.objects.filter(version=version).exists():
        raise Conflict(f"{version} has its token already")
    # minted_seq is set from the entry below, in this same transaction: no one sees the placeholder.
    token = ModelToken.objects.create(
        version=version, owner=owner, creator=owner, artifact_sha256=version.artifact_sha256,
        metadata=metadata, royalty_bp=royalty_bp, minted_seq=-1,
    )  # fmt: skip
    owner_account = ledger.account_name(user=owner)
    entry = ledger.entry_append(
        kind="models_market.token.minted",
        actor=owner_account,
        payload={
            "token": token.pk, "version": version.pk, "asset": version.asset_id,
            "artifact_sha256": version.artifact_sha256, "royalty_bp": royalty_bp, "owner": owner_account,
            "metadata_hash": ledger.content_hash(metadata),
        },
        idempotency_key=f"models_market.token.minted:{version.pk}",
    )  # fmt: skip
    token.minted_seq = entry.seq
    token.save(update_fields=["minted_seq"])
    return token
