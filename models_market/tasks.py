import psycopg
from celery import shared_task
from django.db import OperationalError


@shared_task(name="models_market.settle_calls", ignore_result=True, acks_late=True)
def settle_calls() -> int:
    """Settle every pending call in batches of MODELS_SETTLE_BATCH (beat runs it every MODELS_SETTLE_SECONDS;
    a call that brings the unsettled count to a batch queues it at once). Returns how many were settled."""
    from django.conf import settings

    from models_market.services import settle_pending
    from models_market.services.admission import DEADLOCK_ATTEMPTS

    settled, batch, deadlocks = 0, max(1, settings.MODELS_SETTLE_BATCH), 0
    for _ in range(100):  # bounded: a worker that cannot keep up leaves the rest to the next run
        try:
            settlement = settle_pending(limit=batch)
        except OperationalError as exc:
            # It locks the callers' meters in key order; a group of calls takes them in its own and PostgreSQL
            # may abort either. Nothing of this batch was written: it is settled again (the group is through), as
            # many times as a group's statement is run.
            deadlocks += 1
            if (
                not isinstance(exc.__cause__, psycopg.errors.DeadlockDetected)
                or deadlocks >= DEADLOCK_ATTEMPTS
            ):
                raise
            continue
        if settlement is None:
            break
        settled += settlement.calls
        if settlement.calls < batch:
            break
    return settled


@shared_task(name="models_market.expire_guarantees", ignore_result=True, acks_late=True)
def expire_guarantees() -> int:
    """Close guaranteed purchases and paid evaluations past their escrow's deadline (refunded, holdout
    discarded), beside the ledger's escrow beat task, which refunds the escrow itself."""
    from models_market.services import evaluations_expire, guarantees_expire

    return guarantees_expire() + evaluations_expire()
