from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from platform_site.accounts.models import ApiToken, Membership, Organization, PublicKey
from platform_site.accounts.services import api_token_create, organization_create, public_key_register
from tests.conftest import api_as
from tests.factories import MembershipFactory, OrganizationFactory
from tests.platform_site.accounts.keys import ed25519_base64, ed25519_pem, rsa_pem

pytestmark = pytest.mark.django_db

ME = reverse("api-accounts-me")
TOKENS = reverse("api-accounts-tokens")
KEYS = reverse("api-accounts-keys")
ORGANIZATIONS = reverse("api-accounts-organizations")


def token_client(key: str, keyword: str = "Token") -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {key}")
    return client


def test_me_tells_who_you_are_and_your_organizations(alice):
    organization = organization_create(owner=alice, name="Acme")
    response = api_as(alice).get(ME)
    assert response.status_code == 200
    assert response.json() == {
        "id": alice.pk,
        "username": "alice",
        "email": "alice@example.com",
        "display_name": "",
        "organizations": [{"id": organization.pk, "name": "Acme", "slug": "acme", "role": "owner"}],
    }


def test_a_created_token_works_until_it_is_revoked(alice):
    response = api_as(alice).post(TOKENS, {"name": "laptop"})
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "active"
    assert body["key"].startswith(body["prefix"] + ".")

    me = token_client(body["key"]).get(ME)
    assert (me.status_code, me.json()["username"]) == (200, "alice")
    assert token_client(body["key"], keyword="Bearer").get(ME).status_code == 200

    revoked = token_client(body["key"]).post(reverse("api-accounts-token-revoke", args=[body["id"]]))
    assert (revoked.status_code, revoked.json()["status"]) == (200, "revoked")
    assert token_client(body["key"]).get(ME).status_code == 401


def test_the_token_list_never_shows_a_key(alice):
    _token, key = api_token_create(user=alice, name="laptop")
    response = api_as(alice).get(TOKENS)
    assert response.status_code == 200
    [listed] = response.json()["results"]
    assert "key" not in listed
    assert key not in response.content.decode()


def test_an_expired_token_gets_401(alice):
    token, key = api_token_create(user=alice, name="old")
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert token_client(key).get(ME).status_code == 401


def test_a_token_cannot_be_created_already_expired(alice):
    response = api_as(alice).post(TOKENS, {"name": "x", "expires_at": "2000-01-01T00:00:00Z"})
    assert response.status_code == 400
    assert "future" in response.json()["detail"]


def test_a_token_needs_a_name(alice):
    response = api_as(alice).post(TOKENS, {"name": ""})
    assert response.status_code == 400
    assert "name" in response.json()


def test_mallory_cannot_see_or_revoke_alices_token(alice, mallory):
    token, _key = api_token_create(user=alice, name="laptop")
    client = api_as(mallory)
    assert client.get(TOKENS).json()["results"] == []
    response = client.post(reverse("api-accounts-token-revoke", args=[token.pk]))
    assert response.status_code == 404
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None


@pytest.mark.parametrize(
    "url",
    [ME, TOKENS, KEYS, ORGANIZATIONS, reverse("api-accounts-organization-detail", args=[1])],
)
def test_anonymous_calls_are_refused_not_crashed(api, url):
    assert api.get(url).status_code == 401
    assert api.post(url, {}).status_code in {401, 405}


def test_a_garbage_token_gets_401(api):
    api.credentials(HTTP_AUTHORIZATION="Token nonsense")
    assert api.get(ME).status_code == 401


@pytest.mark.parametrize("make_key", [ed25519_pem, ed25519_base64], ids=["pem", "base64"])
def test_a_public_key_is_registered_from_pem_or_base64(alice, make_key):
    response = api_as(alice).post(KEYS, {"name": "laptop", "public_key": make_key()})
    assert response.status_code == 201
    body = response.json()
    assert (body["algorithm"], body["user"], body["organization"]) == ("ed25519", alice.pk, None)
    assert len(body["key_id"]) == 16
    assert PublicKey.objects.get(pk=body["id"]).user == alice


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (rsa_pem(), "only Ed25519"),
        ("AAAA", "32 bytes"),
        ("%%% garbage %%%", "neither PEM nor valid base64"),
    ],
    ids=["rsa", "wrong-length", "garbage"],
)
def test_a_bad_public_key_gets_400_with_a_message(alice, text, message):
    response = api_as(alice).post(KEYS, {"name": "laptop", "public_key": text})
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not PublicKey.objects.exists()


def test_a_public_key_registered_twice_gets_409(alice):
    pem = ed25519_pem()
    assert api_as(alice).post(KEYS, {"name": "one", "public_key": pem}).status_code == 201
    response = api_as(alice).post(KEYS, {"name": "two", "public_key": pem})
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"


def test_a_key_for_an_organization_is_for_its_owners_only(alice, bob, mallory):
    organization = organization_create(owner=alice, name="Acme")
    MembershipFactory(organization=organization, user=bob)
    body = {"name": "server", "public_key": ed25519_pem(), "organization": organization.pk}
    assert api_as(mallory).post(KEYS, body).status_code == 404
    assert api_as(bob).post(KEYS, body).status_code == 403
    response = api_as(alice).post(KEYS, body)
    assert (response.status_code, response.json()["organization"]) == (201, organization.pk)
    assert [k["id"] for k in api_as(bob).get(KEYS).json()["results"]] == [response.json()["id"]]


def test_public_keys_are_revoked_by_their_owner_only(alice, mallory):
    key = public_key_register(actor=alice, name="laptop", key_text=ed25519_pem())
    url = reverse("api-accounts-key-revoke", args=[key.pk])
    assert api_as(mallory).post(url).status_code == 404
    response = api_as(alice).post(url)
    assert response.status_code == 200
    assert response.json()["revoked_at"] is not None


def test_creating_an_organization_makes_the_caller_owner(alice):
    response = api_as(alice).post(ORGANIZATIONS, {"name": "Acme Data", "description": "We sell data."})
    assert response.status_code == 201
    body = response.json()
    assert (body["slug"], body["role"], body["member_count"]) == ("acme-data", "owner", 1)
    assert api_as(alice).post(ORGANIZATIONS, {"name": "Acme Data"}).status_code == 409
    assert api_as(alice).post(ORGANIZATIONS, {"name": "!!!"}).status_code == 400


def test_the_organization_list_shows_mine_only(alice, mallory):
    organization_create(owner=alice, name="Acme")
    OrganizationFactory()
    assert [o["name"] for o in api_as(alice).get(ORGANIZATIONS).json()["results"]] == ["Acme"]
    assert api_as(mallory).get(ORGANIZATIONS).json()["count"] == 0


def test_organization_detail_lists_members_and_hides_from_mallory(alice, bob, mallory):
    organization = organization_create(owner=alice, name="Acme")
    MembershipFactory(organization=organization, user=bob)
    url = reverse("api-accounts-organization-detail", args=[organization.pk])
    response = api_as(bob).get(url)
    assert response.status_code == 200
    assert [(m["username"], m["role"]) for m in response.json()["members"]] == [
        ("alice", "owner"),
        ("bob", "member"),
    ]
    assert api_as(mallory).get(url).status_code == 404
    assert (
        api_as(alice)
        .get(reverse("api-accounts-organization-detail", args=[organization.pk + 1000]))
        .status_code
        == 404
    )


def test_only_an_owner_adds_members(alice, bob, mallory):
    organization = organization_create(owner=alice, name="Acme")
    url = reverse("api-accounts-organization-members", args=[organization.pk])

    assert api_as(mallory).post(url, {"username": "mallory", "role": "owner"}).status_code == 404

    response = api_as(alice).post(url, {"username": "bob"})
    assert (response.status_code, response.json()["role"]) == (200, "member")

    response = api_as(bob).post(url, {"username": "mallory", "role": "member"})
    assert response.status_code == 403
    assert not Membership.objects.filter(user=mallory).exists()


def test_adding_an_unknown_user_or_role_gets_400(alice):
    organization = organization_create(owner=alice, name="Acme")
    url = reverse("api-accounts-organization-members", args=[organization.pk])
    assert "username" in api_as(alice).post(url, {"username": "nobody"}).json()
    assert api_as(alice).post(url, {"username": "alice", "role": "king"}).status_code == 400


def test_the_last_owner_cannot_demote_themself_through_the_api(alice):
    organization = organization_create(owner=alice, name="Acme")
    url = reverse("api-accounts-organization-members", args=[organization.pk])
    response = api_as(alice).post(url, {"username": "alice", "role": "member"})
    assert response.status_code == 400
    assert "last owner" in response.json()["detail"]


def test_list_endpoints_do_not_query_per_row(alice, django_assert_max_num_queries):
    for n in range(5):
        organization = organization_create(owner=alice, name=f"Org {n}")
        public_key_register(actor=alice, name=f"k{n}", key_text=ed25519_pem(), organization=organization)
        api_token_create(user=alice, name=f"t{n}")
    client = api_as(alice)
    for url in (ME, TOKENS, KEYS, ORGANIZATIONS):
        with django_assert_max_num_queries(4):
            assert client.get(url).status_code == 200
    assert Organization.objects.count() == 5
