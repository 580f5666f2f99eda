"""The profile's wallet in words, and the sign-up page's password rules."""

import re

import pytest
from django.contrib.auth import password_validation
from django.db import transaction
from django.urls import reverse
from django.utils.html import escape

from ledger import services as ledger
from marketplace import services as marketplace
from tests.platform_site.home.listings import published

pytestmark = pytest.mark.django_db

PROFILE = reverse("accounts:profile")
SIGNUP = reverse("accounts:signup")


def wallet_rows(page: str) -> list[str]:
    """Each entry of the wallet's list as its text, tags stripped and spaces collapsed."""
    wallet = page[page.index('data-testid="wallet-entries"') :]
    wallet = wallet[: wallet.index("</ul>")]
    return [" ".join(re.sub(r"<[^>]+>", " ", li).split()) for li in re.findall(r"<li.*?</li>", wallet, re.S)]


def test_the_wallet_tells_each_entry_in_words_with_links_to_the_objects(client, alice, bob, settings):
    settings.MARKETPLACE_FEE_BP = 0
    dataset = published(alice, "Retail customer segments", price_compute=15_000)
    ledger.faucet_request(user=bob)
    marketplace.license_purchase(buyer=bob, dataset=dataset, tier="compute")
    with transaction.atomic():
        ledger.transfer(source=f"user:{bob.pk}", destination=f"user:{alice.pk}", amount=2_500,
                        actor=f"user:{bob.pk}")  # fmt: skip
    client.force_login(bob)
    page = client.get(PROFILE).content.decode()
    rows = wallet_rows(page)
    assert rows[0].startswith("To alice #") and rows[0].endswith("\u221225.00 tokens")
    assert rows[1].startswith("Bought “Retail customer segments” (compute-only) #")
    assert rows[1].endswith("\u2212150.00 tokens")
    assert rows[2].startswith("Faucet #") and rows[2].endswith("+1,000.00 tokens")
    assert not any("ledger." in row or "marketplace." in row for row in rows), "no kind is shown as text"
    assert f'<a href="{reverse("marketplace:detail", args=[dataset.pk])}">Bought' in page

    client.force_login(alice)
    rows = wallet_rows(client.get(PROFILE).content.decode())
    assert rows[0].startswith("From bob #") and rows[0].endswith("+25.00 tokens")
    assert rows[1].startswith("Sold “Retail customer segments” (compute-only) to bob #")
    assert rows[1].endswith("+150.00 tokens")


def test_a_new_users_wallet_says_what_to_do_first(client, alice):
    client.force_login(alice)
    page = client.get(PROFILE).content.decode()
    empty = page[page.index('data-testid="wallet-empty"') :]
    assert "get demo tokens" in empty[:300] and 'href="/data/"' in empty[:300]


def test_the_sign_up_page_shows_the_password_rules_before_any_failure(client):
    page = client.get(SIGNUP).content.decode()
    assert "errorlist" not in page
    help_block = page[page.index('id="id_password1_helptext"') :]
    help_block = help_block[: help_block.index("</div>")]
    rules = [str(text) for text in password_validation.password_validators_help_texts()]
    assert len(rules) == 4
    for rule in rules:
        assert escape(rule) in help_block, rule
    for words in ("too similar", "at least 8 characters", "commonly used password", "entirely numeric"):
        assert words in help_block, words
    assert 'aria-describedby="id_password1_helptext"' in page


def test_the_sign_up_page_follows_the_configured_validators(client, settings):
    settings.AUTH_PASSWORD_VALIDATORS = [
        {
            "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
            "OPTIONS": {"min_length": 12},
        }
    ]
    page = client.get(SIGNUP).content.decode()
    assert "at least 12 characters" in page
    assert "commonly used password" not in page


def test_signing_up_leads_to_a_welcome_not_a_welcome_back(client):
    data = {"username": "dora", "email": "", "password1": "a-long-unusual-passphrase", "password2": ""}
    data["password2"] = data["password1"]
    page = client.post(SIGNUP, data, follow=True).content.decode()
    assert "Welcome, dora" in page and "Welcome back" not in page
    assert 'data-testid="first-steps"' in page
