"""The money and API side of the models market, attacked from outside: odd numbers in pages' ids, a price
changed between a buyer's confirmation and their purchase, payments to a deactivated owner, user text in pages."""

import pytest
from django.core.management import call_command
from django.test import Client

from ledger.models import Entry
from models_market import services
from models_market.models import ModelAsset, ModelLicense, ModelToken
from platform_site.accounts.models import User
from tests.conftest import api_as
from tests.ledger.helpers import fund
from tests.models_market.helpers import balance, listed

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_browse_page_answers_a_nul_in_its_search_without_a_500(alice, client):
    listed(alice)
    for query in ("q=%00", "q=churn%00&task=%00&license=%00&sort=%00"):
        response = client.get(f"/models/?{query}")
        assert response.status_code == 200, query
    assert 'data-testid="model-card"' in client.get("/models/?q=Ch%00urn").content.decode()


@pytest.mark.parametrize("number", ["²", "\u0661", "9" * 5_000])
def test_pages_that_take_an_id_refuse_digits_int_cannot_read_without_a_500(alice, bob, number):
    listed(alice)
    client = client_for(bob)
    assert client.get("/models/train/", {"dataset": number}).status_code == 200  # the pick page
    response = client.post("/models/evaluate/", {"versions": [number], "metric": "accuracy"})
    assert response.status_code == 200
    assert "Not started" in response.content.decode()


def test_the_buy_page_charges_only_the_price_its_confirmation_showed(alice, bob):
    token = listed(alice, price_perpetual=2_500)
    fund(f"user:{bob.pk}", 100_000)
    client = client_for(bob)
    confirm = client.get(f"/models/{token.version_id}/buy/?kind=perpetual").content.decode()
    assert '<input type="hidden" name="price" value="2500">' in confirm
    services.token_offer_set(token=token, actor=alice, price_perpetual=90_000)  # meanwhile, the owner
    response = client.post(
        f"/models/{token.version_id}/buy/", {"kind": "perpetual", "price": "2500"}, follow=True
    )
    assert "Not bought: the offer changed: the price is now 900.00 tokens, not 25.00 tokens" in (
        response.content.decode()
    )
    assert not ModelLicense.objects.exists() and balance(bob) == 100_000

    token = services.token_offer_set(token=ModelToken.objects.get(pk=token.pk), actor=alice, sale_price=3_000)
    confirm = client.get(f"/models/{token.version_id}/buy/?kind=token").content.decode()
    assert '<input type="hidden" name="price" value="3000">' in confirm
    services.token_offer_set(token=token, actor=alice, sale_price=80_000)
    response = client.post(
        f"/models/{token.version_id}/buy/", {"kind": "token", "price": "3000"}, follow=True
    )
    assert "Not bought: the price is now 800.00 tokens" in response.content.decode()
    assert ModelToken.objects.get(pk=token.pk).owner == alice and balance(bob) == 100_000
    for junk in ("", "²", "-1", "9" * 5_000):
        response = client.post(
            f"/models/{token.version_id}/buy/", {"kind": "token", "price": junk}, follow=True
        )
        assert "Not bought" in response.content.decode(), junk
    assert ModelToken.objects.get(pk=token.pk).owner == alice and balance(bob) == 100_000

    client.post(f"/models/{token.version_id}/buy/", {"kind": "perpetual", "price": "90000"})
    assert ModelLicense.objects.get(holder=bob).price == 90_000, "the confirmed price is bought"
    call_command("verify_ledger", "--quiet")


def test_a_licence_bought_through_the_api_at_a_price_changed_meanwhile_is_a_409(alice, bob):
    token = listed(alice, price_perpetual=2_500)
    fund(f"user:{bob.pk}", 100_000)
    services.token_offer_set(token=token, actor=alice, price_perpetual=90_000)
    buyer = api_as(bob)
    url = f"/api/models/tokens/{token.pk}/licenses/"
    response = buyer.post(url, {"kind": "perpetual", "price": 2_500}, format="json")
    assert response.status_code == 409 and "900.00 tokens" in response.json()["detail"]
    for price in (0, -1, 10**30, 2**63, "NaN", None, [1]):
        assert buyer.post(url, {"kind": "perpetual", "price": price}, format="json").status_code == 400, price
    assert not ModelLicense.objects.exists() and balance(bob) == 100_000
    assert buyer.post(url, {"kind": "perpetual", "price": 90_000}, format="json").status_code == 201


def test_a_licence_is_bought_only_on_the_terms_its_buyer_confirmed(alice, bob):
    """Not only the price: the per-call price of a perpetual licence, the calls of a quota, the days of a
    timed licence, changed by the owner between the confirmation and the purchase, are a refusal."""
    token = listed(alice, price_perpetual=2_500, price_per_call=10, price_quota=1_000, quota_calls=500)
    fund(f"user:{bob.pk}", 100_000)
    client = client_for(bob)
    page = client.get(f"/models/{token.version_id}/buy/?kind=quota").content.decode()
    assert '<input type="hidden" name="calls" value="500">' in page
    terms = {"kind": "quota", "price": "1000", "calls": "500"}
    services.token_offer_set(token=token, actor=alice, quota_calls=5)  # the same price for a hundredth
    response = client.post(f"/models/{token.version_id}/buy/", terms, follow=True)
    assert (
        "Not bought: the offer changed: the quota now holds 5 calls, not 500 calls"
        in response.content.decode()
    )

    page = client.get(f"/models/{token.version_id}/buy/?kind=perpetual").content.decode()
    assert '<input type="hidden" name="price_per_call" value="10">' in page
    services.token_offer_set(token=ModelToken.objects.get(pk=token.pk), actor=alice, price_per_call=5_000)
    buyer = api_as(bob)
    url = f"/api/models/tokens/{token.pk}/licenses/"
    response = buyer.post(url, {"kind": "perpetual", "price": 2_500, "price_per_call": 10}, format="json")
    assert response.status_code == 409
    assert response.json()["detail"] == "the offer changed: each call now costs 50.00 tokens, not 0.10 tokens"
    for junk in (-1, 10**30, "x", None):
        response = buyer.post(url, {"kind": "perpetual", "price_per_call": junk}, format="json")
        assert response.status_code == 400, junk
    response = buyer.post(url, {"kind": "perpetual", "days": 30}, format="json")
    assert response.status_code == 400 and "a perpetual licence has no days" in response.json()["detail"]
    assert not ModelLicense.objects.exists() and balance(bob) == 100_000

    response = buyer.post(url, {"kind": "perpetual", "price_per_call": 5_000}, format="json")
    assert response.status_code == 201 and response.json()["price_per_call"] == 5_000
    call_command("verify_ledger", "--quiet")


@pytest.mark.parametrize("owner_has_an_account", [True, False])
def test_nothing_is_bought_from_a_deactivated_owner(alice, bob, owner_has_an_account):
    token = listed(alice, sale_price=3_000)
    if owner_has_an_account:
        fund(f"user:{alice.pk}", 1)
    fund(f"user:{bob.pk}", 100_000)
    User.objects.filter(pk=alice.pk).update(is_active=False)
    entries = Entry.objects.count()
    buyer = api_as(bob)
    response = buyer.post(f"/api/models/tokens/{token.pk}/licenses/", {"kind": "perpetual"}, format="json")
    assert response.status_code == 409, response.json()
    response = buyer.post(f"/api/models/tokens/{token.pk}/buy/", {}, format="json")
    assert response.status_code == 409, response.json()
    assert f"user:{alice.pk}" not in response.content.decode()
    assert Entry.objects.count() == entries and balance(bob) == 100_000
    assert ModelToken.objects.get(pk=token.pk).owner == alice and not ModelLicense.objects.exists()


def test_user_text_is_escaped_on_every_models_page(alice, bob):
    token = listed(alice, sale_price=3_000)
    ModelAsset.objects.filter(pk=token.version.asset_id).update(
        name="<script>alert(1)</script>",
        description="<b onmouseover=alert(2)>",
        tags=["<svg onload=alert(3)>"],
    )
    services.version_card_update(
        version=token.version, actor=alice, intended_use="<img src=x onerror=alert(4)>"
    )
    fund(f"user:{bob.pk}", 100_000)
    services.license_purchase(buyer=bob, token=token, kind="perpetual")
    client = client_for(bob)
    for url in (
        "/models/",
        f"/models/{token.version_id}/",
        f"/models/{token.version_id}/buy/?kind=token",
        "/models/mine/",
        "/models/evaluate/",
    ):
        page = client.get(url).content.decode()
        assert "<script>alert" not in page and "<b onmouseover" not in page and "<img src=x" not in page, url
        assert "<svg onload" not in page, url


def test_a_creator_or_ancestor_deactivated_since_is_still_paid_and_blocks_no_sale(
    alice, bob, carol, mallory, settings
):
    parent = listed(carol, seed=1)
    token = listed(alice, lineage_bp=2_000, parents=(parent.version,))
    token = services.token_offer_set(token=token, actor=alice, sale_price=10_000)
    token.royalty_bp = 1_000
    token.save(update_fields=["royalty_bp"])
    token = services.token_transfer(token=token, actor=alice, to=bob)  # alice was never paid: no account yet
    token = services.token_offer_set(
        token=token, actor=bob, sale_price=10_000, price_perpetual=5_000, listed=True
    )
    User.objects.filter(pk__in=[alice.pk, carol.pk]).update(is_active=False)
    fund(f"user:{mallory.pk}", 100_000)
    buyer = api_as(mallory)
    response = buyer.post(f"/api/models/tokens/{token.pk}/licenses/", {"kind": "perpetual"}, format="json")
    assert response.status_code == 201, response.json()
    assert balance(carol) > 0, "carol's lineage share is owed to her"
    response = buyer.post(f"/api/models/tokens/{token.pk}/buy/", {"price": 10_000}, format="json")
    assert response.status_code == 200, response.json()
    royalty = (10_000 - 10_000 * settings.MODELS_FEE_BP // 10_000) * 1_000 // 10_000
    assert balance(alice) == royalty > 0, "alice's royalty is owed to her"
    call_command("verify_ledger", "--quiet")
