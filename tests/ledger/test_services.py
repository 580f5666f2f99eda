"""Accounts, transfers, mints, contracts, keys and checkpoints, through the services."""

import pytest
from django.db import transaction

from ledger import services
from ledger.models import Account, Checkpoint, Entry, Escrow, SigningKey
from ledger.services import InsufficientFunds, Share, UnknownAccount
from platform_site.errors import Conflict, DomainError, PermissionDenied
from tests.ledger.helpers import fund, pay

pytestmark = pytest.mark.django_db


@pytest.fixture
def accounts(alice, bob):
    fund(f"user:{alice.pk}", 10_000)
    return f"user:{alice.pk}", f"user:{bob.pk}"


def balances(*names: str) -> list[int]:
    return [
        Account.objects.get(name=n).balance if Account.objects.filter(name=n).exists() else 0 for n in names
    ]


def test_a_transfer_moves_tokens_and_writes_one_chained_entry(accounts):
    a, b = accounts
    pay(a, b, 2_500, memo="thanks")
    assert balances(a, b) == [7_500, 2_500]
    entry = Entry.objects.get(kind="ledger.transfer")
    assert entry.payload["postings"] == [{"account": a, "amount": -2_500}, {"account": b, "amount": 2_500}]
    assert entry.payload["memo"] == "thanks"
    previous = Entry.objects.get(seq=entry.seq - 1)
    assert bytes(entry.prev_hash) == bytes(previous.entry_hash)


@pytest.mark.parametrize(
    ("amount", "destination", "error"),
    [
        (20_000, None, InsufficientFunds),
        (0, None, DomainError),
        (-5, None, DomainError),
        (100, "user:999999", UnknownAccount),
        (100, "nonsense", UnknownAccount),
    ],
)
def test_a_refused_transfer_writes_nothing_and_moves_nothing(accounts, amount, destination, error):
    a, b = accounts
    entries = Entry.objects.count()
    with pytest.raises(error):
        pay(a, destination or b, amount)
    assert Entry.objects.count() == entries
    assert balances(a, b) == [10_000, 0]


def test_nobody_transfers_out_of_issuance(accounts):
    with pytest.raises(PermissionDenied):
        pay("issuance", accounts[1], 5)


def test_mints_are_the_only_way_in_and_supply_is_minus_issuance(accounts, bob):
    fund(f"user:{bob.pk}", 300)
    assert Account.objects.get(name="issuance").balance == -10_300
    assert sum(Account.objects.values_list("balance", flat=True)) == 0


def test_a_retried_transfer_request_gives_the_same_entry_once(accounts, alice, bob):
    first = services.transfer_request(
        user=alice, destination=f"user:{bob.pk}", amount=100, idempotency_key="k1"
    )
    again = services.transfer_request(
        user=alice, destination=f"user:{bob.pk}", amount=100, idempotency_key="k1"
    )
    assert first.seq == again.seq
    assert balances(*accounts) == [9_900, 100]
    with pytest.raises(Conflict, match="different request"):
        services.transfer_request(user=alice, destination=f"user:{bob.pk}", amount=999, idempotency_key="k1")


def test_idempotency_keys_are_per_user(accounts, alice, bob):
    fund(f"user:{bob.pk}", 500)
    services.transfer_request(user=alice, destination=f"user:{bob.pk}", amount=100, idempotency_key="same")
    services.transfer_request(user=bob, destination=f"user:{alice.pk}", amount=100, idempotency_key="same")
    assert Entry.objects.filter(kind="ledger.transfer").count() == 2


@pytest.mark.django_db(transaction=True)  # the plain `db` fixture wraps the test itself in a transaction
def test_the_ledger_refuses_writes_outside_a_transaction(accounts):
    with pytest.raises(RuntimeError, match="inside the caller's transaction"):
        services.entry_append(kind="x.y.z", actor="system", payload={})


def test_a_split_pays_exact_sums_with_the_remainder_to_the_first_share(accounts, alice, bob, mallory):
    a, b = accounts
    m = f"user:{mallory.pk}"
    parts = services.split_amounts(1_001, [Share(b, 3_333), Share(m, 3_333), Share("treasury", 3_334)])
    assert parts == [(b, 333 + 2), (m, 333), ("treasury", 333)]  # 2 units of remainder go to the first
    assert sum(p for _, p in parts) == 1_001
    with transaction.atomic():
        services.split_pay(
            source=a, amount=1_001, shares=[Share(b, 7_000), Share("treasury", 3_000)], actor=a
        )
    assert balances(a, b, "treasury") == [10_000 - 1_001, 701, 300]


def test_a_split_carries_the_callers_payload_fields_but_not_other_postings(accounts):
    a, b = accounts
    with transaction.atomic():
        entry = services.split_pay(
            source=a, amount=100, shares=[Share(b, 10_000)], actor=a, memo="for the set",
            extra={"dataset": 7, "tier": "compute", "postings": [{"account": b, "amount": 10**6}]},
        )  # fmt: skip
    assert (entry.payload["dataset"], entry.payload["tier"], entry.payload["memo"]) == (
        7,
        "compute",
        "for the set",
    )
    assert entry.payload["postings"] == [{"account": a, "amount": -100}, {"account": b, "amount": 100}]
    assert balances(a, b) == [10_000 - 100, 100]


@pytest.mark.parametrize(
    "shares",
    [
        [],
        [("treasury", 5_000)],
        [("treasury", 5_000), ("treasury", 5_000)],
        [("treasury", 12_000), ("issuance", -2_000)],
    ],
)
def test_a_split_whose_shares_do_not_make_100_percent_is_refused(shares):
    with pytest.raises(DomainError):
        services.split_amounts(100, [Share(a, bp) for a, bp in shares])


def test_an_escrow_holds_funds_then_releases_them_to_the_payee(accounts):
    a, b = accounts
    with transaction.atomic():
        escrow = services.escrow_open(payer=a, payee=b, amount=4_000, actor=a, condition="delivery")
    assert balances(a, b, escrow.account_name) == [6_000, 0, 4_000]
    with transaction.atomic():
        services.escrow_release(escrow=escrow, actor="system")
    assert balances(a, b, escrow.account_name) == [6_000, 4_000, 0]
    escrow.refresh_from_db()
    assert escrow.status == "released"
    kinds = list(
        Entry.objects.filter(payload__escrow=escrow.pk).order_by("seq").values_list("kind", flat=True)
    )
    assert kinds == ["ledger.escrow.opened", "ledger.escrow.released"]
    with pytest.raises(Conflict), transaction.atomic():
        services.escrow_refund(escrow=escrow, actor="system")


def test_escrow_get_reads_an_escrow_by_id_and_refuses_an_unknown_one(accounts):
    from ledger import selectors
    from platform_site.errors import NotFound

    a, b = accounts
    with transaction.atomic():
        escrow = services.escrow_open(payer=a, payee=b, amount=1_500, actor=a, condition="delivery")
    found = selectors.escrow_get(escrow_id=escrow.pk)
    assert (found.pk, found.payer, found.payee, found.amount, found.status) == (
        escrow.pk,
        a,
        b,
        1_500,
        "open",
    )
    with transaction.atomic():
        services.escrow_refund(escrow=found, actor="system")
    assert selectors.escrow_get(escrow_id=escrow.pk).status == "refunded"
    for missing in (escrow.pk + 1, 0, -1, 2**80):
        with pytest.raises(NotFound):
            selectors.escrow_get(escrow_id=missing)


def test_an_escrow_past_its_deadline_is_refunded(accounts):
    from datetime import timedelta

    from django.utils import timezone

    a, b = accounts
    with transaction.atomic():
        escrow = services.escrow_open(
            payer=a, payee=b, amount=1_000, actor=a, deadline=timezone.now() - timedelta(seconds=1)
        )
    assert services.escrow_refund_expired() == 1
    escrow.refresh_from_db()
    assert escrow.status == Escrow.Status.REFUNDED
    assert balances(a, escrow.account_name) == [10_000, 0]


def test_a_checkpoint_signs_the_current_root_and_is_not_repeated(accounts):
    a, b = accounts
    pay(a, b, 10)
    first = services.checkpoint_create()
    assert first.tree_size == Entry.objects.count()
    assert services.checkpoint_create().pk == first.pk
    assert first.note.startswith(f"platform.example/ledger\n{first.tree_size}\n")
    pay(a, b, 10)
    assert services.checkpoint_create().tree_size == first.tree_size + 1
    assert Checkpoint.objects.count() == 2


def test_a_rotated_key_is_announced_by_the_old_key_and_signs_what_follows(
    accounts, settings, tmp_path, django_capture_on_commit_callbacks
):
    a, b = accounts
    key_file = tmp_path / "ledger.pem"  # rotation rewrites the key file: not the suite's own
    key_file.write_bytes(settings.LEDGER_KEY_FILE.read_bytes())
    settings.LEDGER_KEY_FILE = key_file
    old = SigningKey.objects.get(active=True)
    with django_capture_on_commit_callbacks(execute=True):
        new = services.signing_key_rotate()
    pay(a, b, 10)
    rotation = Entry.objects.get(kind="ledger.key.rotated")
    assert rotation.key_id == old.key_id
    assert rotation.payload["new_key_id"] == new.key_id
    assert Entry.objects.get(kind="ledger.transfer").key_id == new.key_id
    assert new.first_seq == rotation.seq + 1
    assert list(SigningKey.objects.filter(active=True)) == [new]
    assert (tmp_path / f"ledger.pem.{old.key_id}.retired").exists(), "the old private key is kept, not lost"
    from platform_site.keys import load_or_create_ed25519

    on_disk = load_or_create_ed25519(key_file).public_key().public_bytes_raw()
    assert on_disk == bytes(new.public_key), "after the commit, the key file holds the new key"


def test_the_faucet_mints_once_a_day(alice):
    entry = services.faucet_request(user=alice)
    assert entry.kind == "ledger.mint"
    with pytest.raises(Conflict, match="today"):
        services.faucet_request(user=alice)
