"""The admin shows prices and amounts in tokens, and tags and terms in words."""

import re

import pytest
from django.urls import reverse

from ledger import services as ledger
from ledger.models import Entry, Escrow
from marketplace import services as marketplace
from marketplace.admin import terms_text
from marketplace.models import License
from tests.platform_site.home.listings import published

pytestmark = pytest.mark.django_db


def cells(page: str) -> str:
    """The text of the page's result table or fields, tags stripped and spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


@pytest.fixture
def sold(alice, bob, settings):
    settings.MARKETPLACE_FEE_BP = 0
    dataset = published(
        alice,
        "Retail customer segments",
        price_download=25_000,
        price_compute=8_050,
        tags=["retail", "customers"],
    )
    ledger.faucet_request(user=bob)
    marketplace.license_purchase(buyer=bob, dataset=dataset, tier="compute")
    return dataset


def test_the_dataset_list_and_page_show_prices_in_tokens_and_tags_in_words(client, staff, sold):
    client.force_login(staff)
    listing = cells(client.get(reverse("admin:marketplace_dataset_changelist")).content.decode())
    assert "250.00 tokens" in listing and "80.50 tokens" in listing
    assert ", ".join(sold.tags) in listing and sorted(sold.tags) == ["customers", "retail"]
    assert "25000" not in listing and "8050" not in listing
    page = client.get(reverse("admin:marketplace_dataset_change", args=[sold.pk])).content.decode()
    text = cells(page)
    assert "Download price in tokens: 250.00 tokens" in text
    assert "Compute-only price in tokens: 80.50 tokens" in text
    assert f"Tags in words: {', '.join(sold.tags)}" in text
    assert (
        "Terms in words: research: commercial use not allowed, redistribution not allowed, attribution "
        "required, derived models not allowed, 365 days" in text
    )
    assert "In minor units: 100 = 1 token." in text  # beside the stored prices, which stay editable


def test_a_tier_not_sold_says_so(client, staff, alice):
    dataset = published(alice, "Compute only", price_compute=100)
    client.force_login(staff)
    page = cells(client.get(reverse("admin:marketplace_dataset_change", args=[dataset.pk])).content.decode())
    assert "Download price in tokens: not sold" in page


def test_licenses_show_their_price_in_tokens_and_their_terms_in_words(client, staff, sold):
    license = License.objects.get()
    client.force_login(staff)
    listing = cells(client.get(reverse("admin:marketplace_license_changelist")).content.decode())
    assert "80.50 tokens" in listing
    page = cells(client.get(reverse("admin:marketplace_license_change", args=[license.pk])).content.decode())
    assert "Price in tokens: 80.50 tokens" in page
    assert "Terms in words: research: commercial use not allowed" in page


def test_terms_in_words_cover_every_preset_and_odd_values():
    assert terms_text({}) == "—"
    assert terms_text(None) == "—"
    assert terms_text(
        {"preset": "open", "commercial_use": True, "redistribution": True, "attribution": True, "term_days": None,
         "free_text": "Cite the source."}
    ) == (
        "open: commercial use allowed, redistribution allowed, attribution required, derived models not "
        "allowed, no time limit; “Cite the source.”"
    )  # fmt: skip
    # Terms made before the key existed do not allow derived models; the presets say so either way.
    assert "derived models allowed" in terms_text({"preset": "open", "derived_models": True})
    assert terms_text({"commercial_use": "maybe"}).startswith("commercial use —")


def test_ledger_entries_and_escrows_show_amounts_in_tokens(client, staff, sold, alice, bob):
    from django.db import transaction

    with transaction.atomic():
        escrow = ledger.escrow_open(payer=f"user:{bob.pk}", payee=f"user:{alice.pk}", amount=12_345,
                                    actor=f"user:{bob.pk}")  # fmt: skip
    client.force_login(staff)
    entry = Entry.objects.get(kind="marketplace.license.granted")
    page = cells(client.get(reverse("admin:ledger_entry_change", args=[entry.pk])).content.decode())
    assert f"user:{bob.pk}: -80.50 tokens" in page and f"user:{alice.pk}: +80.50 tokens" in page
    escrow = Escrow.objects.get(pk=escrow.pk)
    page = cells(client.get(reverse("admin:ledger_escrow_change", args=[escrow.pk])).content.decode())
    assert "123.45 tokens" in page
