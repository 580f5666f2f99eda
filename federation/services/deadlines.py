"""Deadlines: the beat task's sweep of open rounds past their deadline (aggregate with the minimum, extend,
restart without secure-aggregation dropouts, or fail the federation)."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from federation.models import Federation, Round
from federation.services.common import SYSTEM, tensors_load
from federation.services.endings import federation_fail
from federation.services.rounds import round_complete, round_open, round_start_aggregation
from ledger import services as ledger

logger = logging.getLogger(__name__)


def round_due(*, round_id: int) -> str:
    """Settle one open round whose quorum is in or whose deadline passed; what was done."""
    with transaction.atomic(durable=True):  # whatever this decides commits with its ledger entry
        # Locked in the order submissions and aggregations take: the federation, then the round.
        # Each row locked alone (a joined FOR UPDATE locks both at once, in no set order).
        federation_id = Round.objects.values_list("federation_id", flat=True).get(pk=round_id)
        federation = Federation.objects.select_for_update().get(pk=federation_id)
        rnd = Round.objects.select_for_update().get(pk=round_id)
        if rnd.status != Round.Status.OPEN or federation.status != Federation.Status.RUNNING:
            return "nothing"
        rnd.federation = federation
        if round_complete(rnd):
            return "aggregating" if round_start_aggregation(rnd=rnd) else "waiting"
        submitted = set(rnd.updates.values_list("party_id", flat=True))
        if rnd.deadline > timezone.now():
            return "nothing"
        if not federation.secure_aggregation and len(submitted) >= federation.min_parties:
            return "aggregating" if round_start_aggregation(rnd=rnd) else "waiting"
        if federation.secure_aggregation and len(submitted) >= federation.min_parties:
            # The masks of the parties that dropped out cannot be removed: the round restarts without them.
            dropped = sorted(set(rnd.secagg_roster or []) - submitted)
            rnd.status, rnd.error, rnd.closed_at = (
                Round.Status.FAILED, f"secure aggregation: parties {dropped} dropped out; restarted without them",
                timezone.now(),
            )  # fmt: skip
            rnd.save(update_fields=["status", "error", "closed_at"])
            ledger.entry_append(
                kind="federation.round.failed", actor=SYSTEM,
                payload={"federation": federation.pk, "round": rnd.number, "reason": "secure aggregation dropouts",
                         "dropped": dropped},
            )  # fmt: skip
            round_open(
                federation=federation, number=rnd.number + 1,
                global_tensors=tensors_load(rnd.weights, federation.spec), actor=SYSTEM, roster=sorted(submitted),
            )  # fmt: skip
            return "restarted"
        if rnd.extensions < settings.FEDERATION_ROUND_EXTENSIONS:
            rnd.deadline = timezone.now() + timedelta(seconds=federation.round_deadline)
            rnd.extensions += 1
            rnd.save(update_fields=["deadline", "extensions"])
            ledger.entry_append(
                kind="federation.round.extended", actor=SYSTEM,
                payload={"federation": federation.pk, "round": rnd.number, "deadline": rnd.deadline.isoformat(),
                         "submitted": len(submitted), "min_parties": federation.min_parties},
            )  # fmt: skip
            return "extended"
        federation_fail(
            federation=federation,
            reason=f"round {rnd.number} had {len(submitted)} of the {federation.min_parties} updates it needs "
            f"after {rnd.extensions} extension(s) of its deadline",
        )
        return "failed"


def rounds_due() -> dict[str, int]:
    """The beat task's sweep: every open round past its deadline, or with all its updates in but no job."""
    now = timezone.now()
    candidates = Round.objects.filter(
        status=Round.Status.OPEN, federation__status=Federation.Status.RUNNING
    ).select_related("federation")
    due = list(candidates.filter(deadline__lte=now).values_list("pk", flat=True))
    for rnd in candidates.exclude(pk__in=due).annotate(n=Count("updates")).filter(n__gt=0):
        if round_complete(rnd):
            due.append(rnd.pk)
    outcomes: dict[str, int] = {}
    for round_id in due:
        try:
            outcome = round_due(round_id=round_id)
        except Exception:  # one round's trouble must not stop the others
            logger.exception("round %s: settling it failed", round_id)
            outcome = "error"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes
