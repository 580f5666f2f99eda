"""The federation `make run` shows: five sites over five rounds, one poisoning its updates and left out of every
round by Multi-Krum, paid nothing; the others paid the pool minus the fee by contribution; the model minted."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from federation import demo
from federation.models import Federation
from ledger import selectors as ledger_selectors
from models_market.models import ModelVersion
from platform_site.home.management.commands.demo import seed_accounts
from tests.ledger.helpers import fund

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_the_demo_federation_finishes_with_the_poisoner_excluded_and_the_pool_paid():
    seed_accounts(stdout=StringIO())
    fund(f"user:{get_user_model().objects.get(username='carol').pk}", 50_000)
    out = StringIO()
    demo.seed(stdout=out)
    federation = Federation.objects.get()
    assert federation.status == Federation.Status.FINISHED, out.getvalue()
    rounds = list(federation.round_set.order_by("number"))
    assert [r.number for r in rounds] == [1, 2, 3, 4, 5] and all(r.status == "closed" for r in rounds)
    poisoner = federation.parties.get(user__username="sim-party-1")
    for rnd in rounds:
        [(digest, reason)] = rnd.excluded.items()
        assert rnd.updates.get(sha256=digest).party == poisoner and reason.startswith("outlier")
    assert rounds[-1].metrics["accuracy"] > rounds[0].metrics["accuracy"]
    payouts = list(federation.payouts.all())
    assert poisoner.pk not in {p.party_id for p in payouts}
    assert sum(p.amount for p in payouts) == 20_000 - 20_000 * federation.fee_bp // 10_000
    minted = ModelVersion.objects.get(origin=ModelVersion.Origin.FEDERATED)
    assert minted.token.owner == federation.coordinator
    assert {c.account for c in minted.contributors.all()} == {p.account for p in payouts}
    assert ledger_selectors.account_balance(name=f"user:{poisoner.user_id}") == 0
    demo.seed(stdout=out)  # a second run changes nothing
    assert Federation.objects.count() == 1 and "already seeded" in out.getvalue()
    call_command("verify_ledger", "--quiet")
