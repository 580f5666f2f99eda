"""The end of a federation: failing it (its pool refunded), or finishing it: contribution scores and integer
weights, payouts from the escrowed pool in exact integers, and the final model minted in the model marketplace
with the parties as its contributors."""

from typing import Any

from django.utils import timezone

from federation.models import Federation, Party, Payout, Round, Update
from federation.services.common import SYSTEM, federation_changed, figure
from ledger import selectors as ledger_selectors
from ledger import services as ledger

WEIGHT_MAX = 10**9


def federation_fail(*, federation: Federation, reason: str) -> None:
    """Inside the caller's transaction, the federation row locked: failed, its open round failed, its pool
    refunded to the coordinator, and a `federation.failed` entry."""
    Round.objects.filter(federation=federation, status=Round.Status.OPEN).update(
        status=Round.Status.FAILED, error=reason, closed_at=timezone.now()
    )
    if federation.escrow_id is not None:
        escrow = ledger_selectors.escrow_get(escrow_id=federation.escrow_id)
        if escrow.status == "open":
            ledger.escrow_refund(escrow=escrow, actor=SYSTEM, reason=f"federation {federation.pk} failed")
    entry = ledger.entry_append(
        kind="federation.failed", actor=SYSTEM, payload={"federation": federation.pk, "reason": reason}
    )
    federation.status, federation.error = Federation.Status.FAILED, reason
    federation_changed(federation.pk)
    federation.finished_seq, federation.finished_at = entry.seq, timezone.now()
    federation.save(update_fields=["status", "error", "finished_seq", "finished_at"])


def reward_split(amount: int, weights: dict[int, int]) -> dict[int, int]:
    """`amount` split by integer weights, each share rounded down, the remainder to the largest weight (the
    lowest party id among equals): the parts add up to exactly `amount`. Parties of weight 0 get nothing."""
    positive = {p: w for p, w in weights.items() if w > 0}
    total = sum(positive.values())
    if not total:
        return {}
    parts = {p: amount * w // total for p, w in positive.items()}
    first = min(positive, key=lambda p: (-positive[p], p))
    parts[first] += amount - sum(parts.values())
    return parts


def _payouts(
    federation: Federation, parties: dict[int, Party], weights: dict[int, int], scores: dict
) -> dict:
    """Pay the escrowed pool: the platform's fee to the treasury, the rest to the parties by weight, one
    `federation.payout` entry each naming its score; refunded to the coordinator when nobody earned."""
    if not federation.reward_pool or federation.escrow_id is None:
        return {"paid": 0, "fee": 0}
    escrow = ledger_selectors.escrow_get(escrow_id=federation.escrow_id)
    split = reward_split(
        federation.reward_pool - federation.reward_pool * federation.fee_bp // 10_000, weights
    )
    if not any(split.values()):
        ledger.escrow_refund(escrow=escrow, actor=SYSTEM, reason="no party contributed to the model")
        return {"paid": 0, "fee": 0, "refunded": federation.reward_pool}
    coordinator = ledger.account_name(user=federation.coordinator_id)
    ledger.escrow_release(escrow=escrow, actor=SYSTEM, reason=f"federation {federation.pk} finished")
    fee = federation.reward_pool * federation.fee_bp // 10_000
    if fee:
        ledger.transfer(
            source=coordinator, destination=ledger.TREASURY, amount=fee, actor=SYSTEM, kind="federation.fee",
            extra={"federation": federation.pk, "fee_bp": federation.fee_bp, "pool": federation.reward_pool},
        )  # fmt: skip
    for party_id, amount in sorted(split.items()):
        if not amount:
            continue
        party = parties[party_id]
        entry = ledger.transfer(
            source=coordinator, destination=party.owner_label, amount=amount, actor=SYSTEM,
            kind="federation.payout",
            extra={"federation": federation.pk, "party": party_id, "score": figure(scores.get(party_id, 0.0)),
                   "weight": weights[party_id]},
        )  # fmt: skip
        Payout.objects.create(
            federation=federation, party=party, account=party.owner_label, amount=amount,
            score=float(scores.get(party_id, 0.0)), weight=weights[party_id], entry_seq=entry.seq,
        )  # fmt: skip
    return {"paid": sum(split.values()), "fee": fee}


def federation_finish(
    *, federation: Federation, last: Round, weights_bytes: bytes, metrics: dict, scores: dict, reached: bool,
) -> dict[str, Any]:  # fmt: skip
    """Inside the aggregation's transaction: each party's score and integer weight (nothing for a party any of
    whose updates was excluded as an outlier), the payouts, the final model minted to the coordinator with the
    parties as contributors by weight, and `federation.finished`."""
    from ml.federated import contribution

    parties = {p.pk: p for p in Party.objects.filter(federation=federation)}
    excluded_digests = set()
    for rnd in Round.objects.filter(federation=federation, status=Round.Status.CLOSED):
        excluded_digests |= set(rnd.excluded or {})
    poisoned = set(
        Update.objects.filter(round__federation=federation, sha256__in=excluded_digests).values_list(
            "party_id", flat=True
        )
    )
    scores = {p: s for p, s in scores.items() if p in parties}
    weights = {int(k): int(v) for k, v in contribution.weights(scores, excluded=poisoned).items()}
    weights = {p: (0 if p in poisoned else max(0, weights.get(p, 0))) for p in scores}
    top = max(weights.values(), default=0)
    if top > WEIGHT_MAX:  # the marketplace's lineage takes weights up to 10^9: scaled down, proportions kept
        weights = {p: w * WEIGHT_MAX // top for p, w in weights.items()}
    for party_id, party in parties.items():
        if party_id in scores:
            party.contribution, party.weight = float(scores[party_id]), weights[party_id]
            party.save(update_fields=["contribution", "weight"])
    paid = _payouts(federation, parties, weights, scores)
    version_id = None
    contributors = [
        (parties[p].owner_label, w, float(scores[p])) for p, w in sorted(weights.items()) if w > 0
    ]
    if contributors:
        from models_market import services as models_services

        curve = [
            {"step": r.number, **{k: v for k, v in (r.metrics or {}).items() if v is not None}}
            for r in Round.objects.filter(federation=federation, status=Round.Status.CLOSED).order_by(
                "number"
            )
        ]
        version = models_services.federated_model_publish(
            owner=federation.coordinator, name=federation.name, description=federation.description,
            spec=federation.spec, weights=weights_bytes, schema=federation.schema, metrics=metrics, curve=curve,
            contributors=contributors, source={"federation": federation.pk, "rounds": last.number},
        )  # fmt: skip
        version_id = version.pk
    entry = ledger.entry_append(
        kind="federation.finished",
        actor=SYSTEM,
        payload={
            "federation": federation.pk, "rounds": last.number, "final_sha256": last.result_sha256,
            "metrics": figure(metrics), "target_reached": reached,
            "scores": {str(p): figure(s) for p, s in sorted(scores.items())},
            "weights": {str(p): w for p, w in sorted(weights.items())}, "paid": paid["paid"], "fee": paid["fee"],
            "model_version": version_id,
        },
    )  # fmt: skip
    federation.status, federation.finished_seq, federation.finished_at = (
        Federation.Status.FINISHED, entry.seq, timezone.now(),
    )  # fmt: skip
    federation.global_sha256 = last.result_sha256
    federation.model_version_id = version_id
    federation_changed(federation.pk)
    federation.save(
        update_fields=["status", "finished_seq", "finished_at", "global_sha256", "model_version_id"]
    )
    return {"scores": {str(p): s for p, s in scores.items()}, "paid": paid["paid"], "fee": paid["fee"],
            "model_version": version_id, "entry_seq": entry.seq}  # fmt: skip
