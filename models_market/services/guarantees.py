"""Licences guaranteed by contract: the token's owner declares a standard (a metric of the model's task, a
threshold, a direction); a guaranteed purchase puts the price into a ledger escrow for the seller, and a worker
scores the model on the buyer's sealed holdout. In one transaction it ledgers the measured value and the
holdout's SHA-256, then either releases the escrow and pays it out as a licence payment (fee, lineage, owner),
granting the licence, or refunds the buyer. An evaluation that never ends is refunded at the escrow's deadline
by the ledger's beat task.

The ledger's escrow pays one payee: it is the token's owner at purchase, and the entry that ledgers the result
moves the fee and lineage shares (payment_shares) from what was released, so every account ends exactly as
after a normal licence payment."""

import contextlib
import math
from collections.abc import Mapping
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
from models_market.models import GuaranteedPurchase, ModelLicense, ModelToken
from models_market.services.holdouts import (
    holdout_discard,
    holdout_load,
    holdout_seal,
    holdout_store,
    holdouts_expire,
    number_text,
)
from models_market.services.licenses import PRICE_FIELD, offer_changes
from models_market.services.lineage import payment_shares
from platform_site.accounts.models import User
from platform_site.accounts.selectors import user_is_active
from platform_site.errors import Conflict, DomainError, PermissionDenied

GUARANTEE_KIND = "models_market.evaluate"
DIRECTIONS = ("min", "max")


def guarantee_set(
    *,
    token: ModelToken,
    actor: User,
    metric: str,
    threshold: float | None = None,
    direction: str | None = None,
    price_evaluation: int | None = None,
) -> ModelToken:
    """Declare (or, with an empty metric, withdraw) the token's performance guarantee; ledgered as
    `models_market.guarantee.set`. The direction defaults to the metric's better side (at least an accuracy,
    at most an RMSE)."""
    with transaction.atomic(durable=True):
        # Locked: a guaranteed purchase reads the standard under the same lock.
        token = ModelToken.objects.select_for_update().select_related("version__asset").get(pk=token.pk)
        if token.owner_id != actor.pk:
            raise PermissionDenied("only the owner of the model's token may set its guarantee")
        if metric:
            names = evaluation.metric_names(token.version.asset.task)
            if metric not in names:
                raise DomainError(
                    f"{metric!r} is not a metric of this model's task; choose one of {', '.join(names)}"
                )
            if threshold is None or not isinstance(threshold, int | float) or not math.isfinite(threshold):
                raise DomainError("the threshold must be a finite number")
            if abs(threshold) > 1e12:
                raise DomainError("the threshold is too large")
            direction = direction or ("min" if evaluation.higher_is_better(metric) else "max")
            if direction not in DIRECTIONS:
                raise DomainError("the direction must be min (at least the threshold) or max (at most)")
        else:
            metric, threshold, direction = "", None, ""
        token.guarantee_metric, token.guarantee_threshold, token.guarantee_direction = (
            metric,
            threshold,
            direction,
        )
        if price_evaluation is not None:
            if not isinstance(price_evaluation, int) or not 0 <= price_evaluation <= ledger.AMOUNT_MAX:
                raise DomainError("the evaluation price must be a whole, non-negative amount")
            token.price_evaluation = price_evaluation or None
        token.save(update_fields=["guarantee_metric", "guarantee_threshold", "guarantee_direction",
                                  "price_evaluation", "updated_at"])  # fmt: skip
        ledger.entry_append(
            kind="models_market.guarantee.set", actor=ledger.account_name(user=actor),
            payload={"token": token.pk, "metric": metric, "threshold": number_text(threshold),
                     "price_evaluation": token.price_evaluation,
                     "direction": direction},
        )  # fmt: skip
    return token


def guarantee_terms(*, token: ModelToken) -> dict[str, Any]:
    """The standard the token's guarantee declares now: metric, direction ("min": the threshold is the least the
    metric may be, "max": the most) and threshold."""
    return {"metric": token.guarantee_metric, "direction": token.guarantee_direction,
            "threshold": token.guarantee_threshold}  # fmt: skip


def _standard_said(standard: Mapping[str, Any]) -> str:
    at = "at least" if standard.get("direction") == "min" else "at most"
    return f"{standard.get('metric')} {at} {standard.get('threshold')}"


def license_purchase_guaranteed(
    *, buyer: User, token: ModelToken, kind: str, holdout_file: Any, holdout_format: str | None = None,
    expected: Mapping[str, int] | None = None, expected_standard: Mapping[str, Any] | None = None,
) -> GuaranteedPurchase:  # fmt: skip
    """Buy a licence under the token's guarantee: the price goes into escrow for the seller, the holdout is
    sealed, and a `models_market.evaluate` job is queued, all in one transaction (`ledger.escrow.opened`).
    `expected` (the licence's terms, as license_purchase) and `expected_standard` (guarantee_terms' names), when
    given, are what the buyer agreed to: an offer or a standard changed since is a Conflict that says how."""
    from platform_site.jobs.services import job_submit

    if kind not in PRICE_FIELD:
        raise DomainError(f"unknown licence kind {kind!r}; choose perpetual, timed or quota")
    if token.owner_id == buyer.pk:
        raise Conflict("you own this model: calling it is free")
    schema = runtime.schema_for(token.version)
    sealed = holdout_seal(file=holdout_file, fmt=holdout_format, schemas=[schema])
    name = holdout_store(sealed)
    try:
        with transaction.atomic(durable=True):
            # Locked: the offer and the standard bought are the ones in force (see license_purchase).
            token = ModelToken.objects.select_for_update().select_related("version__asset").get(pk=token.pk)
            if token.owner_id == buyer.pk:
                raise Conflict("you own this model: calling it is free")
            ready = token.version.status == token.version.Status.READY
            if not (token.listed and ready and user_is_active(user_id=token.owner_id)):
                raise Conflict("this model is not on offer")
            if not token.guarantee_metric:
                raise Conflict("this model's listing declares no performance guarantee")
            price = getattr(token, PRICE_FIELD[kind])
            if price is None:
                raise DomainError(f"this model is not offered with a {kind} licence")
            standard = guarantee_terms(token=token)
            if any(standard.get(name) != value for name, value in (expected_standard or {}).items()):
                said = _standard_said({**standard, **(expected_standard or {})})
                raise Conflict(f"the guarantee changed: it is now {_standard_said(standard)}, not {said}")
            changed = offer_changes(token=token, kind=kind, expected=expected or {})
            if changed:
                raise Conflict(f"the offer changed: {changed}")
            held = ModelLicense.objects.filter(holder=buyer, version=token.version, kind=kind)
            if kind == ModelLicense.Kind.PERPETUAL and held.exists():
                raise Conflict("you hold a perpetual licence for this model already")
            payer = ledger.account_name(user=buyer)
            deadline = timezone.now() + timedelta(hours=settings.MODELS_GUARANTEE_DEADLINE_HOURS)
            try:
                escrow = ledger.escrow_open(
                    payer=payer, payee=ledger.account_name(user=token.owner_id), amount=price, actor=payer,
                    condition=f"models_market guarantee: token {token.pk} {token.guarantee_metric} "
                              f"{token.guarantee_direction} {token.guarantee_threshold}",
                    deadline=deadline,
                )  # fmt: skip
            except ledger.InsufficientFunds as exc:
                raise exc.to_owner(what="the licence costs") from exc
            purchase = GuaranteedPurchase.objects.create(
                token=token, version=token.version, buyer=buyer, seller_id=token.owner_id, kind=kind, price=price,
                metric=token.guarantee_metric, threshold=token.guarantee_threshold,
                direction=token.guarantee_direction, escrow_id=escrow.pk, deadline=deadline, holdout=name,
                holdout_sha256=sealed.sha256, holdout_format=sealed.fmt, holdout_rows=sealed.table.n_rows,
                entry_seq=escrow.opened_seq,
            )  # fmt: skip
            purchase.job = job_submit(owner=buyer, kind=GUARANTEE_KIND, params={"purchase": purchase.pk})
            purchase.save(update_fields=["job"])
    except BaseException:
        from models_market.services.holdouts import _delete

        _delete(name)
        raise
    return purchase


def _escrow(purchase: GuaranteedPurchase) -> Any:
    # Read through the ledger's selector; escrow_release/escrow_refund lock the row themselves.
    return ledger_selectors.escrow_get(escrow_id=purchase.escrow_id)


def guarantee_evaluate_run(*, job, reporter) -> dict[str, Any]:
    """The worker's part: score the model on the holdout, then settle the escrow in one durable transaction."""
    from platform_site.jobs.services import job_succeed

    purchase = GuaranteedPurchase.objects.select_related("version").get(pk=job.params["purchase"])
    if purchase.status != GuaranteedPurchase.Status.PENDING:
        return {"purchase": purchase.pk, "status": purchase.status}
    reporter(0.1, message="loading the model")
    loaded = runtime.model_for(purchase.version)
    schema = runtime.schema_for(purchase.version)
    reporter(0.3, message="scoring the model on the sealed holdout")
    table = holdout_load(purchase.holdout.name, purchase.holdout_format)
    try:
        scored = evaluation.score(
            loaded.model,
            schema,
            table,
            metric=purchase.metric,
            resamples=settings.MODELS_EVALUATION_RESAMPLES,
        )
    except FeatureError as exc:
        raise DomainError(f"the holdout does not fit the model: {exc}") from None
    measured = scored["estimate"]
    met = evaluation.meets(measured, threshold=purchase.threshold, direction=purchase.direction)
    with transaction.atomic(durable=True):
        # Locked: the deadline's refund (through the escrow) and a redelivered job settle it at most once.
        purchase = GuaranteedPurchase.objects.select_for_update().select_related("token").get(pk=purchase.pk)
        if purchase.status != GuaranteedPurchase.Status.PENDING:
            job_succeed(job=job, result={"purchase": purchase.pk, "status": purchase.status})
            return {}
        outcome = "met" if met else "missed"
        seller = ledger.account_name(user=purchase.seller_id)
        try:
            if met:
                ledger.escrow_release(
                    escrow=_escrow(purchase), actor="system", reason=f"{purchase.metric} met"
                )
            else:
                ledger.escrow_refund(
                    escrow=_escrow(purchase), actor="system", reason=f"{purchase.metric} missed"
                )
        except Conflict:  # the deadline passed first: the beat task refunded it
            outcome, met = "expired", False
        postings = []
        if met:
            buyer = ledger.account_name(user=purchase.buyer_id)
            shares = [(a, p) for a, p in payment_shares(version=purchase.version, amount=purchase.price,
                                                         payer=buyer) if a != seller]  # fmt: skip
            if shares:
                postings = [{"account": seller, "amount": -sum(p for _, p in shares)},
                            *({"account": a, "amount": p} for a, p in shares)]  # fmt: skip
        payload = {
            "purchase": purchase.pk, "token": purchase.token_id, "version": purchase.version_id,
            "escrow": purchase.escrow_id, "metric": purchase.metric, "measured": number_text(measured),
            "low": number_text(scored["low"]), "high": number_text(scored["high"]),
            "threshold": number_text(purchase.threshold),
            "direction": purchase.direction, "holdout_sha256": purchase.holdout_sha256,
            "rows": scored["rows"], "outcome": outcome,
        }  # fmt: skip
        if postings:
            entry = ledger.postings_post(kind="models_market.guarantee.evaluated", actor="system",
                                         postings=postings, payload=payload)  # fmt: skip
        else:
            entry = ledger.entry_append(
                kind="models_market.guarantee.evaluated", actor="system", payload=payload
            )
        if met:
            token = purchase.token
            purchase.license = ModelLicense.objects.create(
                version=purchase.version, holder_id=purchase.buyer_id, kind=purchase.kind, price=purchase.price,
                price_per_call=0 if purchase.kind == ModelLicense.Kind.QUOTA else token.price_per_call,
                expires_at=timezone.now() + timedelta(days=token.timed_days or 0)
                if purchase.kind == ModelLicense.Kind.TIMED else None,
                calls_left=token.quota_calls if purchase.kind == ModelLicense.Kind.QUOTA else None,
                entry_seq=entry.seq,
            )  # fmt: skip
        purchase.status = (
            GuaranteedPurchase.Status.EXPIRED if outcome == "expired" else GuaranteedPurchase.Status.DONE
        )
        purchase.outcome = outcome if outcome != "expired" else ""
        purchase.measured = measured
        purchase.result_seq = entry.seq
        purchase.finished_at = timezone.now()
        holdout_discard(purchase)
        purchase.save()
        result = {"purchase": purchase.pk, "metric": purchase.metric, "measured": measured, "low": scored["low"],
                  "high": scored["high"], "threshold": purchase.threshold, "outcome": outcome,
                  "license": purchase.license_id, "entry_seq": entry.seq}  # fmt: skip
        job_succeed(job=job, result=result)
    return result


def guarantee_failed(*, job, error: str) -> None:
    """The evaluation job ended failed or cancelled: refund the buyer, ledger why, discard the holdout (inside
    the transaction that ends the job)."""
    purchase = GuaranteedPurchase.objects.select_for_update().filter(pk=job.params.get("purchase")).first()
    if purchase is None or purchase.status != GuaranteedPurchase.Status.PENDING:
        return
    with contextlib.suppress(Conflict):  # already refunded at its deadline
        ledger.escrow_refund(escrow=_escrow(purchase), actor="system", reason="the evaluation failed")
    entry = ledger.entry_append(
        kind="models_market.guarantee.evaluated", actor="system",
        payload={"purchase": purchase.pk, "token": purchase.token_id, "version": purchase.version_id,
                 "escrow": purchase.escrow_id, "metric": purchase.metric, "measured": None,
                 "holdout_sha256": purchase.holdout_sha256, "outcome": "failed", "reason": error[:500]},
    )  # fmt: skip
    purchase.status = GuaranteedPurchase.Status.FAILED
    purchase.error = error[:2000]
    purchase.result_seq = entry.seq
    purchase.finished_at = timezone.now()
    holdout_discard(purchase)
    purchase.save()


def guarantees_expire() -> int:
    """Refund (if the escrow's beat task has not yet) and close every pending guaranteed purchase past its
    deadline, discarding its holdout; returns how many."""
    return holdouts_expire(GuaranteedPurchase, who="the buyer")
