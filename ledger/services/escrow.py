"""Escrows: funds held in an `escrow:<id>` account until released to the payee or refunded to the payer."""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from ledger import chain
from ledger.models import Account, Escrow
from ledger.services.accounts import account_check_destination, account_open, check_amount, postings_post
from platform_site.errors import Conflict


def escrow_open(
    *, payer: str, payee: str, amount: int, actor: str, condition: str = "", deadline: datetime | None = None
) -> Escrow:
    """Move `amount` from the payer into a new escrow account, held for the payee."""
    check_amount(amount)
    # Both ends must be accounts tokens may go to: the escrow pays out to one of them.
    account_check_destination(name=payer, system_ok=True)
    account_check_destination(name=payee, system_ok=True)
    account_open(name=payee)  # an escrow for nobody could only ever be refunded
    escrow = Escrow.objects.create(
        payer=payer, payee=payee, amount=amount, condition=condition, deadline=deadline
    )
    Account.objects.create(name=escrow.account_name, kind=Account.Kind.ESCROW)
    entry = postings_post(
        kind="ledger.escrow.opened",
        actor=actor,
        payload={
            "escrow": escrow.pk,
            "payer": payer,
            "payee": payee,
            "amount": amount,
            "condition": condition,
            "deadline": chain.format_timestamp(deadline) if deadline else None,
        },
        postings=[{"account": payer, "amount": -amount}, {"account": escrow.account_name, "amount": amount}],
    )
    escrow.opened_seq = entry.seq
    escrow.save(update_fields=["opened_seq"])
    return escrow


def _escrow_close(escrow_id: int, *, pay: str, status: str, actor: str, reason: str) -> Escrow:
    # Locked: a release and a refund racing for the same escrow must not both pay out.
    escrow = Escrow.objects.select_for_update().get(pk=escrow_id)
    if escrow.status != Escrow.Status.OPEN:
        raise Conflict(f"the escrow is already {escrow.status}")
    to = escrow.payee if pay == "payee" else escrow.payer
    entry = postings_post(
        kind=f"ledger.escrow.{status}",
        actor=actor,
        payload={"escrow": escrow.pk, "reason": reason},
        postings=[
            {"account": escrow.account_name, "amount": -escrow.amount},
            {"account": to, "amount": escrow.amount},
        ],
    )
    escrow.status = status
    escrow.closed_seq = entry.seq
    escrow.save(update_fields=["status", "closed_seq"])
    return escrow


def escrow_release(*, escrow: Escrow, actor: str, reason: str = "condition met") -> Escrow:
    """Pay the held funds to the payee."""
    return _escrow_close(escrow.pk, pay="payee", status=Escrow.Status.RELEASED, actor=actor, reason=reason)


def escrow_refund(*, escrow: Escrow, actor: str, reason: str = "refunded") -> Escrow:
    """Return the held funds to the payer."""
    return _escrow_close(escrow.pk, pay="payer", status=Escrow.Status.REFUNDED, actor=actor, reason=reason)


def escrow_refund_expired() -> int:
    """Refund every open escrow whose deadline has passed; returns how many."""
    refunded = 0
    for escrow_id in Escrow.objects.filter(
        status=Escrow.Status.OPEN, deadline__lt=timezone.now()
    ).values_list("pk", flat=True):
        # One durable transaction per escrow: one failure must not undo the others.
        with transaction.atomic(durable=True):
            try:
                _escrow_close(escrow_id, pay="payer", status=Escrow.Status.REFUNDED, actor="system",
                              reason="deadline passed")  # fmt: skip
                refunded += 1
            except Conflict:
                pass
    return refunded
