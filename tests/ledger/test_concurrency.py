"""Many writers at once on PostgreSQL: the chain never forks, no seq repeats or skips, no balance goes negative."""

import itertools
import random
import threading

import pytest
from django.db import connection, connections, transaction

from ledger import services
from ledger.models import Account, Entry
from ledger.services import InsufficientFunds
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
    from django.core.management import call_command

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
