from celery import shared_task


@shared_task(name="ledger.checkpoint", ignore_result=True, acks_late=True)
def ledger_checkpoint() -> int | None:
    from ledger.services import checkpoint_create

    checkpoint = checkpoint_create()
    return checkpoint.tree_size if checkpoint else None


@shared_task(name="ledger.refund_expired_escrows", ignore_result=True, acks_late=True)
def ledger_refund_expired_escrows() -> int:
    from ledger.services import escrow_refund_expired

    return escrow_refund_expired()
