"""Secure aggregation through the services: parties publish signed X25519 keys, submit masked updates the server
cannot read one by one, and the aggregate equals plain FedAvg; a party that drops out restarts the round without
it."""

from datetime import timedelta

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone

from federation import protocol, services
from federation.models import Round, Update
from ml.federated import aggregate, secagg, tensors
from platform_site.errors import Conflict, DomainError
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_execute
from tests.federation.helpers import admitted, create, global_of, keyed, kinds, small_delta, upload

pytestmark = pytest.mark.django_db


def salt(federation, number: int) -> bytes:
    rnd = Round.objects.get(federation=federation, number=number)
    return f"fl-secagg-salt/v1 federation={federation.pk} round={number} global={rnd.global_sha256}".encode()


def publish_keys(federation, number: int, members) -> dict:
    privates = {}
    for m in members:
        private, public = secagg.keypair()
        sig = protocol.sign(
            m.key, protocol.secagg_key_message(federation=federation.pk, round=number, public_key=public)
        )
        services.secagg_key_submit(
            federation=federation,
            number=number,
            user=m.user,
            key_id=m.key_id,
            public_key=public,
            signature=sig,
        )
        privates[m.party.pk] = private
    return privates


def submit_masked(federation, number: int, member, delta: dict, n: int, privates: dict, peers: dict):
    masked = secagg.mask(
        delta, num_examples=n, me=member.party.pk, private=privates[member.party.pk], peers=peers,
        round_salt=salt(federation, number), norm_bound=federation.update_norm_bound,
    )  # fmt: skip
    digest = secagg.masked_digest(masked)
    message = protocol.update_message(
        federation=federation.pk, round=number, sha256=digest, num_examples=n, masked=True,
        norm_bound=federation.update_norm_bound,
    )  # fmt: skip
    return services.update_submit(
        federation=federation, number=number, user=member.user, file=upload(secagg.encode_masked(masked)),
        num_examples=n, metrics={}, key_id=member.key_id, signature=protocol.sign(member.key, message),
        norm_bound=federation.update_norm_bound,
    )  # fmt: skip


@pytest.fixture
def masked_federation(alice, bob, carol, dora):
    federation = create(alice, secure_aggregation=True, rounds=2, min_parties=2)
    members = admitted(federation, [keyed(bob), keyed(carol), keyed(dora)])
    return federation, members


def test_masked_updates_aggregate_to_the_plain_fedavg_sum(masked_federation):
    federation, members = masked_federation
    rnd = Round.objects.get(federation=federation, number=1)
    # Round 1 opened when the second party was admitted: the third joins the roster from round 2.
    assert sorted(rnd.secagg_roster) == sorted(m.party.pk for m in members[:2])
    roster = members[:2]
    privates = publish_keys(federation, 1, roster)
    state = services_state(rnd)
    assert state["ready"] and set(state["keys"]) == {str(m.party.pk) for m in roster}
    peers = {int(k): v for k, v in state["keys"].items()}
    deltas = [small_delta(federation, seed=i) for i in range(2)]
    counts = [120, 80]
    for m, d, n in zip(roster, deltas, counts, strict=True):
        submit_masked(federation, 1, m, d, n, privates, peers)
    assert all(u.masked for u in Update.objects.all())
    for job in Job.objects.filter(status="queued"):
        job_execute(job_id=job.pk, worker="test")
    rnd.refresh_from_db()
    assert rnd.status == "closed", rnd.error
    plain = aggregate.aggregate(
        strategy="fedavg", options={}, global_tensors=global_of(federation, 1),
        updates=[aggregate.Update(id=str(i), tensors=d, num_examples=n) for i, (d, n) in enumerate(zip(deltas, counts, strict=True))],
    ).new_global  # fmt: skip
    result = global_of(federation, 2)
    for name in plain:
        np.testing.assert_allclose(result[name], plain[name], atol=1e-5)
    assert services.round_recompute(round=rnd) == rnd.result_sha256 == tensors.digest(result)
    # Round 2's roster is every admitted party.
    assert sorted(Round.objects.get(federation=federation, number=2).secagg_roster) == sorted(
        m.party.pk for m in members
    )
    call_command("verify_ledger", "--quiet")


def services_state(rnd):
    from federation import selectors

    return selectors.secagg_state(round=rnd)


def test_a_masked_update_needs_an_attested_bound_within_the_federations(masked_federation):
    federation, members = masked_federation
    m = members[0]
    privates = publish_keys(federation, 1, members[:2])
    peers = {int(k): v for k, v in services_state(Round.objects.get(number=1))["keys"].items()}
    delta = small_delta(federation)
    with pytest.raises(DomainError, match="norm_bound"):
        services.update_submit(
            federation=federation, number=1, user=m.user, file=upload(b"x"), num_examples=1, metrics={},
            key_id=m.key_id, signature="x", norm_bound=None,
        )  # fmt: skip
    with pytest.raises(DomainError, match="bound"):
        services.update_submit(
            federation=federation, number=1, user=m.user, file=upload(b"x"), num_examples=1, metrics={},
            key_id=m.key_id, signature="x", norm_bound=federation.update_norm_bound * 2,
        )  # fmt: skip
    with pytest.raises(DomainError, match="uint64"):  # a plain float32 update where a masked one is due
        services.update_submit(
            federation=federation, number=1, user=m.user, file=upload(tensors.encode(delta)), num_examples=1,
            metrics={}, key_id=m.key_id, signature="x", norm_bound=1.0,
        )  # fmt: skip
    submit_masked(federation, 1, m, delta, 10, privates, peers)
    assert kinds("federation.update.rejected") and len(kinds("federation.update.accepted")) == 1


def test_a_party_outside_the_roster_cannot_publish_a_key_and_keys_are_signed(masked_federation):
    federation, members = masked_federation
    outsider = members[2]
    _private, public = secagg.keypair()
    sig = protocol.sign(
        outsider.key, protocol.secagg_key_message(federation=federation.pk, round=1, public_key=public)
    )
    with pytest.raises(Conflict, match="roster"):
        services.secagg_key_submit(
            federation=federation,
            number=1,
            user=outsider.user,
            key_id=outsider.key_id,
            public_key=public,
            signature=sig,
        )
    m = members[0]
    with pytest.raises(DomainError, match="signature"):
        services.secagg_key_submit(
            federation=federation, number=1, user=m.user, key_id=m.key_id, public_key=public, signature=sig
        )


def test_a_dropout_restarts_the_round_without_it(masked_federation):
    federation, members = masked_federation
    # Round 1 has bob and carol; make it a roster of all three so that one can drop out above the minimum.
    Round.objects.filter(federation=federation, number=1).update(
        secagg_roster=sorted(m.party.pk for m in members)
    )
    privates = publish_keys(federation, 1, members)
    peers = {int(k): v for k, v in services_state(Round.objects.get(number=1))["keys"].items()}
    for i, m in enumerate(members[:2]):
        submit_masked(federation, 1, m, small_delta(federation, seed=i), 50, privates, peers)
    Round.objects.filter(federation=federation, number=1).update(
        deadline=timezone.now() - timedelta(seconds=1)
    )
    assert services.rounds_due() == {"restarted": 1}
    failed, restarted = Round.objects.filter(federation=federation).order_by("number")
    assert failed.status == "failed" and "dropped out" in failed.error
    assert restarted.number == 2 and restarted.status == "open"
    assert restarted.global_sha256 == failed.global_sha256
    assert sorted(restarted.secagg_roster) == sorted(m.party.pk for m in members[:2])
    (entry,) = kinds("federation.round.failed")
    assert entry["dropped"] == [members[2].party.pk]
    call_command("verify_ledger", "--quiet")
