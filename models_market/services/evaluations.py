"""Evaluation and selection as a paid service: a user scores several listed model versions of one task on a
sealed holdout. The whole payment (the fee, MODELS_EVALUATION_FEE, and each listing's evaluation price) goes
into a ledger escrow (payee: the treasury) in the transaction that queues the job. The worker ranks the models
by the metric with bootstrap intervals and, in one transaction, ledgers the ranking with the holdout's SHA-256,
releases the escrow and pays out of the treasury's receipt each scored model's price to its owner and the price
of every model the holdout did not fit (no rank) back to the user, so the treasury keeps exactly the fee. A job
that fails or is cancelled, or an escrow whose deadline passes first (the ledger's beat task), refunds it all.
The user sees the ranking; each owner only their own model's row."""

import contextlib
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ledger import selectors as ledger_selectors
from ledger import services as ledger
from ml import evaluation
from ml.features import FeatureError
from models_market import runtime
from models_market.models import Evaluation, EvaluationScore, ModelToken, ModelVersion
from models_market.services.holdouts import (
    holdout_close_expired,
    holdout_discard,
    holdout_load,
    holdout_seal,
    holdout_store,
    holdouts_expire,
)
from platform_site.accounts.models import User
from platform_site.errors import Conflict, DomainError

SELECT_KIND = "models_market.select"


def evaluation_submit(
    *,
    user: User,
    versions: list[ModelVersion],
    holdout_file: Any,
    metric: str,
    holdout_format: str | None = None,
) -> Evaluation:
    """Pay for and queue the evaluation of `versions` (listed, ready, one task) on the user's holdout: the
    payment held in a ledger escrow and a `models_market.evaluation.submitted` entry, with the job."""
    from platform_site.jobs.services import job_submit

    ids = list(dict.fromkeys(v.pk for v in versions))
    if not ids:
        raise DomainError("choose at least one model to evaluate")
    if len(ids) > settings.MODELS_EVALUATION_MAX_MODELS:
        raise DomainError(f"at most {settings.MODELS_EVALUATION_MAX_MODELS} models per evaluation")
    found = ModelVersion.objects.select_related("asset", "token").filter(pk__in=ids).in_bulk()
    chosen = [found.get(pk) for pk in ids]
    for pk, version in zip(ids, chosen, strict=True):
        token = getattr(version, "token", None) if version else None
        if (
            version is None
            or token is None
            or not token.listed
            or version.status != ModelVersion.Status.READY
        ):
            raise Conflict(f"model version {pk} is not on offer")
    tasks = {v.asset.task for v in chosen}
    if len(tasks) > 1:
        raise DomainError("the models must all have one task (all classification or all regression)")
    task = tasks.pop()
    if metric not in evaluation.metric_names(task):
        raise DomainError(
            f"{metric!r} is not a {task} metric; choose one of {', '.join(evaluation.metric_names(task))}"
        )
    sealed = holdout_seal(
        file=holdout_file, fmt=holdout_format, schemas=[runtime.schema_for(v) for v in chosen]
    )
    name = holdout_store(sealed)
    try:
        with transaction.atomic(durable=True):
            # Locked: the evaluation prices paid are the ones in force (an owner editing the offer waits).
            tokens = {t.version_id: t for t in ModelToken.objects.select_for_update().filter(version_id__in=ids)
                      .order_by("pk")}  # fmt: skip
            payer = ledger.account_name(user=user)
            fee = settings.MODELS_EVALUATION_FEE
            parts: dict[str, int] = {}
            if fee:
                parts[ledger.TREASURY] = fee
            prices = {}
            for pk in ids:
                token = tokens[pk]
                if not token.listed:
                    raise Conflict(f"model version {pk} is not on offer")
                price = token.price_evaluation or 0 if token.owner_id != user.pk else 0
                prices[pk] = (token.owner_id, price)
                if price:
                    owner = ledger.account_name(user=token.owner_id)
                    parts[owner] = parts.get(owner, 0) + price
            total = sum(parts.values())
            deadline = timezone.now() + timedelta(hours=settings.MODELS_GUARANTEE_DEADLINE_HOURS)
            escrow = None
            if total:
                try:
                    escrow = ledger.escrow_open(
                        payer=payer, payee=ledger.TREASURY, amount=total, actor=payer, deadline=deadline,
                        condition=f"models_market evaluation: {len(ids)} models ranked by {metric}",
                    )  # fmt: skip
                except ledger.InsufficientFunds as exc:
                    raise exc.to_owner(what="the evaluation costs") from exc
            payload = {"user": payer, "versions": ids, "metric": metric, "fee": fee, "total": total,
                       "escrow": escrow.pk if escrow else None,
                       "prices": {str(pk): p for pk, (_o, p) in prices.items()}, "holdout_sha256": sealed.sha256}  # fmt: skip
            entry = ledger.entry_append(
                kind="models_market.evaluation.submitted", actor=payer, payload=payload
            )
            ev = Evaluation.objects.create(
                user=user, task=task, metric=metric, fee=fee, total=total, holdout=name,
                holdout_sha256=sealed.sha256, holdout_format=sealed.fmt, holdout_rows=sealed.table.n_rows,
                entry_seq=entry.seq, escrow_id=escrow.pk if escrow else None,
                deadline=deadline if escrow else None,
            )  # fmt: skip
            EvaluationScore.objects.bulk_create(
                EvaluationScore(evaluation=ev, version_id=pk, owner_id=owner, price=price)
                for pk, (owner, price) in prices.items()
            )
            ev.job = job_submit(owner=user, kind=SELECT_KIND, params={"evaluation": ev.pk})
            ev.save(update_fields=["job"])
    except BaseException:
        from models_market.services.holdouts import _delete

        _delete(name)
        raise
    return ev


def evaluation_run(*, job, reporter) -> dict[str, Any]:
    """The worker's part: load each model safely, score it on the holdout, rank, ledger, discard the holdout."""
    from ml.artifacts import ArtifactError  # torch loads in the worker, not in every web process
    from platform_site.jobs.services import job_succeed

    ev = Evaluation.objects.get(pk=job.params["evaluation"])
    if ev.status != Evaluation.Status.PENDING:
        return {"evaluation": ev.pk, "status": ev.status}
    table = holdout_load(ev.holdout.name, ev.holdout_format)
    scores = list(ev.scores.select_related("version").order_by("pk"))
    measured: list[dict] = []
    for i, row in enumerate(scores):
        reporter(i / max(len(scores), 1), message=f"scoring model {i + 1} of {len(scores)}")
        try:
            loaded = runtime.model_for(row.version)
            schema = runtime.schema_for(row.version)
            measured.append(evaluation.score(loaded.model, schema, table, metric=ev.metric,
                                             resamples=settings.MODELS_EVALUATION_RESAMPLES))  # fmt: skip
        except (FeatureError, ArtifactError, DomainError) as exc:  # this model unscored (its price refunded)
            measured.append({"error": str(exc)[:500]})
    order = evaluation.rank(measured, metric=ev.metric)
    ranks = {}
    next_rank = 1
    for i in order:
        if measured[i].get("estimate") is not None:
            ranks[i] = next_rank
            next_rank += 1
    ranking = []
    for i in order:
        m, row = measured[i], scores[i]
        ranking.append({"version": row.version_id, "rank": ranks.get(i), "estimate": m.get("estimate"),
                        "low": m.get("low"), "high": m.get("high"), "error": m.get("error", "")})  # fmt: skip
    # Out of the treasury's receipt: each scored model's price to its owner, each unscored one's back to the user.
    payer = ledger.account_name(user=ev.user_id)
    payouts: dict[str, int] = {}
    refunded = 0
    for i, row in enumerate(scores):
        if not row.price:
            continue
        if i in ranks:
            owner = ledger.account_name(user=row.owner_id)
            payouts[owner] = payouts.get(owner, 0) + row.price
        else:
            refunded += row.price
    if refunded:
        payouts[payer] = payouts.get(payer, 0) + refunded
    with transaction.atomic(durable=True):
        # Locked: a redelivered job, a failure and the deadline's close settle it at most once.
        ev = Evaluation.objects.select_for_update().get(pk=ev.pk)
        if ev.status != Evaluation.Status.PENDING:
            job_succeed(job=job, result={"evaluation": ev.pk, "status": ev.status})
            return {}
        if ev.escrow_id is not None:
            try:
                ledger.escrow_release(escrow=ledger_selectors.escrow_get(escrow_id=ev.escrow_id),
                                      actor="system", reason="models ranked")  # fmt: skip
            except Conflict:  # the deadline passed first: the ledger's beat task refunded it all
                holdout_close_expired(ev, who="the user")
                result = {"evaluation": ev.pk, "status": ev.status}
                job_succeed(job=job, result=result)
                return result
        # The ledger is public: it holds the order (None: unscored, its price refunded), not the figures, which
        # the payer sees all of and each owner only their own.
        payload = {"evaluation": ev.pk, "escrow": ev.escrow_id, "metric": ev.metric,
                   "holdout_sha256": ev.holdout_sha256, "rows": ev.holdout_rows, "refunded": refunded,
                   "ranking": [{"version": r["version"], "rank": r["rank"]} for r in ranking]}  # fmt: skip
        if payouts:
            entry = ledger.postings_post(
                kind="models_market.evaluation.ranked", actor="system", payload=payload,
                postings=[{"account": ledger.TREASURY, "amount": -sum(payouts.values())},
                          *({"account": a, "amount": p} for a, p in sorted(payouts.items()))],
            )  # fmt: skip
        else:
            entry = ledger.entry_append(
                kind="models_market.evaluation.ranked", actor="system", payload=payload
            )
        for i, row in enumerate(scores):
            m = measured[i]
            row.estimate, row.low, row.high = m.get("estimate"), m.get("low"), m.get("high")
            row.rank, row.error = ranks.get(i), m.get("error", "")
        EvaluationScore.objects.bulk_update(scores, ["estimate", "low", "high", "rank", "error"])
        ev.status = Evaluation.Status.DONE
        ev.result_seq = entry.seq
        ev.finished_at = timezone.now()
        holdout_discard(ev)
        ev.save()
        result = {"evaluation": ev.pk, "metric": ev.metric, "ranking": ranking, "refunded": refunded,
                  "entry_seq": entry.seq}  # fmt: skip
        job_succeed(job=job, result=result)
    return result


def evaluation_failed(*, job, error: str) -> None:
    """The job ended failed or cancelled: refund the user everything, ledger why, mark the evaluation failed and
    discard its holdout (inside the transaction that ends the job)."""
    # Locked: the ranking and the deadline's close settle it at most once.
    ev = Evaluation.objects.select_for_update().filter(pk=job.params.get("evaluation")).first()
    if ev is None or ev.status != Evaluation.Status.PENDING:
        return
    if ev.escrow_id is not None:
        with contextlib.suppress(Conflict):  # already refunded at its deadline
            ledger.escrow_refund(escrow=ledger_selectors.escrow_get(escrow_id=ev.escrow_id), actor="system",
                                 reason="the evaluation failed")  # fmt: skip
    entry = ledger.entry_append(
        kind="models_market.evaluation.failed", actor="system",
        payload={"evaluation": ev.pk, "escrow": ev.escrow_id, "metric": ev.metric,
                 "holdout_sha256": ev.holdout_sha256, "refunded": ev.total, "reason": error[:500]},
    )  # fmt: skip
    ev.status = Evaluation.Status.FAILED
    ev.error = error[:2000]
    ev.result_seq = entry.seq
    ev.finished_at = timezone.now()
    holdout_discard(ev)
    ev.save()


def evaluations_expire() -> int:
    """Refund (if the escrow's beat task has not yet) and close every pending evaluation past its deadline,
    discarding its holdout; returns how many."""
    return holdouts_expire(Evaluation, who="the user")
