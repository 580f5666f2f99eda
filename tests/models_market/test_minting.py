"""Minting: one token per model version, with an id never reused, its royalty bounded, written to the ledger."""

import pytest
from django.core.management import call_command
from django.db import transaction

from ledger.models import Entry
from models_market.models import ModelAsset, ModelToken, ModelVersion
from models_market.services import token_mint
from platform_site.errors import Conflict, DomainError

pytestmark = pytest.mark.django_db

SHA = "ab" * 32


def ready_version(user, *, status: str = "ready") -> ModelVersion:
    asset = ModelAsset.objects.create(creator=user, name="Net", task="classification")
    return ModelVersion.objects.create(
        asset=asset, number=1, status=status, origin="uploaded", format="torch", artifact_sha256=SHA,
        created_by=user,
    )  # fmt: skip


def mint(version, owner, royalty_bp: int = 0, metadata: dict | None = None) -> ModelToken:
    with transaction.atomic():
        return token_mint(version=version, owner=owner, royalty_bp=royalty_bp, metadata=metadata or {})


def test_a_token_is_minted_with_its_ledger_entry_in_the_callers_transaction(alice):
    version = ready_version(alice)
    token = mint(version, alice, 1_000, {"name": "Net"})
    assert (token.owner, token.creator, token.royalty_bp, token.artifact_sha256) == (alice, alice, 1_000, SHA)
    entry = Entry.objects.get(kind="models_market.token.minted")
    assert token.minted_seq == entry.seq and entry.actor == f"user:{alice.pk}"
    assert entry.payload == {
        "token": token.pk, "version": version.pk, "asset": version.asset_id, "artifact_sha256": SHA,
        "royalty_bp": 1_000, "owner": f"user:{alice.pk}", "metadata_hash": entry.payload["metadata_hash"],
    }  # fmt: skip
    call_command("verify_ledger", "--quiet")


@pytest.mark.django_db(transaction=True)  # no test transaction around it: the call itself has none
def test_minting_needs_an_open_transaction(alice):
    with pytest.raises(RuntimeError, match="inside the caller's transaction"):
        token_mint(version=ready_version(alice), owner=alice, royalty_bp=0, metadata={})
    assert not ModelToken.objects.exists()


@pytest.mark.parametrize("royalty_bp", [-1, 2_501, 10_000, True, 2.5])
def test_the_royalty_is_bounded_by_the_setting(alice, royalty_bp):
    with pytest.raises(DomainError, match="from 0 to 2500"):
        mint(ready_version(alice), alice, royalty_bp)
    assert not Entry.objects.exists()


def test_the_royalty_bound_follows_the_setting(alice, settings):
    settings.MODELS_ROYALTY_MAX_BP = 100
    with pytest.raises(DomainError, match="from 0 to 100"):
        mint(ready_version(alice), alice, 101)


def test_one_token_per_version_and_none_for_a_version_not_ready(alice):
    version = ready_version(alice)
    mint(version, alice)
    with pytest.raises(Conflict, match="has its token already"):
        mint(version, alice)
    with pytest.raises(Conflict, match="only a ready model version"):
        mint(ready_version(alice, status="pending"), alice)
    assert ModelToken.objects.count() == 1
    assert Entry.objects.filter(kind="models_market.token.minted").count() == 1


def test_token_ids_are_never_reused(alice):
    first = mint(ready_version(alice), alice)
    second = mint(ready_version(alice), alice)
    assert second.pk > first.pk
    gone = second.pk
    second.delete()  # no service deletes a token; even so its id does not come back
    third = mint(ready_version(alice), alice)
    assert third.pk > gone
