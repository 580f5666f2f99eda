import logging
import uuid
from datetime import timedelta
from functools import partial
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from platform_site import realtime
from platform_site.accounts.models import User
from platform_site.errors import Conflict, DomainError, NotFound
from platform_site.jobs.models import Job, WorkerHeartbeat
from platform_site.jobs.registry import get_kind

logger = logging.getLogger(__name__)

Status = Job.Status
MAX_METRIC_POINTS = 5000


class JobCancelled(Exception):
    """Raised inside a running job when it was cancelled (or taken away) since its last report."""


def job_snapshot(job: Job) -> dict[str, Any]:
    """What the browser and the API see of a job."""
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "progress": job.progress,
        "message": job.message,
        "metrics": job.metrics,
        "result": job.result,
        "error": job.error,
        "attempts": job.attempts,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def _push(job_id: int, job: Job | None = None) -> None:
    """Send the job's snapshot to its websocket group (read from the row unless the caller holds it)."""
    if settings.REALTIME_POLL:
        return  # realtime would drop it anyway; skip reading the row for nothing
    job = job or Job.objects.filter(pk=job_id).first()
    if job is not None:
        realtime.job_push(job.pk, job_snapshot(job))


def _dispatch(job_id: int, task_id: str, queue: str) -> None:
    from platform_site.jobs.tasks import job_run

    job_run.apply_async(args=[job_id], task_id=task_id, queue=queue)


def job_submit(*, owner: User, kind: str, params: dict[str, Any] | None = None) -> Job:
    """Validate the parameters of a job kind, create the job and queue it once the transaction commits."""
    job_kind = get_kind(kind)
    params = dict(params or {})
    if job_kind.params is not None:
        serializer = job_kind.params(data=params)
        if not serializer.is_valid():
            messages = "; ".join(
                f"{field}: {' '.join(map(str, errs))}" for field, errs in serializer.errors.items()
            )
            raise DomainError(f"invalid parameters for {kind}: {messages}")
        params = dict(serializer.validated_data)
    task_id = str(uuid.uuid4())
    job = Job.objects.create(
        owner=owner, kind=kind, params=params, queue=job_kind.queue, celery_task_id=task_id
    )
    transaction.on_commit(partial(_dispatch, job.pk, task_id, job_kind.queue))
    return job


def job_cancel(*, job: Job, actor: User) -> Job:
    """Cancel a queued or running job; a running job stops at its next progress report."""
    if job.owner_id != actor.pk and not actor.is_staff:
        raise NotFound("no such job")
    updated = Job.objects.filter(pk=job.pk, status__in=[Status.QUEUED, Status.RUNNING]).update(
        status=Status.CANCELLED, finished_at=timezone.now(), message=f"cancelled by {actor.username}"
    )
    job.refresh_from_db()
    if not updated:
        raise Conflict(f"the job has already {job.status}")
    transaction.on_commit(partial(_push, job.pk))
    return job


class JobReporter:
    """The one helper a running job calls to report progress and metrics."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.job.metrics = list(job.metrics or [])

    def __call__(self, progress: float, *, message: str = "", metrics: dict[str, Any] | None = None) -> None:
        """Record progress (0..1), a status line and one point of metrics; raise JobCancelled if cancelled."""
        job = self.job
        if metrics:
            job.metrics.append(metrics)
            del job.metrics[:-MAX_METRIC_POINTS]
        job.progress = min(max(float(progress), 0.0), 1.0)
        job.message = message[:200]
        job.heartbeat_at = timezone.now()
        # Conditional on RUNNING: a job cancelled (or taken over by the sweep) since the last report stops here.
        updated = Job.objects.filter(pk=job.pk, status=Status.RUNNING).update(
            progress=job.progress, message=job.message, metrics=job.metrics, heartbeat_at=job.heartbeat_at
        )
        if not updated:
            raise JobCancelled(job.pk)
        _push(job.pk, job)


def job_start(*, job_id: int, worker: str) -> Job | None:
    """Claim a job for this worker; None when it is finished or gone (a redelivered task does nothing)."""
    now = timezone.now()
    # Running is included: a job redelivered after its worker died is taken over by the new worker.
    claimed = Job.objects.filter(pk=job_id, status__in=[Status.QUEUED, Status.RUNNING]).update(
        status=Status.RUNNING,
        worker=worker[:200],
        started_at=now,
        heartbeat_at=now,
        error="",
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return None
    _push(job_id)
    return Job.objects.get(pk=job_id)


def _finish(job_id: int, **fields: Any) -> None:
    Job.objects.filter(pk=job_id, status=Status.RUNNING).update(finished_at=timezone.now(), **fields)
    _push(job_id)


def job_execute(*, job_id: int, worker: str) -> None:
    """Run one job to its end: claim it, call its kind's runner, record success or the reason it failed."""
    job = job_start(job_id=job_id, worker=worker)
    if job is None:
        logger.info("job %s is finished or gone; nothing to do", job_id)
        return
    reporter = JobReporter(job)
    try:
        result = get_kind(job.kind).run(job=job, reporter=reporter)
    except JobCancelled:
        logger.info("job %s was cancelled while running", job_id)
        return
    except SoftTimeLimitExceeded:
        _finish(job_id, status=Status.FAILED, error="the job ran past its time limit and was stopped")
    except DomainError as exc:
        _finish(job_id, status=Status.FAILED, error=exc.message)
    except Exception as exc:
        logger.exception("job %s failed", job_id)
        _finish(job_id, status=Status.FAILED, error=f"{type(exc).__name__}: {exc}")
    else:
        _finish(job_id, status=Status.SUCCEEDED, progress=1.0, result=result, message="done")


def worker_heartbeat(*, hostname: str, queues: list[str], pid: int, started_at) -> None:
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname,
        defaults={
            "queues": sorted(queues),
            "pid": pid,
            "started_at": started_at,
            "last_seen": timezone.now(),
        },
    )


def worker_gone(*, hostname: str) -> None:
    WorkerHeartbeat.objects.filter(hostname=hostname).delete()


def job_sweep_stale() -> dict[str, int]:
    """Requeue (or fail, after JOB_MAX_ATTEMPTS) running jobs whose worker stopped sending heartbeats."""
    cutoff = timezone.now() - timedelta(seconds=settings.WORKER_ONLINE_SECONDS)
    live = WorkerHeartbeat.objects.filter(last_seen__gte=cutoff).values_list("hostname", flat=True)
    stale = Job.objects.filter(status=Status.RUNNING, heartbeat_at__lt=cutoff).exclude(worker__in=list(live))
    requeued = failed = 0
    for job in stale:
        if job.attempts < settings.JOB_MAX_ATTEMPTS:
            task_id = str(uuid.uuid4())
            if Job.objects.filter(pk=job.pk, status=Status.RUNNING, heartbeat_at=job.heartbeat_at).update(
                status=Status.QUEUED,
                celery_task_id=task_id,
                message=f"requeued: worker {job.worker} was lost",
            ):
                requeued += 1
                transaction.on_commit(partial(_dispatch, job.pk, task_id, job.queue))
        elif Job.objects.filter(pk=job.pk, status=Status.RUNNING, heartbeat_at=job.heartbeat_at).update(
            status=Status.FAILED,
            finished_at=timezone.now(),
            error=f"the worker running this job ({job.worker}) stopped responding after {job.attempts} attempt(s)",
        ):
            failed += 1
        transaction.on_commit(partial(_push, job.pk))
    WorkerHeartbeat.objects.filter(~Q(last_seen__gte=cutoff - timedelta(hours=1))).delete()
    return {"requeued": requeued, "failed": failed}
