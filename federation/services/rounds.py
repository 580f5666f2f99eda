"""Rounds: opening one (the global model stored and its digest ledgered) and aggregating it on the `ml` queue
(the new global model, its metrics and the included and excluded updates ledgered in the transaction that
records them, then the next round or the end: `endings`). Deadlines are in `deadlines`.

Aggregation is deterministic (updates sorted by digest, float64 sums, fixed seeds), so `round_recompute`
reproduces a round's ledgered digest from the stored updates."""

import logging
import math
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from federation.jobkinds import AGGREGATE_KIND
from federation.models import Federation, Party, Round, Update
from federation.services.common import (
    METRICS,
    SYSTEM,
    federation_changed,
    figure,
    file_bytes,
    shapes,
    state_dump,
    state_load,
    tensors_load,
    tensors_save,
)
from federation.services.endings import federation_fail, federation_finish
from ledger import services as ledger
from platform_site.errors import Conflict, DomainError, TooManyRequests
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_submit, job_succeed

logger = logging.getLogger(__name__)
SECAGG_SUM_ID = "secagg-sum"


# ------------------------------------------------------------------------------------------------ opening


def round_open(
    *, federation: Federation, number: int, global_tensors: dict, actor: str, roster: list[int] | None = None
) -> Round:
    """Inside the caller's transaction: round `number` with the global model stored, its deadline, its
    secure-aggregation roster (the admitted parties, unless given) and a `federation.round.opened` entry."""
    from ml.federated import tensors

    digest = tensors.digest(global_tensors)
    if federation.secure_aggregation and roster is None:
        roster = sorted(
            Party.objects.filter(federation=federation, status=Party.Status.ADMITTED).values_list(
                "pk", flat=True
            )
        )
    deadline = timezone.now() + timedelta(seconds=federation.round_deadline)
    rnd = Round.objects.create(
        federation=federation, number=number, global_sha256=digest, weights=tensors_save("rounds", tensors.encode(global_tensors)),
        deadline=deadline, secagg_roster=roster if federation.secure_aggregation else None,
    )  # fmt: skip
    entry = ledger.entry_append(
        kind="federation.round.opened",
        actor=actor,
        payload={
            "federation": federation.pk, "round": number, "global_sha256": digest,
            "deadline": deadline.isoformat(), "secagg_roster": rnd.secagg_roster,
        },
    )  # fmt: skip
    rnd.opened_seq = entry.seq
    rnd.save(update_fields=["opened_seq"])
    federation_changed(federation.pk)
    federation.global_sha256 = digest
    federation.save(update_fields=["global_sha256"])
    return rnd


def federation_start(*, federation: Federation, actor: str) -> Round:
    """Inside the caller's transaction (the federation row locked): running, with round 1 opened on the initial
    model the spec and seed give."""
    from ml.federated import local

    federation.status = Federation.Status.RUNNING
    federation.save(update_fields=["status"])
    return round_open(
        federation=federation, number=1, global_tensors=local.initial_tensors(federation.spec, federation.seed),
        actor=actor,
    )  # fmt: skip


def round_complete(rnd: Round) -> bool:
    """Whether every party the round waits for has its update in (one query): its roster under secure
    aggregation, else the admitted parties."""
    submitted = rnd.updates.values("party_id")
    if rnd.federation.secure_aggregation:
        roster = set(rnd.secagg_roster or [])
        return bool(roster) and roster <= set(submitted.values_list("party_id", flat=True))
    counts = Party.objects.filter(federation_id=rnd.federation_id, status=Party.Status.ADMITTED).aggregate(
        admitted=Count("pk"), missing=Count("pk", filter=~Q(pk__in=submitted))
    )
    return counts["admitted"] > 0 and counts["missing"] == 0


def round_start_aggregation(*, rnd: Round) -> Job | None:
    """Inside the caller's transaction, the round row locked: the round goes to aggregating and its job is
    queued; None (the round left open for the beat task to retry) when the coordinator's job slots are full."""
    try:
        with transaction.atomic():  # a savepoint: a refused job leaves the caller's writes alone
            job = job_submit(owner=rnd.federation.coordinator, kind=AGGREGATE_KIND, params={"round": rnd.pk})
            rnd.status = Round.Status.AGGREGATING
            rnd.job = job
            rnd.save(update_fields=["status", "job"])
            federation_changed(rnd.federation_id, wakes_parties=False)
    except TooManyRequests:
        logger.info("round %s: the coordinator's jobs are full; the beat task retries", rnd.pk)
        return None
    return job


# ------------------------------------------------------------------------------------------------ aggregating


def _previous_state(rnd: Round) -> Any:
    """The server state (FedAdam's moments) left by the last round aggregated before this one."""
    from ml.federated.aggregate import STATEFUL

    if rnd.federation.strategy not in STATEFUL:
        return None
    before = (
        Round.objects.filter(
            federation_id=rnd.federation_id, number__lt=rnd.number, status=Round.Status.CLOSED
        )
        .order_by("-number")
        .first()
    )
    if before is None or not before.server_state:
        return None
    return state_load(file_bytes(before.server_state))


def _aggregate(federation: Federation, rnd: Round, global_tensors: dict, updates: list[Update], state: Any):
    """The strategy's aggregate of the round's updates (the unmasked sum under secure aggregation)."""
    from ml.federated import aggregate

    if federation.secure_aggregation:
        from ml.federated import secagg

        masked = [
            secagg.decode_masked(file_bytes(u.file), shapes=shapes(federation.spec), max_bytes=2**40)
            for u in updates
        ]
        total = sum(u.num_examples for u in updates)
        mean_delta = secagg.unmask_sum(masked, total)
        summed = [aggregate.Update(id=SECAGG_SUM_ID, tensors=mean_delta, num_examples=total)]
        result = aggregate.aggregate(
            strategy=federation.strategy, options=federation.options, global_tensors=global_tensors,
            updates=summed, server_state=state,
        )  # fmt: skip
        result.included = sorted(u.sha256 for u in updates)
        result.excluded = {}
        return result
    items = [
        aggregate.Update(
            id=u.sha256, tensors=tensors_load(u.file, federation.spec), num_examples=u.num_examples
        )
        for u in sorted(updates, key=lambda u: u.sha256)
    ]
    return aggregate.aggregate(
        strategy=federation.strategy, options=federation.options, global_tensors=global_tensors, updates=items,
        server_state=state,
    )  # fmt: skip


def round_recompute(*, round: Round) -> str:
    """Re-run a closed round's aggregation from its stored global model and updates: the digest it gives,
    which equals the ledgered one."""
    from ml.federated import tensors

    federation = round.federation
    updates = list(round.updates.all())
    result = _aggregate(
        federation, round, tensors_load(round.weights, federation.spec), updates, _previous_state(round)
    )
    return tensors.digest(result.new_global)


def _ml_device() -> str:
    """The worker's device for measuring models: ML_DEVICE, else CUDA when present (ml.device)."""
    return settings.ML_DEVICE or "auto"


def _schema(federation: Federation):
    from ml.features import FeatureSchema

    return FeatureSchema.from_json(federation.schema)


def validation_xy(federation: Federation):
    """The coordinator's validation rows as arrays, parsed once per worker process (the file never changes)."""
    key = (federation.pk, federation.validation.name)
    if key not in _validation:
        import io

        from ml.features import FeatureSchema
        from ml.federated import local
        from ml.tabular import read_table

        table = read_table(io.BytesIO(file_bytes(federation.validation)), fmt="csv")
        if len(_validation) >= 8:
            _validation.pop(next(iter(_validation)))
        _validation[key] = local.task_xy(FeatureSchema.from_json(federation.schema), table)
    return _validation[key]


_validation: dict[tuple[int, str], Any] = {}  # a few federations' validation arrays, oldest dropped first


def _score(federation: Federation, metrics: dict) -> float:
    """The target metric with higher always better."""
    value = metrics.get(federation.target_metric)
    if value is None:  # a diverged model
        return -math.inf
    return (
        -float(value)
        if METRICS[federation.spec["task"]].get(federation.target_metric) == "min"
        else float(value)
    )


def target_reached(federation: Federation, metrics: dict) -> bool:
    if federation.target_value is None or metrics.get(federation.target_metric) is None:
        return False
    value = float(metrics[federation.target_metric])
    if METRICS[federation.spec["task"]][federation.target_metric] == "min":
        return value <= federation.target_value
    return value >= federation.target_value


def _contributions(federation: Federation, current: Round, agg_excluded: dict, X, y) -> dict[int, float]:
    """Each party's contribution score over every aggregated round (this one included): leave-one-out or
    Monte-Carlo Shapley on the validation metric. Under secure aggregation the server never sees an update
    alone, so a party's score is its share of the examples trained on."""
    closed = Round.objects.filter(federation=federation, status=Round.Status.CLOSED).order_by("number")
    rounds = [*closed, current]
    if federation.secure_aggregation:
        examples: dict[int, int] = {}
        for u in Update.objects.filter(round__in=rounds):
            examples[u.party_id] = examples.get(u.party_id, 0) + u.num_examples
        total = sum(examples.values()) or 1
        return {party: n / total for party, n in examples.items()}
    from ml.federated import aggregate, contribution, local

    history = []
    for rnd in rounds:
        updates = sorted(rnd.updates.all(), key=lambda u: u.sha256)
        history.append(
            (
                tensors_load(rnd.weights, federation.spec),
                [
                    (u.party_id, aggregate.Update(id=u.sha256, tensors=tensors_load(u.file, federation.spec),
                                                  num_examples=u.num_examples))
                    for u in updates
                ],
            )
        )  # fmt: skip

    schema, device = _schema(federation), _ml_device()

    def evaluate(candidate: dict) -> float:
        return _score(
            federation,
            local.evaluate(spec=federation.spec, tensors=candidate, X=X, y=y, schema=schema, device=device),
        )

    scores = contribution.contributions(
        rounds=history, evaluate=evaluate, strategy=federation.strategy, options=federation.options,
        method=federation.contribution_method, permutations=20, seed=federation.seed,
    )  # fmt: skip
    return {int(k): float(v) for k, v in scores.items()}


def round_aggregate_run(*, job: Job, reporter) -> dict[str, Any]:
    """The aggregation job: the strategy's new global model from the round's updates, measured on the
    coordinator's validation data; one durable transaction records the round, its `federation.round.aggregated`
    entry, then the next round (or the end: scores, payouts, the minted model) and the job's result."""
    from ml.federated import local, tensors

    rnd = Round.objects.select_related("federation", "federation__coordinator").get(pk=job.params["round"])
    federation = rnd.federation
    if rnd.status != Round.Status.AGGREGATING:
        raise Conflict(f"round {rnd.number} is {rnd.status}, not waiting for aggregation")
    reporter(0.05, message=f"loading round {rnd.number}'s updates")
    global_tensors = tensors_load(rnd.weights, federation.spec)
    updates = list(rnd.updates.select_related("party"))
    state = _previous_state(rnd)
    reporter(0.2, message=f"aggregating {len(updates)} updates with {federation.strategy}")
    try:
        result = _aggregate(federation, rnd, global_tensors, updates, state)
    except ValueError as exc:
        raise DomainError(f"the aggregation failed: {exc}") from exc
    new_digest = tensors.digest(result.new_global)
    reporter(0.5, message="measuring the new model on the validation data")
    X, y = validation_xy(federation)
    measured = local.evaluate(
        spec=federation.spec,
        tensors=result.new_global,
        X=X,
        y=y,
        schema=_schema(federation),
        device=_ml_device(),
    )
    # A diverged model's NaN loss is still a result: kept as null (JSON and the ledger hold no NaN).
    metrics = {
        k: (float(v) if math.isfinite(v) else None)
        for k, v in measured.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    closed_before = Round.objects.filter(federation=federation, status=Round.Status.CLOSED).count()
    reached = target_reached(federation, metrics)
    finishing = reached or closed_before + 1 >= federation.rounds
    scores = None
    if finishing:
        reporter(0.7, message="measuring each party's contribution")
        scores = _contributions(federation, rnd, result.excluded, X, y)
    reporter(0.9, message="recording the round")
    result_name = tensors_save("rounds", tensors.encode(result.new_global))
    # The minted model predicts in the target's units (regression's standardization folded in).
    weights_bytes = tensors.encode(local.bake_target_scale(result.new_global, _schema(federation)))
    state_name = ""
    if result.server_state is not None:
        from django.core.files.base import ContentFile
        from django.core.files.storage import default_storage

        state_name = default_storage.save(
            "federation/rounds/state.json", ContentFile(state_dump(result.server_state))
        )
    with transaction.atomic(durable=True):  # the round's result, its entry, what follows, and the job
        # Locked: a deadline sweep or a second delivery of this job must not record the round twice.
        federation = Federation.objects.select_for_update().get(pk=federation.pk)
        rnd = Round.objects.select_for_update().get(pk=rnd.pk)
        if rnd.status != Round.Status.AGGREGATING or federation.status != Federation.Status.RUNNING:
            raise Conflict(f"round {rnd.number} is {rnd.status}; the federation is {federation.status}")
        included = list(result.included)
        excluded = dict(result.excluded)
        rnd.status, rnd.result_sha256, rnd.result, rnd.server_state = (
            Round.Status.CLOSED, new_digest, result_name, state_name,
        )  # fmt: skip
        rnd.metrics, rnd.included, rnd.excluded, rnd.closed_at = metrics, included, excluded, timezone.now()
        entry = ledger.entry_append(
            kind="federation.round.aggregated",
            actor=SYSTEM,
            payload={
                "federation": federation.pk, "round": rnd.number, "strategy": federation.strategy,
                "global_sha256": rnd.global_sha256, "new_sha256": new_digest, "included": included,
                "excluded": excluded, "metrics": figure(metrics), "job": job.pk,
            },
        )  # fmt: skip
        rnd.aggregated_seq = entry.seq
        rnd.save()
        outcome = {
            "federation": federation.pk, "round": rnd.number, "new_sha256": new_digest, "metrics": metrics,
            "included": len(included), "excluded": len(excluded), "entry_seq": entry.seq,
        }  # fmt: skip
        if finishing:
            outcome["finished"] = federation_finish(
                federation=federation, last=rnd, weights_bytes=weights_bytes, metrics=metrics,
                scores=scores or {}, reached=reached,
            )  # fmt: skip
        else:
            nxt = round_open(federation=federation, number=rnd.number + 1, global_tensors=result.new_global,
                             actor=SYSTEM)  # fmt: skip
            outcome["next_round"] = nxt.number
        job_succeed(job=job, result=outcome)
    return outcome


def round_aggregation_failed(*, round_id: int, error: str) -> None:
    """The aggregation job failed for good: inside the job's failure transaction, the round and the federation
    fail and the reward pool goes back to the coordinator."""
    # The federation, then the round, each locked alone: a FOR UPDATE over a join would lock both rows at once,
    # in an order that can deadlock against the other writers (they all take the federation first).
    federation_id = Round.objects.values_list("federation_id", flat=True).get(pk=round_id)
    federation = Federation.objects.select_for_update().get(pk=federation_id)
    rnd = Round.objects.select_for_update().get(pk=round_id)
    if rnd.status in (Round.Status.CLOSED, Round.Status.FAILED):
        return
    rnd.status, rnd.error, rnd.closed_at = Round.Status.FAILED, error[:2000], timezone.now()
    rnd.save(update_fields=["status", "error", "closed_at"])
    if federation.is_active:
        federation_fail(
            federation=federation, reason=f"round {rnd.number}'s aggregation failed: {error}"[:500]
        )
