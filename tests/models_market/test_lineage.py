"""Lineage royalties: exact integer shares up a model's parents and training data, capped, summing to the amount."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models_market.models import ModelVersion
from models_market.services import payment_shares
from tests.factories import UserFactory
from tests.models_market.helpers import dataset_version, make_version, mint

pytestmark = pytest.mark.django_db


@pytest.fixture
def three_generations(alice, carol, dora):
    """dora's dataset → erin's base model (trained on it) → carol's fine-tune → alice's child: depth 3."""
    erin = UserFactory(username="erin")
    base = make_version(erin, lineage_bp=2_000, trained_on=dataset_version(dora), name="Base")
    mint(base)
    middle = make_version(carol, lineage_bp=1_000, parents=(base,), name="Middle")
    mint(middle)
    child = make_version(
        alice, lineage_bp=2_500, parents=(middle,), trained_on=dataset_version(dora), name="Child"
    )
    mint(child)
    return child, erin


def test_a_depth_three_split_pays_everyone_exactly(three_generations, alice, carol, dora):
    child, erin = three_generations
    shares = dict(payment_shares(version=child, amount=100_000, payer="user:999"))
    # fee 2,500; rest 97,500; the child's lineage 25% = 24,375, split between the middle model (12,188, with the
    # remainder) and dora's data (12,187). The middle passes 10% (1,218) to the base, which passes 20% (243) to
    # dora's data and keeps 975 for erin; carol keeps 10,970; alice 73,125.
    assert shares == {
        "treasury": 2_500,
        f"user:{alice.pk}": 73_125,
        f"user:{carol.pk}": 10_970,
        f"user:{erin.pk}": 975,
        f"user:{dora.pk}": 12_187 + 243,
    }
    assert sum(shares.values()) == 100_000


def test_the_lineage_cap_bounds_what_flows_up(alice, carol, settings):
    settings.MODELS_LINEAGE_CAP_BP = 1_000
    parent = make_version(carol)
    mint(parent)
    child = make_version(alice, lineage_bp=9_000, parents=(parent,))
    mint(child)
    shares = dict(payment_shares(version=child, amount=10_000, payer="user:999"))
    assert shares == {"treasury": 250, f"user:{carol.pk}": 975, f"user:{alice.pk}": 8_775}


def test_nothing_flows_past_the_depth_limit(alice, carol, dora, settings):
    settings.MODELS_LINEAGE_DEPTH = 1
    base = make_version(dora, lineage_bp=5_000, trained_on=dataset_version(UserFactory(username="erin")))
    mint(base)
    child = make_version(alice, lineage_bp=1_000, parents=(base,))
    mint(child)
    shares = dict(payment_shares(version=child, amount=10_000, payer="user:999"))
    assert shares == {"treasury": 250, f"user:{dora.pk}": 975, f"user:{alice.pk}": 8_775}


def test_a_parent_never_tokenized_pays_its_maker(alice, carol):
    parent = make_version(carol)  # no token
    child = make_version(alice, lineage_bp=5_000, parents=(parent,))
    mint(child)
    shares = dict(payment_shares(version=child, amount=1_000, payer="user:999"))
    assert shares[f"user:{carol.pk}"] == 975 * 3_000 // 10_000  # 50% asked, capped at 30%
    assert sum(shares.values()) == 1_000


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    amount=st.integers(min_value=1, max_value=2**53 - 1),
    bps=st.tuples(*[st.integers(min_value=0, max_value=10_000)] * 3),
)
def test_depth_three_splits_sum_exactly_for_any_amount(three_generations, amount, bps):
    child, _erin = three_generations
    middle = ModelVersion.objects.get(asset__name="Middle")
    base = ModelVersion.objects.get(asset__name="Base")
    for version, bp in zip((child, middle, base), bps, strict=True):
        ModelVersion.objects.filter(pk=version.pk).update(lineage_bp=bp)
    child.refresh_from_db()
    shares = payment_shares(version=child, amount=amount, payer="user:999")
    assert sum(part for _, part in shares) == amount
    assert all(part > 0 for _, part in shares)
    assert len({account for account, _ in shares}) == len(shares)
    fee = amount * 250 // 10_000
    owner = dict(shares)[f"user:{child.token.owner_id}"]
    # What leaves the token's owner is at most the cap (30%) of what the fee leaves, rounded down.
    assert amount - fee - owner <= (amount - fee) * 3_000 // 10_000
