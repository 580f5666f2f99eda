"""The demo seed runs one federation to its end through the party's client, with a byzantine party excluded."""

from io import StringIO

import pytest
from django.core.management import call_command

from federation.demo import NAME
from federation.models import Federation, Round

pytestmark = pytest.mark.django_db


def test_the_demo_seeds_a_finished_federation_with_its_byzantine_party_excluded_every_round(
    settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VAR_DIR = tmp_path  # the simulated parties' keys, tokens and rows
    call_command("demo", "--seed", stdout=StringIO())
    federation = Federation.objects.get(name=NAME)
    assert federation.status == "finished", federation.error
    rounds = list(Round.objects.filter(federation=federation, status="closed"))
    assert rounds and all(len(r.excluded) == 1 for r in rounds)
    assert federation.model_version_id is not None and federation.payouts.exists()
    out = StringIO()
    call_command("demo", "--seed", stdout=out)
    assert "federation: already seeded" in out.getvalue() and Federation.objects.count() == 1
    call_command("verify_ledger", "--quiet")
