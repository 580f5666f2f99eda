"""A federation's final model, published through the models market: its parties are its lineage by measured
contribution, so the share of every paid call they receive follows their scores exactly."""

import pytest
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse

from ledger.models import Entry
from ml.architecture import build
from ml.artifacts import save_torch
from models_market import services
from models_market.models import ModelContributor, ModelVersion
from platform_site.errors import DomainError
from tests.factories import OrganizationFactory
from tests.ledger.helpers import fund

from .helpers import ROW, balance, schema

pytestmark = pytest.mark.django_db
SPEC = {"input_width": 3, "hidden": [4], "task": "classification", "output_width": 2}


def publish(owner, contributors, **extra):
    with transaction.atomic(durable=True):
        return services.federated_model_publish(
            owner=owner, name="Fraud, trained together", description="Five banks' fraud model", spec=SPEC,
            weights=save_torch(build(SPEC), SPEC), schema=schema().to_json(), metrics={"accuracy": 0.91},
            curve=[{"step": 1, "accuracy": 0.8}], contributors=contributors, source={"federation": 7},
            **extra,
        )  # fmt: skip


def test_the_parties_are_paid_their_contribution_share_of_every_call(alice, bob, carol, settings):
    bank = OrganizationFactory(name="Bank of Mallow")
    weights = {f"user:{carol.pk}": 6_100, f"org:{bank.pk}": 2_900, f"user:{alice.pk}": 1_000}
    version = publish(alice, [(a, w, w / 10_000) for a, w in weights.items()], lineage_bp=2_000)
    assert version.origin == ModelVersion.Origin.FEDERATED and version.token.owner == alice
    assert ModelContributor.objects.filter(version=version).count() == 3
    created = Entry.objects.get(seq=version.entry_seq)
    assert created.payload["contributors"] == [{"account": a, "weight": w} for a, w in weights.items()]

    amount = 12_345
    shares = dict(services.payment_shares(version=version, amount=amount, payer=f"user:{bob.pk}"))
    fee = amount * settings.MODELS_FEE_BP // 10_000
    pool = (amount - fee) * 2_000 // 10_000
    expected = {a: pool * w // 10_000 for a, w in weights.items()}
    expected[f"user:{carol.pk}"] += pool - sum(expected.values())  # the first takes the remainder
    expected[f"user:{alice.pk}"] += amount - fee - pool  # alice is also the token's owner
    assert shares == {"treasury": fee, **expected}
    assert sum(shares.values()) == amount


def test_the_model_page_names_the_parties_and_their_shares(client, alice, carol):
    bank = OrganizationFactory(name="Bank of Mallow")
    version = publish(alice, [(f"user:{carol.pk}", 3), (f"org:{bank.pk}", 1)])
    page = client.get(reverse("models_market:detail", args=[version.pk])).content.decode()
    assert "Trained together by" in page
    assert "carol (75% of the lineage share)" in page and "Bank of Mallow (25% of the lineage share)" in page
    assert "its parties' own rows, never pooled" in page and 'href="/federated/7/"' in page
    assert "uploaded by its maker" not in page.lower()


def test_a_paid_call_to_a_federated_model_settles_to_its_parties(alice, bob, carol, settings):
    version = publish(alice, [(f"user:{carol.pk}", 3), (f"user:{bob.pk}", 1)], lineage_bp=1_000)
    services.token_offer_set(token=version.token, actor=alice, price_per_call=1_000, price_perpetual=100,
                             listed=True)  # fmt: skip
    fund(f"user:{bob.pk}", 5_000)
    services.license_purchase(buyer=bob, token=version.token, kind="perpetual")
    before = {who: balance(who) for who in (alice, carol)}  # after the licence's own payment
    outputs, receipt = services.predict_call(user=bob, version=version, rows=[ROW])
    assert receipt is not None and set(outputs[0]) == {"prediction", "probabilities"}
    services.settle_pending(limit=100)
    fee = 1_000 * settings.MODELS_FEE_BP // 10_000
    pool = (1_000 - fee) * 1_000 // 10_000
    assert balance(carol) - before[carol] == pool * 3 // 4 + (pool - pool * 3 // 4 - pool // 4)
    assert balance(alice) - before[alice] == 1_000 - fee - pool
    call_command("verify_ledger", "--quiet")


@pytest.mark.parametrize(
    ("contributors", "message"),
    [
        ([], "1 to 1000 contributors"),
        ([("treasury", 5)], "distinct user or organization"),
        ([("user:1", 0)], "whole number from 1"),
        ([("user:1", 2**70)], "whole number from 1"),
        ([("user:1", True)], "whole number from 1"),
        ([("user:1", 1), ("user:1", 2)], "distinct"),
    ],
)
def test_bad_contributors_are_refused_and_nothing_is_written(alice, contributors, message):
    with pytest.raises(DomainError, match=message):
        publish(alice, contributors)
    assert not ModelVersion.objects.exists() and not Entry.objects.filter(kind__startswith="models").exists()


def test_weights_that_do_not_match_the_schema_are_refused(alice):
    wide = {**SPEC, "input_width": 5}
    with pytest.raises(DomainError, match="input width"), transaction.atomic():
        services.federated_model_publish(
            owner=alice, name="x", description="", spec=wide, weights=save_torch(build(wide), wide),
            schema=schema().to_json(), metrics={}, curve=[], contributors=[(f"user:{alice.pk}", 1)],
            source={"federation": 1},
        )  # fmt: skip
