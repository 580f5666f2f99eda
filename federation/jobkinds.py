"""Federated learning's job: aggregating a round on the `ml` queue."""

from rest_framework import serializers

from platform_site.jobs.registry import Presentation, job_kind

AGGREGATE_KIND = "federation.aggregate"


class AggregateParams(serializers.Serializer):
    round = serializers.IntegerField(min_value=1, max_value=2**63 - 1)


def aggregate_failed(*, job, error: str) -> None:
    from federation.services import round_aggregation_failed

    round_aggregation_failed(round_id=job.params["round"], error=error)


def present_aggregate(jobs) -> dict[int, Presentation]:
    """The federation and round aggregated, and the new model's figures (one query)."""
    from django.urls import reverse

    from federation.models import Round

    ids = {job.params.get("round") for job in jobs if isinstance(job.params.get("round"), int)}
    rounds = Round.objects.filter(pk__in=ids).select_related("federation").in_bulk()
    shown = {}
    for job in jobs:
        rnd = rounds.get(job.params.get("round"))
        if rnd is None:
            continue
        result = job.result if isinstance(job.result, dict) else {}
        lines = [("Strategy", rnd.federation.strategy), ("Round", str(rnd.number))]
        for name, value in (result.get("metrics") or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                lines.append((name, f"{value:.4g}"))
        if result.get("entry_seq") is not None:
            lines.append(("Ledger entry", f"#{result['entry_seq']}"))
        shown[job.pk] = Presentation(
            lines=lines,
            object=(rnd.federation.name, reverse("federation:detail", args=[rnd.federation_id])),
            params=[("round", str(rnd.number))],
        )
    return shown


@job_kind(
    AGGREGATE_KIND,
    label="Federated round aggregation",
    queue="ml",
    params=AggregateParams,
    on_failure=aggregate_failed,
    present=present_aggregate,
)
def run_aggregate(*, job, reporter) -> dict:
    from federation.services import round_aggregate_run

    return round_aggregate_run(job=job, reporter=reporter)
