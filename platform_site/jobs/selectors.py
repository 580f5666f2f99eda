from datetime import timedelta

from django.conf import settings
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

from platform_site.accounts.models import User
from platform_site.errors import NotFound
from platform_site.jobs.models import Job, WorkerHeartbeat
from platform_site.jobs.registry import Presentation, find_kind


def job_list_for_user(*, user: User, status: str = "", kind: str = "") -> QuerySet[Job]:
    jobs = Job.objects.filter(owner=user).select_related("owner")
    if status:
        jobs = jobs.filter(status=status)
    if kind:
        jobs = jobs.filter(kind=kind)
    return jobs


def job_get_for_user(*, job_id: int, user: User) -> Job:
    """The job if the user owns it (staff see all); NotFound otherwise, so that ids of others do not leak."""
    jobs = Job.objects.select_related("owner")
    if not user.is_staff:
        jobs = jobs.filter(owner_id=user.pk)
    job = jobs.filter(pk=job_id).first()
    if job is None:
        raise NotFound("no such job")
    return job


def job_presentations(jobs: list[Job]) -> dict[int, Presentation]:
    """How each job is shown, by its kind's presenter: one call per kind present, each resolving its jobs'
    objects in bulk. Jobs of a kind without a presenter get an empty presentation."""
    by_kind: dict[str, list[Job]] = {}
    for job in jobs:
        by_kind.setdefault(job.kind, []).append(job)
    shown: dict[int, Presentation] = {}
    for name, group in by_kind.items():
        kind = find_kind(name)
        if kind is not None and kind.present is not None:
            shown.update(kind.present(group))
    return {job.pk: shown.get(job.pk) or Presentation() for job in jobs}


def worker_list_online() -> list[WorkerHeartbeat]:
    cutoff = timezone.now() - timedelta(seconds=settings.WORKER_ONLINE_SECONDS)
    return list(WorkerHeartbeat.objects.filter(last_seen__gte=cutoff))


def job_counts_by_hour(*, hours: int = 24) -> list[dict]:
    """Jobs created per hour and status over the last `hours`, oldest first, every hour present."""
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(hours=hours - 1)
    rows = (
        Job.objects.filter(created_at__gte=start)
        .annotate(hour=TruncHour("created_at"))
        .values("hour", "status")
        .annotate(n=Count("id"))
    )
    buckets = {start + timedelta(hours=i): dict.fromkeys(Job.Status.values, 0) for i in range(hours)}
    for row in rows:
        if row["hour"] in buckets:
            buckets[row["hour"]][row["status"]] = row["n"]
    return [{"hour": hour, **counts} for hour, counts in sorted(buckets.items())]


def job_failed_recent(*, limit: int = 20) -> QuerySet[Job]:
    return (
        Job.objects.filter(status=Job.Status.FAILED).select_related("owner").order_by("-finished_at")[:limit]
    )


def job_status_totals() -> dict[str, int]:
    totals = dict.fromkeys(Job.Status.values, 0)
    for row in Job.objects.values("status").annotate(n=Count("id")):
        totals[row["status"]] = row["n"]
    return totals
