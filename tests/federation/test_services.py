"""The federation's services: creation (pool escrowed, settings checked), membership, signed updates (every
refusal ledgered), aggregation run in-process, deadlines, and the end (scores, exact payouts)."""

from datetime import timedelta

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone

from federation import protocol, services
from federation.models import Federation, Party, Payout, Rejection, Round, Update
from ledger.models import Account, Entry, Escrow
from ml.federated import tensors
from platform_site.errors import Conflict, DomainError, PermissionDenied, TooManyRequests
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_execute
from tests.factories import MembershipFactory, OrganizationFactory
from tests.federation.helpers import (
    admitted,
    create,
    keyed,
    kinds,
    signed,
    small_delta,
    submit,
    trained_delta,
    upload,
    validation_file,
)

pytestmark = pytest.mark.django_db


def balance(name: str) -> int:
    account = Account.objects.filter(name=name).first()
    return account.balance if account else 0


# ---- creation


def test_creating_a_federation_escrows_its_pool_and_ledgers_it(alice):
    federation = create(alice, pool=50_000)
    assert federation.status == "recruiting" and federation.spec["input_width"] == 64
    assert federation.spec["output_width"] == 10 and federation.validation_rows == 300
    escrow = Escrow.objects.get(pk=federation.escrow_id)
    assert escrow.amount == 50_000 and escrow.status == "open"
    assert balance(f"user:{alice.pk}") == 0
    (created,) = kinds("federation.created")
    assert created["federation"] == federation.pk and created["reward_pool"] == 50_000
    assert created["validation_sha256"] == federation.validation_sha256
    call_command("verify_ledger", "--quiet")


def test_a_coordinator_without_the_pool_is_refused_and_nothing_is_written(alice):
    with pytest.raises(DomainError, match="your balance"):
        create(alice, pool=50_000, fund_it=False)
    assert not Federation.objects.exists() and not Entry.objects.filter(kind="federation.created").exists()


@pytest.mark.parametrize("strategy", ["median", "trimmed_mean", "krum", "multi_krum", "bulyan"])
def test_secure_aggregation_is_refused_with_strategies_that_inspect_each_update(alice, strategy):
    with pytest.raises(DomainError, match="secure aggregation") as refused:
        create(alice, strategy=strategy, secure_aggregation=True)
    assert "one by one" in refused.value.message and "fedavg" in refused.value.message
    assert not Federation.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rounds", 10**30, "rounds"),
        ("rounds", 0, "rounds"),
        ("update_norm_bound", float("nan"), "finite"),
        ("update_norm_bound", float("inf"), "finite"),
        ("update_norm_bound", -1.0, "update_norm_bound"),
        ("reward_pool", 2**80, "reward_pool"),
        ("target_value", float("nan"), "finite"),
        ("target_metric", "rmse", "target_metric"),
        ("strategy", "fedsgd", "strategy"),
        ("options", {"trim_beta": 0.9}, "options"),
        ("spec", {"hidden": [10**9]}, "spec"),
        ("spec", {"input_width": 3}, "input_width"),
        ("recipe", {"optimizer": "lbfgs"}, "recipe"),
        ("privacy", {"clip_norm": float("nan"), "noise_multiplier": 1.0}, "privacy"),
        ("privacy", {"clip_norm": 1.0, "noise_multiplier": 5.0}, "update_norm_bound"),
        ("schema", {"columns": []}, "schema"),
        ("round_deadline", 2**63, "round_deadline"),
    ],
)
def test_bad_settings_are_refused_with_a_message_naming_them(alice, field, value, message):
    overrides = {field: value}
    if field == "options":
        overrides["strategy"] = "trimmed_mean"
    with pytest.raises(DomainError, match=message):
        create(alice, **overrides)
    assert not Federation.objects.exists() and balance(f"user:{alice.pk}") == 100_000


def test_the_validation_file_must_have_the_schemas_columns_and_fit_the_size_limit(alice, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    junk = SimpleUploadedFile("v.csv", b"a,b\n1,2\n3,4\n")
    with pytest.raises(DomainError, match="lacks the column"):
        create(alice, validation=junk)
    settings.FEDERATION_VALIDATION_MAX_BYTES = 1000
    with pytest.raises(DomainError, match="larger than"):
        create(alice, validation=validation_file())


def test_a_user_cannot_flood_federations_or_join_requests(alice, bob, settings):
    settings.FEDERATION_MAX_ACTIVE_PER_USER = 2
    create(alice, pool=0)
    create(alice, pool=0)
    with pytest.raises(TooManyRequests):
        create(alice, pool=0)
    settings.FEDERATION_MAX_PENDING_JOINS = 1
    member = keyed(bob)
    first, second = Federation.objects.all()[:2]
    services.party_join(federation=first, user=bob, key_id=member.key_id)
    with pytest.raises(TooManyRequests):
        services.party_join(federation=second, user=bob, key_id=member.key_id)


# ---- membership


def test_joining_admitting_and_removing_are_ledgered_and_the_minimum_opens_round_one(alice, bob, carol):
    federation = create(alice)
    b, c = admitted(federation, [keyed(bob), keyed(carol)])
    assert federation.status == "running"
    assert [e["party"] for e in kinds("federation.party.joined")] == [b.party.pk, c.party.pk]
    assert [e["party"] for e in kinds("federation.party.admitted")] == [b.party.pk, c.party.pk]
    (opened,) = kinds("federation.round.opened")
    rnd = Round.objects.get(federation=federation, number=1)
    assert opened["global_sha256"] == rnd.global_sha256 == federation.global_sha256
    services.party_remove(federation=federation, party_id=c.party.pk, actor=alice)
    assert Party.objects.get(pk=c.party.pk).status == "removed" and kinds("federation.party.removed")
    call_command("verify_ledger", "--quiet")


def test_an_organization_joins_with_its_key_and_a_member_submits_for_it(alice, bob, carol):
    org = OrganizationFactory()
    MembershipFactory(organization=org, user=bob, role="owner")
    MembershipFactory(organization=org, user=carol)
    member = keyed(bob, organization=org)
    member.user = carol  # any member may use the organization's key
    federation = create(alice, min_parties=1)
    (member,) = admitted(federation, [member])
    assert member.party.organization_id == org.pk and member.party.owner_label == f"org:{org.pk}"
    update = submit(federation, 1, member, small_delta(federation))
    assert update.party_id == member.party.pk


def test_mallory_cannot_admit_remove_or_join_with_someone_elses_key(alice, bob, mallory):
    federation = create(alice)
    b = keyed(bob)
    b.party = services.party_join(federation=federation, user=bob, key_id=b.key_id)
    with pytest.raises(PermissionDenied):
        services.party_admit(federation=federation, party_id=b.party.pk, actor=mallory)
    with pytest.raises(PermissionDenied):
        services.party_remove(federation=federation, party_id=b.party.pk, actor=mallory)
    with pytest.raises(PermissionDenied):
        services.party_join(federation=federation, user=mallory, key_id=b.key_id)
    with pytest.raises(Conflict):
        services.party_join(federation=federation, user=bob, key_id=b.key_id)
    assert Party.objects.get().status == "pending"


# ---- updates: accepted, and each refusal ledgered


@pytest.fixture
def running(alice, bob, carol):
    federation = create(alice, rounds=2)
    members = admitted(federation, [keyed(bob), keyed(carol)])
    return federation, members


def test_a_signed_update_is_stored_with_the_digest_the_server_recomputed(running):
    federation, (b, _c) = running
    delta = small_delta(federation)
    update = submit(federation, 1, b, delta, num_examples=120)
    assert update.sha256 == tensors.digest(delta) and update.num_examples == 120
    (accepted,) = kinds("federation.update.accepted")
    assert accepted["sha256"] == update.sha256 and accepted["party"] == b.party.pk
    assert update.entry_seq == Entry.objects.get(kind="federation.update.accepted").seq


def refused_with(status_code: int, reason: str, call) -> Rejection:
    with pytest.raises(DomainError) as refused:
        call()
    assert refused.value.status_code == status_code, refused.value.message
    assert reason in refused.value.message
    rejection = Rejection.objects.order_by("-pk").first()
    assert rejection.reason == refused.value.message and rejection.status_code == status_code
    entry = Entry.objects.get(seq=rejection.entry_seq)
    assert entry.kind == "federation.update.rejected" and entry.payload["reason"] == rejection.reason
    return rejection


def test_a_forged_signature_is_refused_and_ledgered(running):
    federation, (b, c) = running
    delta = small_delta(federation)
    forged = signed(federation, 1, c, delta, 100)  # carol's key signing what bob sends as his
    refused_with(400, "signature does not match", lambda: submit(federation, 1, b, delta, signature=forged))
    other = small_delta(federation, seed=9)  # bob's signature over another update
    refused_with(
        400, "signature does not match",
        lambda: submit(federation, 1, b, delta, signature=signed(federation, 1, b, other, 100)),
    )  # fmt: skip
    refused_with(400, "no signature", lambda: submit(federation, 1, b, delta, signature=""))
    refused_with(
        400, "signature does not match", lambda: submit(federation, 1, b, delta, signature="not base64!")
    )
    assert not Update.objects.exists()


def test_the_example_count_is_part_of_what_is_signed(running):
    federation, (b, _c) = running
    delta = small_delta(federation)
    signature = signed(federation, 1, b, delta, 100)
    refused_with(
        400, "signature", lambda: submit(federation, 1, b, delta, num_examples=10_000, signature=signature)
    )


def test_a_replayed_update_is_a_409_and_is_ledgered(running):
    federation, (b, _c) = running
    delta = small_delta(federation)
    submit(federation, 1, b, delta)
    rejection = refused_with(409, "already submitted", lambda: submit(federation, 1, b, delta))
    assert rejection.party_id == b.party.pk and rejection.round.number == 1
    assert Update.objects.count() == 1


def test_mallory_replaying_bobs_signed_update_is_refused_and_ledgered(running, mallory):
    federation, (b, _c) = running
    delta = small_delta(federation)
    signature = signed(federation, 1, b, delta, 100)
    stolen = keyed(mallory)
    stolen.key_id = b.key_id  # mallory sends bob's update under bob's key id
    rejection = refused_with(
        403, "neither yours", lambda: submit(federation, 1, stolen, delta, signature=signature)
    )
    assert rejection.submitted_by == mallory
    own = keyed(mallory)  # her own key, but she is no party
    refused_with(
        403,
        "not a party",
        lambda: submit(federation, 1, own, delta, signature=signed(federation, 1, own, delta, 100)),
    )
    assert not Update.objects.exists()


def test_an_update_for_the_wrong_round_is_refused_and_ledgered(running):
    federation, (b, _c) = running
    delta = small_delta(federation)
    # Signed for round 2, which is not open: the round is checked before anything else.
    refused_with(
        409,
        "there is no round 2",
        lambda: submit(federation, 2, b, delta, signature=signed(federation, 2, b, delta, 100)),
    )
    # Signed for round 1 but sent as round 1 of... the signature binds the round: a round-1 signature in round 2.
    Round.objects.filter(federation=federation, number=1).update(status="closed")
    refused_with(409, "round 1 is closed", lambda: submit(federation, 1, b, delta))


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda d: {**d, "output.bias": np.zeros(3, np.float32)}, "shape"),
        (lambda d: {k: v for k, v in d.items() if k != "output.bias"}, "missing output.bias"),
        (lambda d: {**d, "extra": np.zeros(2, np.float32)}, "unexpected extra"),
        (lambda d: {**d, "output.bias": np.full(10, np.nan, np.float32)}, "NaN"),
        (lambda d: {**d, "output.bias": np.full(10, np.inf, np.float32)}, "NaN or infinite"),
        (lambda d: {**d, "output.bias": np.full(10, 1e6, np.float32)}, "norm"),
    ],
)
def test_a_malformed_update_is_refused_and_ledgered(running, mangle, reason):
    federation, (b, _c) = running
    delta = mangle(small_delta(federation))
    data = tensors.encode(delta) if "NaN" not in reason else _raw_safetensors(delta)
    rejection = refused_with(
        400, reason, lambda: submit(federation, 1, b, delta, file=upload(data), signature="x")
    )
    assert rejection.party_id == b.party.pk


def _raw_safetensors(delta: dict) -> bytes:
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in delta.items()})


def test_an_oversized_or_non_safetensors_update_is_refused_and_ledgered(running):
    federation, (b, _c) = running
    delta = small_delta(federation)
    big = upload(b"\0" * (federation.max_update_bytes + 1))
    refused_with(400, "limit", lambda: submit(federation, 1, b, delta, file=big))
    refused_with(
        400, "not a safetensors", lambda: submit(federation, 1, b, delta, file=upload(b"pickle? no"))
    )
    refused_with(400, "num_examples", lambda: submit(federation, 1, b, delta, num_examples=10**30))
    refused_with(400, "finite", lambda: submit(federation, 1, b, delta, metrics={"loss": float("nan")}))
    assert Rejection.objects.count() == 4 == Entry.objects.filter(kind="federation.update.rejected").count()
    call_command("verify_ledger", "--quiet")


def test_refusals_beyond_the_hourly_cap_are_429s_without_ledger_entries(running, settings):
    federation, (b, _c) = running
    settings.FEDERATION_MAX_REJECTIONS_PER_HOUR = 2
    delta = small_delta(federation)
    for _ in range(2):
        with pytest.raises(DomainError):
            submit(federation, 1, b, delta, signature="")
    with pytest.raises(TooManyRequests):
        submit(federation, 1, b, delta, signature="")
    assert Entry.objects.filter(kind="federation.update.rejected").count() == 2


# ---- aggregation in-process, then the end


def run_jobs() -> None:
    for job in Job.objects.filter(status="queued").order_by("pk"):
        job_execute(job_id=job.pk, worker="test")


def test_rounds_aggregate_when_all_are_in_and_the_last_one_pays_by_contribution(running, alice, bob, carol):
    federation, members = running
    for number in (1, 2):
        for i, m in enumerate(members):
            delta, n, metrics = trained_delta(federation, number, i, len(members))
            submit(federation, number, m, delta, num_examples=n, metrics=metrics)
        rnd = Round.objects.get(federation=federation, number=number)
        assert rnd.status == "aggregating" and rnd.job.queue == "ml"
        run_jobs()
        rnd.refresh_from_db()
        assert rnd.status == "closed", rnd.job.error if rnd.job else ""
    federation.refresh_from_db()
    assert federation.status == "finished", federation.error
    aggregated = kinds("federation.round.aggregated")
    assert [a["round"] for a in aggregated] == [1, 2]
    second = Round.objects.get(federation=federation, number=2)
    assert aggregated[1]["new_sha256"] == second.result_sha256 == federation.global_sha256
    assert aggregated[0]["new_sha256"] == second.global_sha256  # round 2 trained from round 1's result
    assert sorted(aggregated[1]["included"]) == sorted(u.sha256 for u in second.updates.all())
    assert float(aggregated[1]["metrics"]["accuracy"]) == second.metrics["accuracy"] > 0.5
    # Anyone can re-run the aggregation from the stored updates and get the ledgered digest.
    assert services.round_recompute(round=second) == aggregated[1]["new_sha256"]
    # The pool minus the fee, exactly, to the parties by contribution; the fee to the treasury.
    fee = 100_000 * federation.fee_bp // 10_000
    payouts = list(Payout.objects.filter(federation=federation))
    assert sum(p.amount for p in payouts) == 100_000 - fee
    assert balance("treasury") == fee
    assert balance(f"user:{bob.pk}") + balance(f"user:{carol.pk}") == 100_000 - fee
    for p in payouts:
        entry = Entry.objects.get(seq=p.entry_seq)
        assert entry.kind == "federation.payout" and float(entry.payload["score"]) == p.score
    assert Escrow.objects.get(pk=federation.escrow_id).status == "released"
    (finished,) = kinds("federation.finished")
    assert finished["paid"] == 100_000 - fee and finished["fee"] == fee
    # The final model is minted to the coordinator, its parties its lineage by their contribution weights.
    from models_market.models import ModelContributor, ModelVersion

    version = ModelVersion.objects.get(pk=federation.model_version_id)
    assert version.token.owner == alice and finished["model_version"] == version.pk
    assert {c.account: c.weight for c in ModelContributor.objects.filter(version=version)} == {
        p.owner_label: p.weight for p in Party.objects.filter(federation=federation) if p.weight
    }
    call_command("verify_ledger", "--quiet")


def test_a_party_whose_update_was_excluded_as_an_outlier_earns_nothing(alice, bob, carol, dora):
    federation = create(alice, rounds=1, strategy="krum", options={"num_malicious": 1}, min_parties=3)
    members = admitted(federation, [keyed(bob), keyed(carol), keyed(dora)])
    for i, m in enumerate(members[:2]):
        delta, n, _ = trained_delta(federation, 1, i, 3)
        submit(federation, 1, m, delta, num_examples=n)
    poisoned = {k: (v * -10).astype(np.float32) for k, v in trained_delta(federation, 1, 2, 3)[0].items()}
    submit(federation, 1, members[2], poisoned, num_examples=200)
    run_jobs()
    federation.refresh_from_db()
    assert federation.status == "finished", federation.error
    rnd = Round.objects.get(federation=federation, number=1)
    assert tensors.digest(poisoned) in rnd.excluded
    assert "outlier" in kinds("federation.round.aggregated")[0]["excluded"][tensors.digest(poisoned)]
    dora_party = Party.objects.get(user=dora)
    assert dora_party.weight == 0 and not Payout.objects.filter(party=dora_party).exists()
    assert balance(f"user:{dora.pk}") == 0
    fee = 100_000 * federation.fee_bp // 10_000
    assert sum(p.amount for p in Payout.objects.all()) in (100_000 - fee, 0)
    call_command("verify_ledger", "--quiet")


def test_reward_split_gives_exactly_the_amount_in_whole_units():
    assert services.reward_split(1_000, {1: 1, 2: 1, 3: 1}) == {1: 334, 2: 333, 3: 333}
    assert services.reward_split(97, {1: 0, 2: 5, 3: 7}) == {2: 40, 3: 57}
    parts = services.reward_split(2**53 - 1, {i: 10**9 + i for i in range(1, 50)})
    assert sum(parts.values()) == 2**53 - 1
    assert services.reward_split(500, {1: 0}) == {}


# ---- deadlines


def test_a_round_short_of_parties_at_its_deadline_is_extended_then_the_federation_fails_and_refunds(
    running, alice, settings
):
    settings.FEDERATION_ROUND_EXTENSIONS = 1
    federation, (b, _c) = running
    Party.objects.filter(federation=federation).exclude(pk=b.party.pk).update(status="removed")
    Round.objects.filter(federation=federation).update(deadline=timezone.now() - timedelta(seconds=1))
    assert services.rounds_due() == {"extended": 1}
    Round.objects.filter(federation=federation).update(deadline=timezone.now() - timedelta(seconds=1))
    assert services.rounds_due() == {"failed": 1}
    federation.refresh_from_db()
    assert federation.status == "failed" and "extension" in federation.error
    assert balance(f"user:{alice.pk}") == 100_000  # the pool came back
    assert kinds("federation.round.extended") and kinds("federation.failed")
    call_command("verify_ledger", "--quiet")


def test_at_the_deadline_with_the_minimum_the_round_aggregates(alice, bob, carol, dora):
    federation = create(alice, rounds=2)
    members = admitted(federation, [keyed(bob), keyed(carol), keyed(dora)])
    for i, m in enumerate(members[:2]):
        submit(federation, 1, m, small_delta(federation, seed=i))
    assert Round.objects.get(federation=federation, number=1).status == "open"  # dora is still expected
    Round.objects.filter(federation=federation).update(deadline=timezone.now() - timedelta(seconds=1))
    assert services.rounds_due() == {"aggregating": 1}
    run_jobs()
    assert Round.objects.get(federation=federation, number=1).status == "closed"
    assert Round.objects.get(federation=federation, number=2).status == "open"


def test_a_failed_aggregation_fails_the_round_and_refunds_the_pool(running, alice, monkeypatch):
    federation, members = running
    for i, m in enumerate(members):
        submit(federation, 1, m, small_delta(federation, seed=i))
    from federation.services import rounds

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(rounds, "validation_xy", broken)
    run_jobs()
    federation.refresh_from_db()
    assert federation.status == "failed" and Round.objects.get(number=1).status == "failed"
    assert balance(f"user:{alice.pk}") == 100_000
    call_command("verify_ledger", "--quiet")


def test_the_signed_message_binds_federation_round_digest_and_examples():
    a = protocol.update_message(federation=1, round=2, sha256="ab", num_examples=3)
    assert a != protocol.update_message(federation=1, round=3, sha256="ab", num_examples=3)
    assert a != protocol.update_message(federation=2, round=2, sha256="ab", num_examples=3)


def test_fedadam_keeps_its_server_state_between_rounds_and_re_aggregation_still_matches(alice, bob, carol):
    federation = create(alice, strategy="fedadam", rounds=2, options={"server_lr": 0.05})
    members = admitted(federation, [keyed(bob), keyed(carol)])
    for number in (1, 2):
        for i, m in enumerate(members):
            delta, n, _ = trained_delta(federation, number, i, 2)
            submit(federation, number, m, delta, num_examples=n)
        run_jobs()
    first, second = Round.objects.filter(federation=federation).order_by("number")
    assert first.server_state and second.server_state  # the moments, stored after each round
    for rnd in (first, second):
        assert services.round_recompute(round=rnd) == rnd.result_sha256
    assert Federation.objects.get(pk=federation.pk).status == "finished"


def test_differential_privacy_charges_each_party_its_epsilon_per_round(alice, bob, carol):
    privacy = {"clip_norm": 1.0, "noise_multiplier": 1.1, "delta": 1e-5}
    federation = create(alice, privacy=privacy, update_norm_bound=1000.0)
    b, _c = admitted(federation, [keyed(bob), keyed(carol)])
    assert federation.privacy == privacy
    submit(federation, 1, b, small_delta(federation))
    from ml.federated import privacy as fl_privacy

    spent = Party.objects.get(pk=b.party.pk).epsilon_spent
    assert (
        spent == pytest.approx(fl_privacy.epsilon_spent(noise_multiplier=1.1, rounds=1, delta=1e-5))
        and spent > 0
    )


def test_an_unknown_or_revoked_key_is_refused_and_ledgered(running):
    from platform_site.accounts.models import PublicKey

    federation, (b, _c) = running
    delta = small_delta(federation)
    refused_with(400, "unknown or revoked", lambda: submit(federation, 1, b, delta, key_id="nosuchkey"))
    PublicKey.objects.filter(key_id=b.key_id).update(revoked_at=timezone.now())
    refused_with(400, "unknown or revoked", lambda: submit(federation, 1, b, delta))
    assert not Update.objects.exists()
