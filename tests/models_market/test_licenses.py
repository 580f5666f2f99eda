"""Buying access licences: perpetual, timed and quota, paid up the lineage in one entry."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from ledger.models import Entry
from ledger.services import InsufficientFunds
from models_market import services
from models_market.models import ModelLicense
from platform_site.errors import Conflict, DomainError
from tests.ledger.helpers import fund
from tests.models_market.helpers import balance, dataset_version, listed, make_version, mint

pytestmark = pytest.mark.django_db

OFFERS = {"price_perpetual": 10_000, "price_timed": 2_000, "timed_days": 30, "price_quota": 1_000,
          "quota_calls": 3, "price_per_call": 7}  # fmt: skip


@pytest.fixture
def token(alice, carol, dora):
    """alice's model, fine-tuned from carol's and trained on dora's data, 20% of every payment up its lineage."""
    parent = make_version(carol, name="Parent")
    mint(parent)
    return listed(alice, lineage_bp=2_000, parents=(parent,), trained_on=dataset_version(dora), **OFFERS)


def test_a_perpetual_licence_pays_the_owner_the_lineage_and_the_fee_in_one_entry(
    token, alice, bob, carol, dora
):
    fund(f"user:{bob.pk}", 10_000)
    license = services.license_purchase(buyer=bob, token=token, kind="perpetual")
    assert (license.kind, license.price, license.price_per_call, license.expires_at, license.calls_left) == (
        "perpetual", 10_000, 7, None, None,
    )  # fmt: skip
    # fee 250; lineage 20% of 9,750 = 1,950, half each to carol's parent model and dora's data.
    assert [balance(u) for u in (bob, alice, carol, dora)] + [balance("treasury")] == [
        0,
        7_800,
        975,
        975,
        250,
    ]
    entry = Entry.objects.get(kind="models_market.license.granted")
    assert entry.seq == license.entry_seq
    assert {k: entry.payload[k] for k in ("token", "version", "kind", "price")} == {
        "token": token.pk, "version": token.version_id, "kind": "perpetual", "price": 10_000,
    }  # fmt: skip
    call_command("verify_ledger", "--quiet")


def test_a_timed_licence_expires_after_its_days_and_a_quota_licence_counts_calls(token, bob):
    fund(f"user:{bob.pk}", 10_000)
    timed = services.license_purchase(buyer=bob, token=token, kind="timed")
    assert abs(timed.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    quota = services.license_purchase(buyer=bob, token=token, kind="quota")
    assert (quota.calls_left, quota.price_per_call, quota.expires_at) == (3, 0, None)
    assert balance(bob) == 7_000
    call_command("verify_ledger", "--quiet")


def test_the_per_call_price_is_the_one_at_purchase(token, alice, bob):
    fund(f"user:{bob.pk}", 10_000)
    license = services.license_purchase(buyer=bob, token=token, kind="perpetual")
    services.token_offer_set(token=token, actor=alice, price_per_call=500)
    license.refresh_from_db()
    assert license.price_per_call == 7


def test_refusals_buy_nothing_and_write_nothing(token, alice, bob):
    before = Entry.objects.count()
    with pytest.raises(DomainError, match="unknown licence kind"):
        services.license_purchase(buyer=bob, token=token, kind="forever")
    with pytest.raises(Conflict, match="you own"):
        services.license_purchase(buyer=alice, token=token, kind="perpetual")
    with pytest.raises(
        InsufficientFunds, match=r"your balance is 0\.00 tokens; the licence costs 100\.00 tokens"
    ):
        services.license_purchase(buyer=bob, token=token, kind="perpetual")
    services.token_offer_set(token=token, actor=alice, price_timed=None)
    with pytest.raises(DomainError, match="not offered with a timed licence"):
        services.license_purchase(buyer=bob, token=token, kind="timed")
    services.token_offer_set(token=token, actor=alice, listed=False)
    fund(f"user:{bob.pk}", 100_000)
    with pytest.raises(Conflict, match="not on offer"):
        services.license_purchase(buyer=bob, token=token, kind="perpetual")
    assert not ModelLicense.objects.exists()
    assert Entry.objects.filter(kind="models_market.license.granted").count() == 0
    assert Entry.objects.count() == before + 3  # two offers changed, one mint of test funds


def test_a_second_perpetual_licence_or_an_unexpired_timed_one_is_a_conflict(token, bob):
    fund(f"user:{bob.pk}", 100_000)
    services.license_purchase(buyer=bob, token=token, kind="perpetual")
    with pytest.raises(Conflict):
        services.license_purchase(buyer=bob, token=token, kind="perpetual")
    services.license_purchase(buyer=bob, token=token, kind="timed")
    with pytest.raises(Conflict):
        services.license_purchase(buyer=bob, token=token, kind="timed")
    services.license_purchase(buyer=bob, token=token, kind="quota")
    services.license_purchase(buyer=bob, token=token, kind="quota")  # another pack of calls
    assert ModelLicense.objects.filter(holder=bob).count() == 4
