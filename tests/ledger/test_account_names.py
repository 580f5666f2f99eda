"""Account names are spelled in one place, canonical, and only accounts someone may spend from receive tokens."""

import pytest
from django.db import transaction

from ledger import names, services
from ledger.models import Account, Entry, Escrow
from ledger.services import Share, UnknownAccount
from platform_site.accounts.services import organization_create
from platform_site.errors import DomainError
from tests.conftest import api_as
from tests.ledger.helpers import fund

pytestmark = pytest.mark.django_db

NOT_CANONICAL = [
    "user:01",
    "org:01",
    "user:00",
    "user:0",
    "user:²",  # superscript two: str.isdigit() says yes
    "user:\u0663",  # Arabic-Indic three
    "user:\uff13",  # fullwidth three
    "user:1\n",
    "user: 1",
    "user:+1",
    "user:",
    "User:1",
    "bank:1",
    "user:1:2",
    f"user:{2**63}",
]


@pytest.fixture
def funded(alice):
    fund(services.account_name(user=alice), 10_000)
    return services.account_name(user=alice)


def test_one_helper_spells_every_kind_of_account_name(alice):
    assert services.account_name(user=alice) == f"user:{alice.pk}"
    assert services.account_name(user=alice.pk) == f"user:{alice.pk}"
    assert services.account_name(org=7) == "org:7"
    assert services.account_name(dao=3) == "dao:3"
    assert services.account_name(escrow=12) == "escrow:12"
    assert services.account_name_for_user(alice) == f"user:{alice.pk}"
    with pytest.raises(TypeError):
        services.account_name(user=alice, org=7)
    with pytest.raises(ValueError, match="not an owner id"):
        services.account_name(user=0)


@pytest.mark.parametrize("name", NOT_CANONICAL)
def test_a_name_that_is_not_canonical_is_refused_with_the_right_spelling(name):
    with pytest.raises(ValueError, match="not an account name"):
        names.parse_account_name(name)


def test_the_refusal_says_what_was_meant():
    with pytest.raises(ValueError, match=r"did you mean user:1\?"):
        names.parse_account_name("user:01")


# The API trims surrounding whitespace from every text field first, as DRF does.
@pytest.mark.parametrize("name", [n for n in NOT_CANONICAL if n == n.strip()])
def test_a_transfer_to_a_name_that_is_not_canonical_is_a_400_and_opens_no_account(alice, bob, funded, name):
    # `user:0<bob>` names bob with a leading zero: it used to open a second, unspendable account for him.
    name = name.replace(":01", f":0{bob.pk}")
    accounts, entries = Account.objects.count(), Entry.objects.count()
    response = api_as(alice).post("/api/ledger/transfers/", {"destination": name, "amount": 5}, format="json")
    assert response.status_code == 400, response.content
    assert "not an account name" in response.json()["detail"]
    assert (Account.objects.count(), Entry.objects.count()) == (accounts, entries)
    assert Account.objects.get(name=funded).balance == 10_000


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        ("issuance", "destroy them"),
        ("treasury", "the treasury receives only the platform's fees"),
    ],
)
def test_users_cannot_send_tokens_to_system_accounts(alice, funded, destination, message):
    entries = Entry.objects.count()
    response = api_as(alice).post(
        "/api/ledger/transfers/", {"destination": destination, "amount": 500}, format="json"
    )
    assert response.status_code == 400, response.content
    assert message in response.json()["detail"]
    assert Entry.objects.count() == entries
    assert services.account_name(user=alice) == funded
    assert Account.objects.get(name=funded).balance == 10_000
    assert Account.objects.get(name="issuance").balance == -10_000


@pytest.mark.parametrize("closed", [False, True])
def test_nobody_sends_tokens_into_an_escrow_open_or_closed(alice, bob, funded, closed):
    with transaction.atomic():
        escrow = services.escrow_open(payer=funded, payee=services.account_name(user=bob), amount=1_000,
                                      actor=funded)  # fmt: skip
        if closed:
            services.escrow_release(escrow=escrow, actor="system")
    response = api_as(alice).post(
        "/api/ledger/transfers/", {"destination": escrow.account_name, "amount": 300}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "escrow" in response.json()["detail"]
    with pytest.raises(DomainError, match="escrow"), transaction.atomic():
        services.transfer(source=funded, destination=escrow.account_name, amount=300, actor="system")
    with pytest.raises(DomainError, match="escrow"), transaction.atomic():
        services.split_pay(source=funded, amount=300, actor="system",
                           shares=[Share(escrow.account_name, 5_000), Share("treasury", 5_000)])  # fmt: skip
    assert Account.objects.get(name=escrow.account_name).balance == (0 if closed else 1_000)


def test_a_transfer_to_an_account_nobody_has_opened_is_refused(alice, funded):
    for name in ("dao:999", "org:999", "user:999999"):
        response = api_as(alice).post(
            "/api/ledger/transfers/", {"destination": name, "amount": 5}, format="json"
        )
        assert response.status_code == 400, response.content
        assert response.json()["code"] == "unknown_account"
    assert not Account.objects.filter(name__in=["dao:999", "org:999", "user:999999"]).exists()


def test_users_still_send_to_users_organizations_and_opened_daos(alice, bob, funded):
    org = organization_create(owner=bob, name="Bob's lab")
    services_dao = "dao:41"
    with transaction.atomic():
        services.account_open_for_app(name=services_dao, kind="dao")
    for destination in (services.account_name(user=bob), services.account_name(org=org), services_dao):
        response = api_as(alice).post(
            "/api/ledger/transfers/", {"destination": destination, "amount": 100}, format="json"
        )
        assert response.status_code == 201, response.content
    assert Account.objects.get(name=funded).balance == 10_000 - 300


def test_the_platform_still_pays_the_treasury_and_nothing_ever_credits_issuance(alice, bob, funded):
    with transaction.atomic():
        services.transfer(source=funded, destination="treasury", amount=10, actor="system")
        services.split_pay(source=funded, amount=100, actor="system",
                           shares=[Share(services.account_name(user=bob), 9_000), Share("treasury", 1_000)])  # fmt: skip
    assert Account.objects.get(name="treasury").balance == 20
    for work in (
        lambda: services.transfer(source=funded, destination="issuance", amount=10, actor="system"),
        lambda: services.split_pay(
            source=funded,
            amount=100,
            actor="system",
            shares=[Share("issuance", 5_000), Share("treasury", 5_000)],
        ),
        lambda: services.postings_post(
            kind="app.thing.burned",
            actor="system",
            postings=[{"account": funded, "amount": -10}, {"account": "issuance", "amount": 10}],
        ),
        lambda: services.mint(destination="issuance", amount=10, actor="system", reason="loop"),
    ):
        with pytest.raises(DomainError, match="issuance"), transaction.atomic():
            work()
    assert Account.objects.get(name="issuance").balance == -10_000


def test_mints_and_escrows_refuse_system_and_non_canonical_accounts(alice, bob, funded):
    with transaction.atomic():
        escrow = services.escrow_open(
            payer=funded, payee=services.account_name(user=bob), amount=10, actor="x"
        )
    for destination in ("issuance", escrow.account_name, "user:²", f"user:0{bob.pk}"):
        with pytest.raises(DomainError), transaction.atomic():
            services.mint(destination=destination, amount=10, actor="system", reason="test")
        with pytest.raises(DomainError), transaction.atomic():
            services.escrow_open(payer=funded, payee=destination, amount=10, actor="system")
    assert Escrow.objects.count() == 1


def test_a_staff_mint_to_a_non_canonical_account_is_a_400(staff, bob):
    for destination in ("user:²", f"user:0{bob.pk}", "issuance"):
        response = api_as(staff).post(
            "/api/ledger/mints/", {"destination": destination, "amount": 5, "reason": "grant"}, format="json"
        )
        assert response.status_code == 400, (destination, response.content)
    assert not Entry.objects.exists()


def test_unknown_names_raise_the_ledgers_own_error(alice):
    with pytest.raises(UnknownAccount), transaction.atomic():
        services.account_open(name="user:²")
