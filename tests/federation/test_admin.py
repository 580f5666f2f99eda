"""The admin lists and shows every federation table to staff, read-only, with amounts in tokens."""

import pytest
from django.urls import reverse

from federation.models import Federation, Party, Payout, Rejection, Round, SecaggKey, Update
from tests.federation.helpers import admitted, create, keyed, small_delta, submit

pytestmark = pytest.mark.django_db


def test_staff_read_every_federation_table_and_cannot_edit_ledgered_rows(
    client, staff, alice, bob, carol, mallory
):
    federation = create(alice, pool=12_345)
    b, _c = admitted(federation, [keyed(bob), keyed(carol)])
    submit(federation, 1, b, small_delta(federation))
    client.force_login(staff)
    listing = client.get(reverse("admin:federation_federation_changelist")).content.decode()
    assert "123.45 tokens" in listing
    for model in (Federation, Party, Round, Update, Rejection, SecaggKey, Payout):
        name = model._meta.model_name
        assert client.get(reverse(f"admin:federation_{name}_changelist")).status_code == 200, name
        row = model.objects.first()
        if row is not None:
            page = client.get(reverse(f"admin:federation_{name}_change", args=[row.pk]))
            assert page.status_code == 200, name
            assert (
                client.post(
                    reverse(f"admin:federation_{name}_delete", args=[row.pk]), {"post": "yes"}
                ).status_code
                == 403
            )
    assert Update.objects.count() == 1
    client.force_login(mallory)
    assert (
        client.get(reverse("admin:federation_federation_changelist")).status_code == 302
    )  # to the login page
