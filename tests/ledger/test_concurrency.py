"""Many writers at once on PostgreSQL: the chain never forks, no seq repeats or skips, no balance goes negative."""

import itertools
import random
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.test import Client

from ledger import chain, notes, services
from ledger.models import Account, Cosignature, Entry, SigningKey, Witness
from ledger.services import InsufficientFunds
from platform_site.accounts.services import organization_create
from platform_site.errors import Conflict
from platform_site.keys import load_or_create_ed25519
from tests.conftest import api_as
from tests.ledger.helpers import fund

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite serializes every writer by itself"),
]


def run_threads(count: int, work) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def runner(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def test_many_concurrent_transfers_keep_the_chain_whole_and_the_sum_constant(alice, bob, mallory, staff):
    names = [f"user:{u.pk}" for u in (alice, bob, mallory, staff)]
    for name in names:
        fund(name, 1_000)
    start = Entry.objects.count()
    refused = []

    def work(i: int) -> None:
        rng = random.Random(i)
        for _ in range(15):
            source, destination = rng.sample(names, 2)
            try:
                with transaction.atomic(durable=True):
                    services.transfer(
                        source=source, destination=destination, amount=rng.randint(1, 400), actor="system"
                    )
            except InsufficientFunds:
                refused.append(1)

    assert run_threads(8, work) == []

    seqs = list(Entry.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(len(seqs))), "no gap, no repeat"
    assert len(seqs) == start + 8 * 15 - len(refused)
    entries = list(Entry.objects.order_by("seq"))
    for previous, entry in itertools.pairwise(entries):
        assert bytes(entry.prev_hash) == bytes(previous.entry_hash), f"fork at {entry.seq}"
    balances = dict(Account.objects.values_list("name", "balance"))
    assert all(balances[n] >= 0 for n in names)
    assert sum(balances[n] for n in names) == 4_000
    call_command("verify_ledger", "--quiet")


def test_two_concurrent_spends_that_together_overdraw_let_exactly_one_through(alice, bob, mallory):
    source = f"user:{alice.pk}"
    fund(source, 1_000)
    outcomes: list[str] = []
    targets = [f"user:{bob.pk}", f"user:{mallory.pk}"]

    def work(i: int) -> None:
        try:
            with transaction.atomic(durable=True):
                services.transfer(source=source, destination=targets[i], amount=700, actor=source)
            outcomes.append("paid")
        except InsufficientFunds:
            outcomes.append("refused")

    for _ in range(5):  # the race is timing-dependent: run it several times
        top_up = 1_000 - Account.objects.get(name=source).balance
        if top_up:
            fund(source, top_up)
        outcomes.clear()
        assert run_threads(2, work) == []
        assert sorted(outcomes) == ["paid", "refused"]
        assert Account.objects.get(name=source).balance == 300


# ---------------------------------------------------------------------------------------------------- one object
# Requests that change one object, fired at once through the API: a lost race is the first answer or a 409,
# never a 500 (the test client re-raises a view's exception, which run_threads collects) nor a second entry.


def test_parallel_retries_of_one_transfer_request_give_one_entry_and_the_same_answer(alice, bob):
    a, b = services.account_name(user=alice), services.account_name(user=bob)
    answers: list[tuple[int, int | None]] = []
    body = {"destination": b, "amount": 500}
    for round_ in range(3):  # the race is timing-dependent: run it several times
        fund(a, 500)  # exactly one transfer's worth: a twin that waited for the lock finds the tokens gone
        entries = Entry.objects.count()
        answers.clear()
        key = {"idempotency_key": f"pay-bob-{round_}"}

        def work(i: int, key=key) -> None:
            response = api_as(alice).post("/api/ledger/transfers/", {**body, **key}, format="json")
            answers.append((response.status_code, response.json().get("seq")))

        assert run_threads(10, work) == []
        assert {status for status, _ in answers} == {201}, answers
        assert len({seq for _, seq in answers}) == 1, "every retry gets the first request's entry"
        assert Entry.objects.count() == entries + 1
        assert Account.objects.get(name=a).balance == 0
    assert Account.objects.get(name=b).balance == 1_500
    call_command("verify_ledger", "--quiet")


def test_parallel_registrations_of_one_witness_name_let_one_in_and_answer_409(alice):
    org = organization_create(owner=alice, name="Watchers")
    statuses: list[int] = []

    def work(i: int) -> None:
        key = Ed25519PrivateKey.generate()
        verifier = notes.cosignature_verifier_key("w.example/1", key.public_key().public_bytes_raw())
        body = {"organization": org.pk, "name": "w.example/1", "verifier_key": verifier}
        statuses.append(api_as(alice).post("/api/ledger/witnesses/", body, format="json").status_code)

    assert run_threads(8, work) == []
    assert sorted(statuses) == [201] + [409] * 7
    assert Witness.objects.count() == 1


def test_parallel_cosignatures_of_one_checkpoint_store_one_and_refuse_a_different_one(alice, bob):
    fund(services.account_name(user=alice), 100)
    checkpoint = services.checkpoint_create()
    org = organization_create(owner=alice, name="Watchers")
    key = Ed25519PrivateKey.generate()
    verifier = notes.cosignature_verifier_key("w.example/1", key.public_key().public_bytes_raw())
    with transaction.atomic():
        services.witness_register(organization=org, actor=alice, name="w.example/1", verifier_key=verifier)
    body = notes.parse_note(checkpoint.note)[0]
    lines = [notes.cosign(body, "w.example/1", key, 1_700_000_000 + (i % 2)) for i in range(8)]
    statuses: list[int] = []

    def work(i: int) -> None:
        payload = {"tree_size": checkpoint.tree_size, "cosignature": lines[i]}
        statuses.append(
            Client().post("/api/ledger/witness/cosign/", payload, content_type="application/json").status_code
        )

    assert run_threads(8, work) == []
    stored = Cosignature.objects.get()
    winners = [i for i in range(8) if lines[i] == stored.line]
    assert sorted(statuses) == sorted([201] * len(winners) + [409] * (8 - len(winners)))


def test_a_release_and_a_refund_racing_for_one_escrow_pay_out_once(alice, bob):
    a, b = services.account_name(user=alice), services.account_name(user=bob)
    fund(a, 1_000)
    outcomes: list[str] = []
    for _ in range(3):
        with transaction.atomic():
            escrow = services.escrow_open(payer=a, payee=b, amount=100, actor=a)
        outcomes.clear()

        def work(i: int, escrow=escrow) -> None:
            close = services.escrow_release if i % 2 else services.escrow_refund
            try:
                with transaction.atomic(durable=True):
                    close(escrow=escrow, actor="system")
                outcomes.append("closed")
            except Conflict:
                outcomes.append("conflict")

        assert run_threads(6, work) == []
        assert sorted(outcomes) == ["closed"] + ["conflict"] * 5
        assert Entry.objects.filter(payload__escrow=escrow.pk).count() == 2
    assert Account.objects.get(name=a).balance + Account.objects.get(name=b).balance == 1_000
    call_command("verify_ledger", "--quiet")


def test_concurrent_key_rotations_chain_and_leave_the_active_key_in_the_key_file(alice, settings, tmp_path):
    key_file = tmp_path / "ledger.pem"
    key_file.write_bytes(settings.LEDGER_KEY_FILE.read_bytes())
    settings.LEDGER_KEY_FILE = key_file
    fund(services.account_name(user=alice), 100)

    assert run_threads(4, lambda i: services.signing_key_rotate()) == []

    assert SigningKey.objects.count() == 5
    active = SigningKey.objects.get(active=True)
    on_disk = load_or_create_ed25519(key_file)
    assert chain.key_id_for(settings.LEDGER_ORIGIN, on_disk.public_key().public_bytes_raw()) == active.key_id
    assert not list(tmp_path.glob("*.new"))
    fund(services.account_name(user=alice), 100)
    call_command("verify_ledger", "--quiet")
