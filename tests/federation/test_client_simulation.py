"""Simulated parties (federation/simulation.py) one step at a time, in this process: the client's run loop
through the REST API by Django's handler (DjangoTransport), its refusals, the byzantine update, and the
command's argument checks."""

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from federation.client import seed_for
from federation.models import Federation, Round, Update
from federation.simulation import (
    DjangoTransport,
    digits_federation_create,
    parties_enrol,
    party_runner,
)
from ledger.models import Entry
from ml.architecture import parameter_shapes
from ml.federated import local, tensors
from ml.federated.splits import digits_task, iid_partitions
from ml.tabular import read_table

pytestmark = pytest.mark.django_db


@pytest.fixture
def federation(alice):
    return digits_federation_create(coordinator=alice, name="Digits", rounds=2, min_parties=2)


def test_enrolled_parties_are_joined_and_admitted_and_the_last_admission_opens_round_1(federation, alice):
    parties = parties_enrol(federation=federation, parties=2, admit_as=alice)
    federation.refresh_from_db()
    assert federation.status == Federation.Status.RUNNING
    assert sorted(federation.parties.values_list("pk", flat=True)) == sorted(parties)
    assert Round.objects.get(federation=federation).number == 1


def test_a_simulated_party_step_submits_a_signed_update_through_the_api_and_it_is_ledgered(federation, alice):
    parties_enrol(federation=federation, parties=2, admit_as=alice)
    step = party_runner(federation.pk, 0, []).step()
    assert step.state == "submitted", step.message
    assert "accepted (ledger entry #" in step.message
    update = Update.objects.get()
    entry = Entry.objects.get(kind="federation.update.accepted")
    assert entry.payload["sha256"] == update.sha256
    again = party_runner(federation.pk, 0, []).step()  # a restarted party that forgot it submitted
    assert again.state == "refused"
    assert "(409)" in again.message
    assert Update.objects.count() == 1


def test_a_byzantine_party_sends_its_honest_update_flipped_and_scaled_by_ten(federation, alice):
    parties_enrol(federation=federation, parties=2, byzantine=1, admit_as=alice)
    runner = party_runner(federation.pk, 0, [])
    assert runner.step().state == "submitted"
    sent = tensors.decode(
        Update.objects.get().file.read(), shapes=parameter_shapes(federation.spec), max_bytes=1 << 24
    )
    rnd = Round.objects.get(federation=federation, number=1)
    X, y = local.task_xy(_schema(federation), read_table(str(runner.party.data), fmt="csv"))
    honest = local.train_local(
        spec=federation.spec, global_tensors=tensors.decode(rnd.weights.read(),
        shapes=parameter_shapes(federation.spec), max_bytes=1 << 24), X=X, y=y, recipe=federation.recipe, seed=seed_for(0, 1),
    ).delta  # fmt: skip
    for name in honest:
        assert np.allclose(sent[name], -10 * honest[name], atol=1e-5)


def _schema(federation):
    from ml.features import FeatureSchema

    return FeatureSchema.from_json(federation.schema)


def test_the_parties_hold_disjoint_shares_of_the_training_rows(federation, alice):
    parties_enrol(federation=federation, parties=2, admit_as=alice)
    sizes = [read_table(str(party_runner(federation.pk, k, []).party.data), fmt="csv").n_rows for k in (0, 1)]
    task = digits_task()
    assert sizes == [len(p) for p in iid_partitions(len(task.y_train), 2, seed=0)]
    assert sum(sizes) == len(task.y_train)


def test_the_in_process_transport_returns_the_apis_refusal(federation, mallory):
    from platform_site.accounts.services import api_token_create

    _, token = api_token_create(user=mallory, name="t")
    answer = DjangoTransport(token).request("POST", f"/api/federations/{federation.pk}/join/", json_body={})
    assert answer.status == 400
    assert "key_id" in answer.body.decode()


def test_simulate_federation_refuses_more_byzantine_parties_than_parties(db):
    with pytest.raises(CommandError, match="--byzantine"):
        call_command("simulate_federation", parties=2, byzantine=3)
    assert not Federation.objects.exists()


def test_simulate_federation_refuses_a_non_positive_alpha(db):
    with pytest.raises(CommandError, match="ALPHA"):
        call_command("simulate_federation", parties=2, non_iid=0.0)


def test_under_secure_aggregation_parties_publish_signed_keys_wait_for_the_roster_then_submit_masked_updates(
    alice,
):
    federation = digits_federation_create(
        coordinator=alice, name="Masked", rounds=1, min_parties=2, secure_aggregation=True
    )
    parties_enrol(federation=federation, parties=2, admit_as=alice)
    first, second = party_runner(federation.pk, 0, []), party_runner(federation.pk, 1, [])
    assert first.step().state == "waiting"  # published its key; the other's is missing
    assert Entry.objects.filter(kind="federation.secagg.key_published").count() == 1
    assert second.step().state == "waiting"  # published; both keys are in now
    one, two = first.step(), second.step()
    assert (one.state, two.state) == ("submitted", "submitted"), (one.message, two.message)
    updates = list(Update.objects.order_by("pk"))
    assert [u.masked for u in updates] == [True, True]
    assert all(u.norm_bound == federation.update_norm_bound for u in updates)
    # The masks cancel: the platform's sum is the examples-weighted mean of the two honest deltas.
    from ml.federated import secagg

    shapes = parameter_shapes(federation.spec)
    masked = [secagg.decode_masked(u.file.read(), shapes=shapes, max_bytes=1 << 24) for u in updates]
    mean = secagg.unmask_sum(masked, sum(u.num_examples for u in updates))
    rnd = Round.objects.get(federation=federation, number=1)
    start = tensors.decode(rnd.weights.read(), shapes=shapes, max_bytes=1 << 24)
    honest = []
    for k, runner in enumerate((first, second)):
        X, y = local.task_xy(_schema(federation), read_table(str(runner.party.data), fmt="csv"))
        result = local.train_local(spec=federation.spec, global_tensors=start, X=X, y=y, recipe=federation.recipe,
                                   seed=seed_for(k, 1))  # fmt: skip
        honest.append((result.delta, result.num_examples))
    total = sum(n for _, n in honest)
    for name in mean:
        expected = sum(d[name].astype(np.float64) * n for d, n in honest) / total
        assert np.allclose(mean[name], expected, atol=1e-5)


def test_with_differential_privacy_the_update_is_clipped_and_noised_before_it_is_signed(alice):
    federation = digits_federation_create(
        coordinator=alice, name="Private", rounds=1, min_parties=1,
        privacy={"clip_norm": 0.5, "noise_multiplier": 1.0, "delta": 1e-5},
    )  # fmt: skip
    parties_enrol(federation=federation, parties=1, admit_as=alice)
    step = party_runner(federation.pk, 0, []).step()
    assert step.state == "submitted", step.message
    assert "DP clip 0.5, noise x1" in step.message
    sent = tensors.decode(
        Update.objects.get().file.read(), shapes=parameter_shapes(federation.spec), max_bytes=1 << 24
    )
    # Clipped to 0.5, then noise of std 0.5 on each of its 9,610 numbers: the norm is about 0.5 * sqrt(9610).
    assert 40 < tensors.l2_norm(sent) < 60


def test_simulate_federation_joins_an_existing_federation_and_queues_one_task_per_party(
    alice, monkeypatch, capsys
):
    existing = digits_federation_create(coordinator=alice, name="Existing", rounds=2, min_parties=3)
    queued = []
    monkeypatch.setattr(
        "federation.simulation.simulated_party_step.apply_async",
        lambda args, countdown=0, queue=None: queued.append((args[:3], queue)),
    )
    call_command("simulate_federation", parties=3, byzantine=1, federation=existing.pk)
    existing.refresh_from_db()
    assert existing.status == Federation.Status.RUNNING  # admitted by its coordinator: round 1 is open
    assert existing.parties.count() == 3
    assert queued == [((existing.pk, k, []), "ml") for k in range(3)]
    assert "(the first 1 byzantine)" in capsys.readouterr().out
