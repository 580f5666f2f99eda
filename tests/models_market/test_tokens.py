"""Tokens: transfer, approve, offers and sale with the creator's royalty, through the services."""

import pytest
from django.core.management import call_command

from ledger.models import Entry
from ledger.services import InsufficientFunds
from models_market import services
from models_market.models import ModelToken
from platform_site.errors import Conflict, DomainError, PermissionDenied
from tests.factories import UserFactory
from tests.ledger.helpers import fund
from tests.models_market.helpers import balance, make_version, mint

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(alice) -> ModelToken:
    return mint(make_version(alice), royalty_bp=1_000)


def entries(kind: str) -> list[Entry]:
    return list(Entry.objects.filter(kind=kind).order_by("seq"))


def test_the_owner_transfers_the_token_which_clears_its_approval_and_sale_price(token, alice, bob, mallory):
    token = services.token_approve(token=token, actor=alice, operator=mallory)
    token = services.token_offer_set(token=token, actor=alice, sale_price=9_000)
    token = services.token_transfer(token=token, actor=alice, to="bob")
    token.refresh_from_db()
    assert (token.owner, token.approved, token.sale_price, token.creator) == (bob, None, None, alice)
    [entry] = entries("models_market.token.transferred")
    assert entry.payload == {"token": token.pk, "version": token.version_id, "from": f"user:{alice.pk}",
                             "to": f"user:{bob.pk}"}  # fmt: skip
    assert entry.actor == f"user:{alice.pk}"
    call_command("verify_ledger", "--quiet")


def test_the_approved_operator_transfers_once_and_the_approval_is_gone(token, alice, bob, mallory):
    token = services.token_approve(token=token, actor=alice, operator=f"user:{bob.pk}")
    assert entries("models_market.token.approved")[0].payload["operator"] == f"user:{bob.pk}"
    token = services.token_transfer(token=token, actor=bob, to=mallory)
    assert (token.owner, token.approved) == (mallory, None)
    with pytest.raises(PermissionDenied):  # the new owner's token: bob is nobody to it now
        services.token_transfer(token=token, actor=bob, to=bob)


def test_mallory_neither_transfers_nor_approves_nor_sets_offers(token, mallory):
    before = Entry.objects.count()
    with pytest.raises(PermissionDenied):
        services.token_transfer(token=token, actor=mallory, to=mallory)
    with pytest.raises(PermissionDenied):
        services.token_approve(token=token, actor=mallory, operator=mallory)
    with pytest.raises(PermissionDenied):
        services.token_offer_set(token=token, actor=mallory, sale_price=1)
    assert Entry.objects.count() == before
    token.refresh_from_db()
    assert token.owner.username == "alice"


@pytest.mark.parametrize(
    "to",
    [
        "treasury",
        "issuance",
        "escrow:1",
        "deposit:1",
        "org:1",
        "dao:1",
        "user:999999",
        "nobody",
        "",
        "user:07",
    ],
)
def test_tokens_go_to_existing_users_only_never_system_accounts(token, alice, to):
    with pytest.raises(DomainError):
        services.token_transfer(token=token, actor=alice, to=to)
    assert ModelToken.objects.get(pk=token.pk).owner == alice


def test_an_inactive_user_receives_no_token(token, alice):
    UserFactory(username="gone", is_active=False)
    with pytest.raises(DomainError, match="no user"):
        services.token_transfer(token=token, actor=alice, to="gone")


def test_approving_the_owner_is_refused_and_none_clears_the_approval(token, alice, bob):
    with pytest.raises(DomainError):
        services.token_approve(token=token, actor=alice, operator=alice)
    services.token_approve(token=token, actor=alice, operator=bob)
    token = services.token_approve(token=token, actor=alice, operator=None)
    assert token.approved is None
    assert [e.payload["operator"] for e in entries("models_market.token.approved")] == [
        f"user:{bob.pk}",
        None,
    ]


def test_a_request_made_on_a_stale_read_is_a_conflict(token, alice, bob):
    stale = ModelToken.objects.get(pk=token.pk)
    services.token_transfer(token=token, actor=alice, to=bob)
    with pytest.raises(Conflict, match="changed hands"):
        services.token_transfer(token=stale, actor=alice, to=bob)
    with pytest.raises(Conflict):
        services.token_offer_set(token=stale, actor=alice, sale_price=5)


def test_offers_are_kept_unless_given_and_ledgered(token, alice):
    token = services.token_offer_set(
        token=token, actor=alice, price_perpetual=5_000, price_timed=1_000, timed_days=30, price_quota=700,
        quota_calls=50, price_per_call=3, listed=True,
    )  # fmt: skip
    token = services.token_offer_set(token=token, actor=alice, price_timed=None)
    token.refresh_from_db()
    assert (token.price_perpetual, token.price_timed, token.price_quota, token.price_per_call, token.listed) == (
        5_000, None, 700, 3, True,
    )  # fmt: skip
    last = entries("models_market.token.offered")[-1].payload
    assert last["price_timed"] is None and last["price_perpetual"] == 5_000 and last["listed"] is True


@pytest.mark.parametrize(
    "offer",
    [
        {"sale_price": 0},
        {"sale_price": -5},
        {"sale_price": True},
        {"sale_price": 2**53},
        {"price_per_call": -1},
        {"price_per_call": 1.5},
        {"price_timed": 100},  # without timed_days
        {"price_quota": 100},  # without quota_calls
        {"price_quota": 100, "quota_calls": 0},
        {"price_timed": 100, "timed_days": 10**9},
        {"listed": True},  # nothing to sell
        {"listed": "yes", "price_perpetual": 10},
    ],
)
def test_bad_offers_are_refused_with_a_message(token, alice, offer):
    with pytest.raises(DomainError):
        services.token_offer_set(token=token, actor=alice, **offer)
    assert not entries("models_market.token.offered")


def test_a_resale_pays_the_seller_less_the_creators_royalty_and_the_fee_exactly(token, alice, bob, mallory):
    # alice, the creator, sells first: no royalty to herself.
    fund(f"user:{bob.pk}", 10_000)
    token = services.token_offer_set(token=token, actor=alice, sale_price=10_000)
    token = services.token_buy(token=token, buyer=bob)
    assert (balance(bob), balance(alice), balance("treasury")) == (0, 9_750, 250)
    # bob resells to mallory at 20,001: fee 500 (2.5%), royalty 10% of the rest (1,950), bob 17,551.
    fund(f"user:{mallory.pk}", 25_000)
    token = services.token_offer_set(token=token, actor=bob, sale_price=20_001)
    token = services.token_buy(token=token, buyer=mallory, expected_price=20_001)
    assert (balance(mallory), balance(bob), balance(alice), balance("treasury")) == (
        4_999, 17_551, 9_750 + 1_950, 250 + 500,
    )  # fmt: skip
    token.refresh_from_db()
    assert (token.owner, token.sale_price, token.approved) == (mallory, None, None)
    sold = entries("models_market.token.sold")[-1].payload
    assert (sold["price"], sold["royalty"], sold["fee"]) == (20_001, 1_950, 500)
    call_command("verify_ledger", "--quiet")


def test_buying_is_refused_when_not_for_sale_own_repriced_or_unaffordable(token, alice, bob):
    with pytest.raises(Conflict, match="not for sale"):
        services.token_buy(token=token, buyer=bob)
    token = services.token_offer_set(token=token, actor=alice, sale_price=10_000)
    with pytest.raises(Conflict, match="own"):
        services.token_buy(token=token, buyer=alice)
    with pytest.raises(Conflict, match="price"):
        services.token_buy(token=token, buyer=bob, expected_price=9_000)
    fund(f"user:{bob.pk}", 9_999)
    with pytest.raises(InsufficientFunds, match=r"your balance is 99\.99 tokens"):
        services.token_buy(token=token, buyer=bob)
    assert ModelToken.objects.get(pk=token.pk).owner == alice
    assert not entries("models_market.token.sold")
