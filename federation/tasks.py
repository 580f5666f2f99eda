from celery import shared_task


@shared_task(name="federation.rounds_due", ignore_result=True, acks_late=True)
def rounds_due() -> dict:
    """Settle open rounds past their deadline (aggregate, extend, restart without secure-aggregation
    dropouts, or fail) and those whose updates are all in but whose job could not be queued yet."""
    from federation.services import rounds_due as sweep

    return sweep()
