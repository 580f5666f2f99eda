import base64
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from platform_site.accounts.models import ApiToken, Membership, PublicKey, User
from platform_site.accounts.selectors import api_token_list_for_user, organization_list_for_user
from platform_site.accounts.services import (
    api_token_authenticate,
    api_token_create,
    api_token_revoke,
    membership_remove,
    membership_set,
    organization_create,
    parse_ed25519_public_key,
    public_key_register,
    public_key_revoke,
    user_signup,
)
from platform_site.errors import Conflict, DomainError, PermissionDenied
from tests.factories import MembershipFactory
from tests.platform_site.accounts.keys import ed25519_base64, ed25519_pem, rsa_pem

pytestmark = pytest.mark.django_db


def test_signup_creates_a_user_with_a_hashed_password():
    user = user_signup(username="carol", password="a-long-unusual-passphrase", email="carol@example.com")
    assert user.check_password("a-long-unusual-passphrase")
    assert user.password != "a-long-unusual-passphrase"


def test_signup_refuses_a_taken_username_whatever_its_case(alice):
    with pytest.raises(Conflict):
        user_signup(username="ALICE", password="a-long-unusual-passphrase")
    assert User.objects.count() == 1


def test_signup_refuses_a_weak_password():
    with pytest.raises(ValidationError):
        user_signup(username="carol", password="12345")
    assert not User.objects.filter(username="carol").exists()


def test_creating_an_organization_makes_its_creator_owner(alice):
    organization = organization_create(owner=alice, name="Acme Data")
    assert organization.slug == "acme-data"
    assert Membership.objects.get(organization=organization, user=alice).role == Membership.Role.OWNER


def test_a_second_organization_with_the_same_name_is_a_conflict(alice, bob):
    organization_create(owner=alice, name="Acme")
    with pytest.raises(Conflict):
        organization_create(owner=bob, name="acme")


def test_an_owner_adds_a_member_and_changes_their_role(alice, bob):
    organization = organization_create(owner=alice, name="Acme")
    membership_set(organization=organization, actor=alice, user=bob, role="member")
    membership_set(organization=organization, actor=alice, user=bob, role="owner")
    assert Membership.objects.get(organization=organization, user=bob).role == "owner"


def test_a_plain_member_cannot_add_members(alice, bob, mallory):
    organization = organization_create(owner=alice, name="Acme")
    membership_set(organization=organization, actor=alice, user=bob, role="member")
    with pytest.raises(PermissionDenied):
        membership_set(organization=organization, actor=bob, user=mallory, role="member")


def test_the_last_owner_cannot_be_removed(alice):
    organization = organization_create(owner=alice, name="Acme")
    with pytest.raises(DomainError):
        membership_remove(organization=organization, actor=alice, user=alice)
    assert Membership.objects.filter(organization=organization, user=alice).exists()


def test_the_last_owner_cannot_step_down_to_member(alice):
    organization = organization_create(owner=alice, name="Acme")
    with pytest.raises(DomainError):
        membership_set(organization=organization, actor=alice, user=alice, role="member")
    assert Membership.objects.get(organization=organization, user=alice).role == "owner"


def test_an_owner_may_leave_once_another_owner_exists(alice, bob):
    organization = organization_create(owner=alice, name="Acme")
    membership_set(organization=organization, actor=alice, user=bob, role="owner")
    membership_remove(organization=organization, actor=alice, user=alice)
    assert list(organization.members.all()) == [bob]


def test_organizations_for_a_user_carry_their_role_and_the_member_count(alice, bob):
    organization = organization_create(owner=alice, name="Acme")
    membership_set(organization=organization, actor=alice, user=bob, role="member")
    [listed] = organization_list_for_user(user=bob)
    assert (listed.role, listed.member_count) == ("member", 2)


def test_only_the_hash_of_a_token_key_is_stored(alice):
    token, key = api_token_create(user=alice, name="laptop")
    stored = ApiToken.objects.get(pk=token.pk)
    assert key.startswith(stored.prefix + ".")
    assert key not in {stored.key_hash, stored.prefix, stored.name}
    assert len(stored.key_hash) == 64


def test_a_token_authenticates_its_user_and_records_its_use(alice):
    token, key = api_token_create(user=alice, name="laptop")
    assert api_token_authenticate(key=key) == alice
    assert ApiToken.objects.get(pk=token.pk).last_used_at is not None


def test_a_revoked_token_is_refused(alice):
    token, key = api_token_create(user=alice, name="laptop")
    api_token_revoke(token=token, actor=alice)
    assert api_token_authenticate(key=key) is None
    assert api_token_list_for_user(user=alice).get().status == "revoked"


def test_an_expired_token_is_refused(alice):
    token, key = api_token_create(user=alice, name="laptop", expires_at=timezone.now() + timedelta(days=1))
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api_token_authenticate(key=key) is None
    assert api_token_list_for_user(user=alice).get().status == "expired"


def test_a_token_with_a_forged_secret_is_refused(alice):
    _token, key = api_token_create(user=alice, name="laptop")
    prefix = key.split(".")[0]
    assert api_token_authenticate(key=f"{prefix}.forged") is None


def test_mallory_cannot_revoke_alices_token(alice, mallory):
    token, _key = api_token_create(user=alice, name="laptop")
    with pytest.raises(PermissionDenied):
        api_token_revoke(token=token, actor=mallory)


def test_a_public_key_is_read_from_pem_and_from_raw_base64():
    assert len(parse_ed25519_public_key(ed25519_pem())) == 32
    assert len(parse_ed25519_public_key(ed25519_base64())) == 32


def test_base64_wrapped_over_lines_is_accepted():
    text = ed25519_base64()
    assert len(parse_ed25519_public_key(text[:20] + "\n" + text[20:])) == 32


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (rsa_pem(), "only Ed25519"),
        (base64.b64encode(b"x" * 31).decode(), "32 bytes"),
        ("not a key at all!", "neither PEM nor valid base64"),
        ("-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----", "not a readable public key"),
        ("", "paste an Ed25519 public key"),
    ],
)
def test_anything_but_an_ed25519_public_key_is_refused_with_a_message(text, message):
    with pytest.raises(DomainError, match=message):
        parse_ed25519_public_key(text)


def test_a_public_key_cannot_be_registered_twice(alice, bob):
    pem = ed25519_pem()
    public_key_register(actor=alice, name="laptop", key_text=pem)
    with pytest.raises(Conflict):
        public_key_register(actor=bob, name="mine", key_text=pem)


def test_an_owner_registers_a_key_for_the_organization_and_a_member_cannot(alice, bob):
    organization = organization_create(owner=alice, name="Acme")
    MembershipFactory(organization=organization, user=bob)
    key = public_key_register(actor=alice, name="server", key_text=ed25519_pem(), organization=organization)
    assert (key.organization, key.user) == (organization, None)
    with pytest.raises(PermissionDenied):
        public_key_register(actor=bob, name="mine", key_text=ed25519_pem(), organization=organization)
    with pytest.raises(PermissionDenied):
        public_key_revoke(key=key, actor=bob)


def test_a_revoked_public_key_stays_registered_but_revoked(alice, mallory):
    key = public_key_register(actor=alice, name="laptop", key_text=ed25519_base64())
    with pytest.raises(PermissionDenied):
        public_key_revoke(key=key, actor=mallory)
    public_key_revoke(key=key, actor=alice)
    assert PublicKey.objects.get(pk=key.pk).revoked_at is not None
