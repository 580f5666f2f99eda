"""Every integer the ledger accepts is bounded by what a bigint and exact JSON hold: a 400 or 404, never a 500."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import transaction
from django.test import Client

from ledger import chain, notes, services
from ledger.models import Cosignature, Entry
from platform_site.accounts.services import organization_create
from platform_site.errors import DomainError
from tests.conftest import api_as
from tests.ledger.helpers import fund, pay

pytestmark = pytest.mark.django_db

HUGE = [2**53, 2**63 - 1, 2**63, 2**64, 10**20, 10**30]


@pytest.fixture
def grown(alice, bob):
    a, b = services.account_name(user=alice), services.account_name(user=bob)
    fund(a, 100_000)
    for i in range(4):
        pay(a, b, 10 + i)
    services.checkpoint_create()
    return a, b


@pytest.mark.parametrize("amount", HUGE)
def test_a_staff_mint_beyond_exact_json_is_a_400(staff, alice, amount):
    body = {"destination": services.account_name(user=alice), "amount": amount, "reason": "too much"}
    response = api_as(staff).post("/api/ledger/mints/", body, format="json")
    assert response.status_code == 400, response.content
    assert str(chain.JSON_INT_MAX) in str(response.json())
    assert not Entry.objects.exists()


@pytest.mark.parametrize("amount", HUGE)
def test_a_transfer_beyond_exact_json_is_a_400(alice, bob, grown, amount):
    entries = Entry.objects.count()
    body = {"destination": services.account_name(user=bob), "amount": amount}
    response = api_as(alice).post("/api/ledger/transfers/", body, format="json")
    assert response.status_code == 400, response.content
    assert Entry.objects.count() == entries


def test_the_total_supply_never_passes_exact_json(staff, alice, bob):
    body = {"destination": services.account_name(user=alice), "amount": chain.JSON_INT_MAX, "reason": "all"}
    assert api_as(staff).post("/api/ledger/mints/", body, format="json").status_code == 201
    one_more = {**body, "destination": services.account_name(user=bob), "amount": 1}
    response = api_as(staff).post("/api/ledger/mints/", one_more, format="json")
    assert response.status_code == 400, response.content
    assert "total supply" in response.json()["detail"]
    assert Entry.objects.count() == 1


@pytest.mark.parametrize("amount", [0, -1, 2**53, 2**63, True, 1.5])
def test_services_refuse_amounts_out_of_range_whoever_calls_them(alice, bob, grown, amount):
    a, b = grown
    for work in (
        lambda: services.transfer(source=a, destination=b, amount=amount, actor="system"),
        lambda: services.mint(destination=b, amount=amount, actor="system", reason="test"),
        lambda: services.escrow_open(payer=a, payee=b, amount=amount, actor="system"),
        lambda: services.split_pay(
            source=a, amount=amount, actor="system", shares=[services.Share(b, 10_000)]
        ),
    ):
        with pytest.raises(DomainError, match="amount"), transaction.atomic():
            work()


@pytest.mark.parametrize("value", [2**53, 2**63, 10**30])
@pytest.mark.parametrize(
    "url",
    [
        "/api/ledger/entries/?seq_min={v}",
        "/api/ledger/entries/?seq_max={v}",
        "/api/ledger/checkpoint/?tree_size={v}",
        "/api/ledger/proof/inclusion/?seq={v}&tree_size=2",
        "/api/ledger/proof/inclusion/?seq=0&tree_size={v}",
        "/api/ledger/proof/consistency/?first=1&second={v}",
        "/api/ledger/proof/consistency/?first={v}&second=2",
    ],
)
def test_huge_integers_in_query_strings_are_400s(alice, grown, url, value):
    response = api_as(alice).get(url.format(v=value))
    assert response.status_code == 400, response.content


@pytest.mark.parametrize("value", [2**53, 2**63, 10**30])
def test_huge_integers_in_urls_are_404s(alice, grown, value):
    assert api_as(alice).get(f"/api/ledger/entries/{value}/").status_code == 404
    client = Client()
    client.force_login(alice)
    assert client.get(f"/ledger/entries/{value}/").status_code == 404
    page = client.get(f"/ledger/?seq_min={value}")
    assert page.status_code == 200
    assert "The filter was ignored" in page.content.decode()


@pytest.mark.parametrize("value", [2**53, 2**63, 10**30])
def test_huge_integers_in_witness_bodies_are_400s(alice, grown, value):
    key = Ed25519PrivateKey.generate()
    verifier = notes.cosignature_verifier_key("w.example/1", key.public_key().public_bytes_raw())
    body = {"organization": value, "name": "w.example/1", "verifier_key": verifier}
    assert api_as(alice).post("/api/ledger/witnesses/", body, format="json").status_code == 400
    cosign = {"tree_size": value, "cosignature": "— w.example/1 AAAA"}
    assert (
        Client().post("/api/ledger/witness/cosign/", cosign, content_type="application/json").status_code
        == 400
    )


@pytest.mark.parametrize("timestamp", [2**53, 2**63 - 1, 2**63, 2**64 - 1])
def test_a_witness_timestamp_beyond_exact_json_is_a_400(alice, grown, timestamp):
    org = organization_create(owner=alice, name="Watchers")
    key = Ed25519PrivateKey.generate()
    verifier = notes.cosignature_verifier_key("w.example/1", key.public_key().public_bytes_raw())
    registered = api_as(alice).post(
        "/api/ledger/witnesses/", {"organization": org.pk, "name": "w.example/1", "verifier_key": verifier},
        format="json",
    )  # fmt: skip
    assert registered.status_code == 201, registered.content
    note = Client().get("/api/ledger/checkpoint/").content.decode()
    body = notes.parse_note(note)[0]
    size = notes.parse_checkpoint(body)[1]
    line = notes.cosign(body, "w.example/1", key, timestamp)
    response = Client().post(
        "/api/ledger/witness/cosign/",
        {"tree_size": size, "cosignature": line},
        content_type="application/json",
    )
    assert response.status_code == 400, response.content
    assert "timestamp" in response.json()["detail"]
    assert not Cosignature.objects.exists()
    fine = notes.cosign(body, "w.example/1", key, 1_700_000_000)
    response = Client().post(
        "/api/ledger/witness/cosign/",
        {"tree_size": size, "cosignature": fine},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
