import pytest
from django.urls import reverse

from platform_site.accounts.services import api_token_create, organization_create, public_key_register
from tests.platform_site.accounts.keys import ed25519_pem

pytestmark = pytest.mark.django_db


def test_every_accounts_admin_page_renders_and_never_shows_a_token_key(client, staff, alice):
    organization = organization_create(owner=alice, name="Acme")
    token, key = api_token_create(user=alice, name="laptop")
    public_key = public_key_register(actor=alice, name="signing", key_text=ed25519_pem())
    client.force_login(staff)
    urls = [
        reverse(f"admin:accounts_{model}_changelist")
        for model in ("user", "organization", "membership", "apitoken", "publickey")
    ]
    urls += [
        reverse("admin:accounts_user_change", args=[alice.pk]),
        reverse("admin:accounts_organization_change", args=[organization.pk]),
        reverse("admin:accounts_apitoken_change", args=[token.pk]),
        reverse("admin:accounts_publickey_change", args=[public_key.pk]),
        reverse("admin:accounts_user_changelist") + "?q=alice",
        reverse("admin:accounts_apitoken_changelist") + "?status=active",
        reverse("admin:accounts_publickey_changelist") + "?revoked=no",
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert key not in response.content.decode()
    assert client.get(reverse("admin:accounts_apitoken_add")).status_code == 403
