"""Checkpoints are made by the worker every N entries, without anyone asking."""

import pytest
from django.db import transaction

from ledger import notes, services
from ledger.models import Checkpoint, SigningKey
from tests.processes import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_every_nth_entry_queues_a_checkpoint_that_the_worker_signs(alice, settings, celery_worker):
    settings.LEDGER_CHECKPOINT_EVERY = 4
    for amount in (100, 200, 300, 400):
        with transaction.atomic(durable=True):
            services.mint(
                destination=f"user:{alice.pk}", amount=amount, actor="system", reason="n-th entry test"
            )
    wait_for(lambda: Checkpoint.objects.filter(tree_size=4).exists(), timeout=60, what="the checkpoint at 4")
    checkpoint = Checkpoint.objects.get(tree_size=4)
    assert notes.verify_note(checkpoint.note, SigningKey.objects.get(active=True).verifier_key)
