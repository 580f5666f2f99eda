"""A user's ledger entries told in words, with links to what they are about (platform_site.home.selectors)."""

import pytest
from django.db import transaction
from django.urls import reverse

from ledger import services as ledger
from ledger.models import Entry
from marketplace import services as marketplace
from platform_site.home.selectors import activity_list_for_user
from tests.factories import OrganizationFactory, UserFactory
from tests.platform_site.home.listings import published

pytestmark = pytest.mark.django_db


def account(user) -> str:
    return ledger.account_name(user=user)


def fund(user, amount: int) -> None:
    with transaction.atomic():
        ledger.mint(destination=account(user), amount=amount, actor="system", reason="test funds")


def send(source, destination: str, amount: int, memo: str = "") -> None:
    with transaction.atomic():
        ledger.transfer(source=account(source), destination=destination, amount=amount, actor=account(source),
                        memo=memo)  # fmt: skip


def said(user, limit: int = 10) -> list[tuple[str, str | None, str]]:
    return [(a.text, a.url, a.amount) for a in activity_list_for_user(user=user, limit=limit)]


def test_the_faucet_reads_faucet_with_the_amount_in_tokens(alice):
    ledger.faucet_request(user=alice)
    assert said(alice) == [("Faucet", None, "+1,000.00 tokens")]


def test_a_transfer_names_the_other_side_from_either_end(alice, bob):
    fund(bob, 50_000)
    send(bob, account(alice), 12_500, memo="for the data")
    explorer = reverse("ledger:index")
    assert said(bob)[0] == (
        "To alice: “for the data”",
        f"{explorer}?actor=user%3A{alice.pk}",
        "\u2212125.00 tokens",
    )
    assert said(alice)[0] == (
        "From bob: “for the data”",
        f"{explorer}?actor=user%3A{bob.pk}",
        "+125.00 tokens",
    )


def test_a_transfer_to_an_organization_names_it(alice):
    acme = OrganizationFactory(name="Acme Analytics")
    fund(alice, 1_000)
    send(alice, ledger.account_name(org=acme), 400)
    assert said(alice)[0][0] == "To Acme Analytics"


def test_a_purchase_reads_bought_for_the_buyer_and_sold_for_the_seller_with_a_link_to_the_dataset(
    alice, bob, settings
):
    settings.MARKETPLACE_FEE_BP = 250
    dataset = published(alice, "Retail customer segments", price_compute=15_000)
    fund(bob, 100_000)
    marketplace.license_purchase(buyer=bob, dataset=dataset, tier="compute")
    page = reverse("marketplace:detail", args=[dataset.pk])
    assert said(bob)[0] == ("Bought “Retail customer segments” (compute-only)", page, "\u2212150.00 tokens")
    assert said(alice)[0] == ("Sold “Retail customer segments” (compute-only) to bob", page, "+146.25 tokens")
    assert said(alice)[1] == ("Published “Retail customer segments” (version 1)", page, "")


def test_a_purchase_reads_its_dataset_and_tier_from_the_payload_not_the_memo(alice, bob):
    dataset = published(alice, "Retail customer segments", price_compute=1_000)
    fund(bob, 10_000)
    license = marketplace.license_purchase(buyer=bob, dataset=dataset, tier="compute")
    entry = Entry.objects.get(seq=license.entry_seq)
    Entry.objects.filter(pk=entry.pk).update(payload={**entry.payload, "memo": "a memo in other words"})
    assert said(bob)[0][0] == "Bought “Retail customer segments” (compute-only)"


def test_a_purchase_written_before_the_payload_fields_is_read_from_its_memo(alice, bob):
    dataset = published(alice, "Old survey", price_download=1_000)
    fund(bob, 10_000)
    license = marketplace.license_purchase(buyer=bob, dataset=dataset, tier="download")
    entry = Entry.objects.get(seq=license.entry_seq)
    older = {k: v for k, v in entry.payload.items() if k not in {"dataset", "version", "tier", "terms_hash"}}
    Entry.objects.filter(pk=entry.pk).update(payload=older)
    page = reverse("marketplace:detail", args=[dataset.pk])
    assert said(bob)[0] == ("Bought “Old survey” (download)", page, "\u221210.00 tokens")


def test_a_withdrawn_dataset_keeps_its_title_in_its_buyers_activity(alice, bob):
    dataset = published(alice, "Old survey", price_download=1_000)
    fund(bob, 10_000)
    marketplace.license_purchase(buyer=bob, dataset=dataset, tier="download")
    marketplace.dataset_withdraw(dataset=dataset, actor=alice)
    assert said(bob)[0][0] == "Bought “Old survey” (download)"
    assert said(alice)[0][0] == "Withdrew “Old survey” from sale"


def test_privacy_budget_spent_links_to_the_analysis(alice, bob):
    dataset = published(alice, "Retail customer segments", price_compute=1_000)
    fund(bob, 10_000)
    marketplace.license_purchase(buyer=bob, dataset=dataset, tier="compute")
    job = marketplace.analysis_submit(user=bob, dataset=dataset, params={"analysis": "kmeans", "k": 3})
    text, url, amount = said(bob)[0]
    assert text == (
        "Privacy budget spent on “Retail customer segments”: ε 1.00 for k-means clusters (1.00 of 10.00 used)"
    )
    assert url == reverse("marketplace:analysis-detail", args=[dataset.pk, job.pk])
    assert amount == ""


def test_an_unknown_kind_reads_as_its_app_and_action(alice):
    with transaction.atomic():
        ledger.entry_append(kind="models_market.token.minted", actor=account(alice), payload={"token": 7})
    assert said(alice) == [("Models market: token minted", None, "")]


def test_a_payload_of_an_unexpected_shape_falls_back_to_the_kind(alice):
    with transaction.atomic():
        ledger.entry_append(kind="marketplace.privacy.spent", actor=account(alice), payload={"dataset": "x"})
        ledger.entry_append(kind="ledger.escrow.opened", actor=account(alice), payload={"payee": 12})
    assert said(alice) == [("Ledger: escrow opened", None, ""), ("Marketplace: privacy spent", None, "")]


def test_only_the_users_own_entries_are_told_and_the_newest_first(alice, bob, mallory):
    fund(alice, 100)
    fund(bob, 500)
    send(bob, account(mallory), 300)
    fund(alice, 200)
    assert [amount for _t, _u, amount in said(alice)] == ["+2.00 tokens", "+1.00 tokens"]
    assert said(alice, limit=1) == [("Minted by the platform: test funds", None, "+2.00 tokens")]


def test_activity_costs_the_same_queries_however_many_entries_and_people_it_names(
    alice, django_assert_max_num_queries
):
    def busy(n: int) -> None:
        fund(alice, 1_000_000)
        for i in range(n):
            other = UserFactory()
            send(alice, account(other), 10, memo=f"gift {i}")
            org = OrganizationFactory()
            send(alice, ledger.account_name(org=org), 10)
            dataset = published(other, f"Set {i}", price_download=100)
            marketplace.license_purchase(buyer=alice, dataset=dataset, tier="download")
        mine = published(alice, f"Mine {n}", price_download=100)
        buyer = UserFactory()
        fund(buyer, 1_000)
        marketplace.license_purchase(buyer=buyer, dataset=mine, tier="download")

    busy(1)
    with django_assert_max_num_queries(20) as few:
        activity_list_for_user(user=alice, limit=50)
    busy(6)
    with django_assert_max_num_queries(len(few.captured_queries)):
        rows = activity_list_for_user(user=alice, limit=50)
    assert len(rows) > 20
    assert all("dataset " not in row.text for row in rows), "every title was loaded"
