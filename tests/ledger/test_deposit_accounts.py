"""Call deposits (`deposit:<user id>`): topped up only from their owner's own account, never a transfer's
destination; and records that apps sign with the platform's active key."""

import pytest
from django.core.management import call_command
from django.db import transaction

from ledger import chain, names, services
from ledger.models import Account, Entry, SigningKey
from ledger.services import UnknownAccount
from platform_site.errors import DomainError
from tests.ledger.helpers import fund

pytestmark = pytest.mark.django_db


def post(kind: str, actor: str, postings: list[dict]) -> Entry:
    with transaction.atomic():
        return services.postings_post(kind=kind, actor=actor, postings=postings)


def test_a_deposit_is_named_after_its_user_and_parsed_back(alice):
    assert names.account_name(deposit=alice) == f"deposit:{alice.pk}"
    assert names.parse_account_name(f"deposit:{alice.pk}") == ("deposit", alice.pk)
    with pytest.raises(ValueError, match="leading zero"):
        names.parse_account_name("deposit:07")


def test_its_owner_tops_it_up_and_it_pays_out_to_anyone(alice, bob):
    a, d = f"user:{alice.pk}", f"deposit:{alice.pk}"
    fund(a, 1_000)
    post("app.deposit.topped_up", a, [{"account": a, "amount": -600}, {"account": d, "amount": 600}])
    assert Account.objects.get(name=d).kind == Account.Kind.DEPOSIT
    post(
        "app.calls.settled",
        "system",
        [{"account": d, "amount": -250}, {"account": f"user:{bob.pk}", "amount": 250}],
    )
    assert [Account.objects.get(name=n).balance for n in (a, d, f"user:{bob.pk}")] == [400, 350, 250]
    call_command("verify_ledger", "--quiet")


@pytest.mark.parametrize(
    "postings",
    [
        # someone else's tokens
        lambda a, b, d: [{"account": b, "amount": -5}, {"account": d, "amount": 5}],
        # the owner's, but mixed into a payment to others
        lambda a, b, d: [
            {"account": a, "amount": -10},
            {"account": d, "amount": 5},
            {"account": b, "amount": 5},
        ],
        # from the treasury
        lambda a, b, d: [{"account": "treasury", "amount": -5}, {"account": d, "amount": 5}],
    ],
)
def test_nobody_else_puts_tokens_into_a_deposit(alice, bob, postings):
    a, b, d = f"user:{alice.pk}", f"user:{bob.pk}", f"deposit:{alice.pk}"
    fund(a, 100)
    fund(b, 100)
    fund("treasury", 100)
    entries = Entry.objects.count()
    with pytest.raises(DomainError, match="topped up only from"):
        post("app.whatever", b, postings(a, b, d))
    assert Entry.objects.count() == entries


def test_a_deposit_is_never_the_destination_of_a_transfer(alice, bob):
    fund(f"user:{bob.pk}", 100)
    with pytest.raises(DomainError, match="call deposit"):
        services.transfer_request(user=bob, destination=f"deposit:{alice.pk}", amount=5)
    with pytest.raises(DomainError, match="call deposit"):
        services.account_check_destination(name=f"deposit:{alice.pk}", system_ok=True)


def test_a_deposit_of_nobody_is_not_opened(db):
    with pytest.raises(UnknownAccount):
        services.account_open(name="deposit:999999")


def test_apps_sign_with_the_active_key_and_the_signature_verifies(alice):
    services.active_key_forget()
    key_id, signature = services.active_key_sign(b'{"receipt":1}')
    key = SigningKey.objects.get(active=True)
    assert key_id == key.key_id
    assert chain.verify_signature(bytes(key.public_key), signature, b'{"receipt":1}')
    with pytest.raises(ValueError, match="32-byte"):
        services.active_key_sign(bytes(32))


def test_after_a_rotation_records_are_signed_with_the_new_key(alice, settings, tmp_path):
    key_file = tmp_path / "ledger.pem"  # rotation rewrites the key file: not the suite's own
    key_file.write_bytes(settings.LEDGER_KEY_FILE.read_bytes())
    settings.LEDGER_KEY_FILE = key_file
    old, _ = services.active_key_sign(b'{"receipt":1}')
    new = services.signing_key_rotate()
    key_id, signature = services.active_key_sign(b'{"receipt":2}')
    assert (key_id, key_id != old) == (new.key_id, True)
    assert chain.verify_signature(bytes(new.public_key), signature, b'{"receipt":2}')
