import re

import pytest
from django.urls import reverse

from platform_site.accounts.models import ApiToken, Membership, PublicKey, User
from platform_site.accounts.services import (
    api_token_create,
    membership_set,
    organization_create,
    public_key_register,
)
from tests.factories import PASSWORD, MembershipFactory
from tests.platform_site.accounts.keys import ed25519_pem, rsa_pem

pytestmark = pytest.mark.django_db

PROFILE = reverse("accounts:profile")


def signup(client, **overrides):
    data = {"username": "carol", "email": "", "password1": "a-long-unusual-passphrase"}
    data["password2"] = data["password1"]
    data.update(overrides)
    return client.post(reverse("accounts:signup"), data)


def test_the_signup_page_creates_a_user_and_logs_them_in(client):
    assert client.get(reverse("accounts:signup")).status_code == 200
    response = signup(client)
    assert response.status_code == 302
    assert response.url == reverse("home:dashboard")
    user = User.objects.get(username="carol")
    assert client.session["_auth_user_id"] == str(user.pk)


def test_a_weak_password_shows_an_error_and_creates_nobody(client):
    response = signup(client, password1="123", password2="123")
    assert response.status_code == 200
    assert "too short" in response.content.decode()
    assert not User.objects.filter(username="carol").exists()
    assert "_auth_user_id" not in client.session


def test_a_taken_username_shows_an_error_and_creates_nobody(client, alice):
    response = signup(client, username="Alice")
    assert response.status_code == 200
    assert "is taken" in response.content.decode()
    assert User.objects.count() == 1


def test_mismatched_passwords_show_an_error(client):
    response = signup(client, password2="something-else-entirely")
    assert "The two passwords differ." in response.content.decode()
    assert not User.objects.exists()


def test_the_login_page_logs_a_user_in(client, alice):
    page = client.get(reverse("accounts:login")).content.decode()
    assert 'name="username"' in page
    assert 'name="password"' in page
    assert 'type="submit"' in page
    response = client.post(reverse("accounts:login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_logging_out_takes_a_post(client, alice):
    client.force_login(alice)
    assert client.get(reverse("accounts:logout")).status_code == 405
    client.post(reverse("accounts:logout"))
    assert "_auth_user_id" not in client.session


def test_the_profile_page_requires_login(client):
    response = client.get(PROFILE)
    assert response.status_code == 302
    assert response.url.startswith(reverse("accounts:login"))


def test_the_profile_shows_wallet_organizations_tokens_and_keys(client, alice):
    organization_create(owner=alice, name="Acme")
    api_token_create(user=alice, name="laptop")
    public_key_register(actor=alice, name="signing", key_text=ed25519_pem())
    client.force_login(alice)
    page = client.get(PROFILE).content.decode()
    assert "0.00 tokens" in page
    assert "Acme" in page
    assert "Owner" in page
    assert "laptop" in page
    assert "signing" in page


def test_a_new_token_is_shown_once_with_a_warning(client, alice):
    client.force_login(alice)
    response = client.post(reverse("accounts:token-create"), {"name": "laptop", "expires_in_days": "30"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    key = re.search(r'<code id="new-token-key">([^<]+)</code>', page).group(1)
    assert "shown this once" in page
    token = ApiToken.objects.get(user=alice)
    assert key.startswith(token.prefix + ".")
    assert token.expires_at is not None
    assert key not in client.get(PROFILE).content.decode()


def test_a_token_without_a_name_shows_a_form_error(client, alice):
    client.force_login(alice)
    response = client.post(reverse("accounts:token-create"), {"name": ""})
    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_a_token_is_revoked_with_a_post_and_only_by_its_user(client, alice, mallory):
    token, _key = api_token_create(user=alice, name="laptop")
    url = reverse("accounts:token-revoke", args=[token.pk])
    client.force_login(mallory)
    assert client.post(url).status_code == 404
    client.force_login(alice)
    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 302
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None


def test_a_public_key_is_registered_from_the_profile(client, alice):
    client.force_login(alice)
    response = client.post(reverse("accounts:key-register"), {"name": "laptop", "public_key": ed25519_pem()})
    assert response.status_code == 302
    assert PublicKey.objects.get().user == alice


def test_an_rsa_key_shows_a_form_error_not_a_crash(client, alice):
    client.force_login(alice)
    response = client.post(reverse("accounts:key-register"), {"name": "laptop", "public_key": rsa_pem()})
    assert response.status_code == 200
    assert "only Ed25519 public keys are accepted" in response.content.decode()
    assert not PublicKey.objects.exists()


def test_a_key_cannot_be_registered_for_someone_elses_organization(client, alice, mallory):
    organization = organization_create(owner=alice, name="Acme")
    client.force_login(mallory)
    response = client.post(
        reverse("accounts:key-register"),
        {"name": "sneaky", "public_key": ed25519_pem(), "organization": organization.pk},
    )
    assert response.status_code == 200
    assert not PublicKey.objects.exists()


def test_a_public_key_is_revoked_from_the_profile_by_its_owner_only(client, alice, mallory):
    key = public_key_register(actor=alice, name="laptop", key_text=ed25519_pem())
    url = reverse("accounts:key-revoke", args=[key.pk])
    client.force_login(mallory)
    assert client.post(url).status_code == 404
    client.force_login(alice)
    assert client.post(url).status_code == 302
    assert PublicKey.objects.get(pk=key.pk).revoked_at is not None


def test_an_organization_is_created_from_its_page_with_the_creator_as_owner(client, alice):
    client.force_login(alice)
    response = client.post(reverse("accounts:organizations"), {"name": "Acme Data", "description": ""})
    membership = Membership.objects.get(user=alice)
    assert response.status_code == 302
    assert response.url == reverse("accounts:organization-detail", args=[membership.organization_id])
    assert membership.role == "owner"
    assert "Acme Data" in client.get(reverse("accounts:organizations")).content.decode()


def test_a_duplicate_organization_name_shows_a_form_error(client, alice):
    organization_create(owner=alice, name="Acme")
    client.force_login(alice)
    response = client.post(reverse("accounts:organizations"), {"name": "Acme"})
    assert response.status_code == 200
    assert "already exists" in response.content.decode()


def test_mallory_gets_404_on_an_organization_and_cannot_add_members(client, alice, mallory):
    organization = organization_create(owner=alice, name="Acme")
    client.force_login(mallory)
    assert client.get(reverse("accounts:organization-detail", args=[organization.pk])).status_code == 404
    response = client.post(
        reverse("accounts:member-add", args=[organization.pk]), {"username": "mallory", "role": "owner"}
    )
    assert response.status_code == 404
    assert not Membership.objects.filter(user=mallory).exists()


def test_an_owner_adds_changes_and_removes_a_member(client, alice, bob):
    organization = organization_create(owner=alice, name="Acme")
    client.force_login(alice)
    detail = reverse("accounts:organization-detail", args=[organization.pk])

    response = client.post(
        reverse("accounts:member-add", args=[organization.pk]), {"username": "bob", "role": "member"}
    )
    assert response.status_code == 302
    assert "bob" in client.get(detail).content.decode()

    client.post(reverse("accounts:member-role", args=[organization.pk, bob.pk]), {"role": "owner"})
    assert Membership.objects.get(user=bob).role == "owner"

    client.post(reverse("accounts:member-remove", args=[organization.pk, bob.pk]))
    assert not Membership.objects.filter(user=bob).exists()


def test_adding_an_unknown_username_shows_a_form_error(client, alice):
    organization = organization_create(owner=alice, name="Acme")
    client.force_login(alice)
    response = client.post(reverse("accounts:member-add", args=[organization.pk]), {"username": "nobody"})
    assert response.status_code == 200
    assert "There is no user named nobody." in response.content.decode()


def test_a_plain_member_cannot_add_members_and_sees_why(client, alice, bob, mallory):
    organization = organization_create(owner=alice, name="Acme")
    MembershipFactory(organization=organization, user=bob)
    client.force_login(bob)
    response = client.post(
        reverse("accounts:member-add", args=[organization.pk]),
        {"username": "mallory", "role": "member"},
        follow=True,
    )
    assert "only an owner of the organization may do this" in response.content.decode()
    assert not Membership.objects.filter(user=mallory).exists()


def test_the_last_owner_cannot_be_removed_from_the_page(client, alice):
    organization = organization_create(owner=alice, name="Acme")
    client.force_login(alice)
    response = client.post(reverse("accounts:member-remove", args=[organization.pk, alice.pk]), follow=True)
    assert response.status_code == 200
    assert "the last owner cannot leave" in response.content.decode()
    assert Membership.objects.filter(user=alice, role="owner").exists()


def test_pages_do_not_query_per_row(client, alice, bob, django_assert_max_num_queries):
    for n in range(5):
        organization = organization_create(owner=alice, name=f"Org {n}")
        membership_set(organization=organization, actor=alice, user=bob, role="member")
        public_key_register(actor=alice, name=f"k{n}", key_text=ed25519_pem(), organization=organization)
        api_token_create(user=alice, name=f"t{n}")
    client.force_login(alice)
    for url in (
        PROFILE,
        reverse("accounts:organizations"),
        reverse("accounts:organization-detail", args=[organization.pk]),
    ):
        with django_assert_max_num_queries(11):
            assert client.get(url).status_code == 200
