"""The money API end to end: offers, licences, predictions (JSON and CSV), receipts, tokens and the deposit."""

import json

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from ledger.models import Entry
from models_market import services
from tests.conftest import api_as
from tests.ledger.helpers import fund
from tests.models_market.helpers import ROW, balance, dataset_version, make_version, mint

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(alice, carol, dora):
    parent = make_version(carol, name="Parent")
    mint(parent)
    return mint(
        make_version(alice, lineage_bp=2_000, parents=(parent,), trained_on=dataset_version(dora)),
        royalty_bp=500,
    )


def predict(client, version_id, body, **kwargs):
    return client.post(f"/api/models/versions/{version_id}/predict/", body, format="json", **kwargs)


def test_offer_licence_predict_receipt_settle_resell_through_the_api(token, alice, bob, carol, dora, mallory):
    owner, buyer = api_as(alice), api_as(bob)
    offers = {"price_perpetual": 10_000, "price_per_call": 50, "listed": True}
    response = owner.patch(f"/api/models/tokens/{token.pk}/", offers, format="json")
    assert response.status_code == 200, response.json()
    assert {k: response.json()[k] for k in offers} == offers
    fund(f"user:{bob.pk}", 20_000)
    response = buyer.post(f"/api/models/tokens/{token.pk}/licenses/", {"kind": "perpetual"}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["price_per_call"] == 50
    assert [lic["id"] for lic in buyer.get("/api/models/licenses/").json()["results"]] == [
        response.json()["id"]
    ]
    after_licence = {u: balance(u) for u in ("treasury", alice, carol, dora)}

    response = predict(buyer, token.version_id, {"rows": [ROW, ROW]})
    assert response.status_code == 200, response.json()
    answer = response.json()
    assert len(answer["predictions"]) == 2 and answer["receipt"]["body"]["price"] == 50
    receipt_id = answer["receipt"]["id"]
    assert (answer["receipt"]["settled"], answer["receipt"]["proof"]) == (False, None)
    csv_body = "age,income,visits\n0.5,-1.25,2\n,3,\n"
    response = buyer.post(
        f"/api/models/versions/{token.version_id}/predict/", csv_body, content_type="text/csv"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["receipt"]["body"]["rows"] == 2

    services.settle_pending(limit=100)
    # Two calls of 50: fee 1 each; lineage 20% of 49 = 9 (5 to carol's model, 4 to dora's data); alice 40.
    assert {u: balance(u) - after_licence[u] for u in after_licence} == {
        "treasury": 2,
        alice: 80,
        carol: 10,
        dora: 8,
    }
    for client in (buyer, owner):  # the caller and the token's owner read it, with its proof
        receipt = client.get(f"/api/models/receipts/{receipt_id}/").json()
        assert receipt["settled"] is True and receipt["proof"]["tree_size"] == 2
    assert api_as(mallory).get(f"/api/models/receipts/{receipt_id}/").status_code == 404

    # alice sells the token to bob; then bob resells to mallory with alice's royalty.
    assert (
        owner.patch(f"/api/models/tokens/{token.pk}/", {"sale_price": 5_000}, format="json").status_code
        == 200
    )
    response = buyer.post(f"/api/models/tokens/{token.pk}/buy/", {"price": 5_000}, format="json")
    assert response.status_code == 200 and response.json()["owner"] == "bob"
    api_as(bob).patch(f"/api/models/tokens/{token.pk}/", {"sale_price": 8_000}, format="json")
    fund(f"user:{mallory.pk}", 8_000)
    before = balance(alice)
    assert api_as(mallory).post(f"/api/models/tokens/{token.pk}/buy/", {}, format="json").status_code == 200
    assert balance(alice) - before == (8_000 - 200) * 500 // 10_000
    call_command("verify_ledger", "--quiet")


def test_refusals_have_their_status_codes(token, alice, bob, mallory, settings):
    services.token_offer_set(
        token=token, actor=alice, price_perpetual=100, price_per_call=10_000, listed=True
    )
    thief = api_as(mallory)
    assert predict(thief, token.version_id, {"rows": [ROW]}).status_code == 403
    assert predict(thief, 999_999, {"rows": [ROW]}).status_code == 404
    assert thief.patch(f"/api/models/tokens/{token.pk}/", {"listed": False}, format="json").status_code == 403
    assert (
        thief.post(f"/api/models/tokens/{token.pk}/transfer/", {"to": "mallory"}, format="json").status_code
        == 403
    )
    assert (
        thief.post(f"/api/models/tokens/{token.pk}/approve/", {"operator": None}, format="json").status_code
        == 403
    )
    assert (
        thief.post(f"/api/models/tokens/{token.pk}/buy/", {}, format="json").status_code == 409
    )  # not for sale
    assert thief.get("/api/models/tokens/999999/").status_code == 404
    response = api_as(alice).post(
        f"/api/models/tokens/{token.pk}/transfer/", {"to": "treasury"}, format="json"
    )
    assert response.status_code == 400
    fund(f"user:{bob.pk}", 5_000)
    services.license_purchase(buyer=bob, token=token, kind="perpetual")
    response = predict(api_as(bob), token.version_id, {"rows": [ROW]})
    assert response.status_code == 402
    assert response.json()["detail"] == "your balance is 49.00 tokens; this call costs 100.00 tokens"
    assert api_as(bob).post("/api/models/deposit/withdraw/", {}, format="json").status_code == 409
    assert (
        APIClient().post(f"/api/models/versions/{token.version_id}/predict/", {"rows": [ROW]}).status_code
        == 401
    )


def test_no_500_on_junk(token, alice):
    owner = api_as(alice)
    url = f"/api/models/versions/{token.version_id}/predict/"
    for body, content_type in [
        (b"{not json", "application/json"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        (b'{"rows": [{"age": 1e400, "income": 1, "visits": 1}]}', "application/json"),
        (b'{"rows": [{"age": ' + b"9" * 5000 + b', "income": 1, "visits": 1}]}', "application/json"),
        (b'{"rows": [{"age": NaN, "income": 1, "visits": 1}]}', "application/json"),
        (b'{"rows": [{"age": "\\ud800", "income": 1, "visits": 1}]}', "application/json"),
        (b'{"rows": "all"}', "application/json"),
        (b'{"rows": [[1, 2, 3]]}', "application/json"),
        (b'{"rows": []}', "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"rows": [{"age": {"deep": [1]}, "income": 1, "visits": 1}]}', "application/json"),
        (b"age,income\n1,2,3\n", "text/csv"),
        (b"\xff\xfe", "text/csv"),
        (b"", "text/csv"),
        (b"hello", "text/plain"),
    ]:
        response = owner.generic("POST", url, body, content_type=content_type)
        assert response.status_code in (400, 415), (body[:60], response.status_code, response.content[:300])
    for patch in (
        {"sale_price": 10**400},
        {"price_per_call": -1},
        {"timed_days": 1.5},
        {"listed": "maybe"},
        {},
    ):
        response = owner.generic("PATCH", f"/api/models/tokens/{token.pk}/", json.dumps(patch),
                                 content_type="application/json")  # fmt: skip
        assert response.status_code == 400, (patch, response.content)
    assert not Entry.objects.filter(kind="models_market.token.offered").exists()


def test_predict_has_its_own_rate_limit(token, alice, settings):
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "models_predict": "2/minute"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    from django.core.cache import cache

    cache.clear()
    owner = api_as(alice)
    statuses = [predict(owner, token.version_id, {"rows": [ROW]}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert owner.get(f"/api/models/tokens/{token.pk}/").status_code == 200  # other endpoints are not limited


def test_the_deposit_is_shown_and_withdrawn(token, alice, bob, settings):
    settings.MODELS_DEPOSIT_CHUNK = 300
    services.token_offer_set(token=token, actor=alice, price_perpetual=100, price_per_call=10, listed=True)
    fund(f"user:{bob.pk}", 1_000)
    services.license_purchase(buyer=bob, token=token, kind="perpetual")
    client = api_as(bob)
    assert predict(client, token.version_id, {"rows": [ROW]}).status_code == 200
    assert client.get("/api/models/deposit/").json() == {"deposit": 300, "reserved": 10, "available": 290}
    response = client.post("/api/models/deposit/withdraw/", {"amount": 90}, format="json")
    assert response.json() == {"deposit": 210, "reserved": 10, "available": 200}
    assert client.post("/api/models/deposit/withdraw/", {"amount": 10**20}, format="json").status_code == 400
    assert client.post("/api/models/deposit/withdraw/", {}, format="json").json()["available"] == 0
    assert balance(bob) == 1_000 - 100 - 10
    call_command("verify_ledger", "--quiet")
