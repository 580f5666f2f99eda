import logging
import math
import os
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from platform_site import realtime
from platform_site.accounts.models import User
from platform_site.errors import Conflict, DomainError, NotFound, TooManyRequests
from platform_site.jobs.models import Job, WorkerHeartbeat
from platform_site.jobs.registry import get_kind

logger = logging.getLogger(__name__)

Status = Job.Status
MAX_METRIC_POINTS = 5000
# What a 429 for too many active jobs suggests: a short job (a self-test) takes about this long.
JOB_RETRY_AFTER_SECONDS = 10


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
        "worker": job.worker,
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


class NonFiniteNumber(DomainError):
    """A job's result or statistics held NaN or ±Infinity, which JSON (and PostgreSQL's jsonb) cannot hold."""


def json_finite(value: Any, *, what: str = "the result") -> Any:
    """`value` with its numbers checked: NonFiniteNumber (naming where) for NaN or ±Infinity, anywhere inside."""

    def walk(item: Any, path: str) -> None:
        if isinstance(item, float | Decimal) and not (
            item.is_finite() if isinstance(item, Decimal) else math.isfinite(item)
        ):
            name = "NaN" if item != item else ("Infinity" if item > 0 else "-Infinity")
            raise NonFiniteNumber(f"{what} contained a non-finite number ({name} at {path or 'the top'})")
        if isinstance(item, dict):
            for key, sub in item.items():
                walk(sub, f"{path}.{key}" if path else str(key))
        elif isinstance(item, list | tuple):
            for i, sub in enumerate(item):
                walk(sub, f"{path}[{i}]")

    walk(value, "")
    return value


def _finite_or_none(value: Any) -> Any:
    """A metrics point with NaN/±Infinity turned into null: a diverging loss is still worth a point."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(sub) for key, sub in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(sub) for sub in value]
    return value


def job_active_count(*, owner: User) -> int:
    return Job.objects.filter(owner=owner, status__in=[Status.QUEUED, Status.RUNNING]).count()


def job_submit(*, owner: User, kind: str, params: dict[str, Any] | None = None) -> Job:
    """Validate the parameters of a job kind, create the job and queue it once the transaction commits.

    TooManyRequests when the owner already has JOB_MAX_ACTIVE_PER_USER jobs queued or running."""
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
    limit = settings.JOB_MAX_ACTIVE_PER_USER
    # Atomic with the owner's row locked: parallel submits of one user are counted one after the other.
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=owner.pk).first()
        if limit and job_active_count(owner=owner) >= limit:
            raise TooManyRequests(
                f"you already have {limit} jobs queued or running, the most one user may have; "
                "wait for one to finish (or cancel one) and submit again",
                retry_after=JOB_RETRY_AFTER_SECONDS,
            )
        job = Job.objects.create(
            owner=owner, kind=kind, params=params, queue=job_kind.queue, celery_task_id=task_id
        )
    transaction.on_commit(partial(_dispatch, job.pk, task_id, job_kind.queue))
    return job


def _ended_unsuccessfully(job: Job, reason: str) -> None:
    """Let the job's kind mark what it was processing as failed; in the transaction that ends the job."""
    try:
        hook = get_kind(job.kind).on_failure
    except DomainError:  # a kind no longer registered has nothing to mark
        return
    if hook is not None:
        hook(job=job, error=reason)


def job_cancel(*, job: Job, actor: User) -> Job:
    """Cancel a queued or running job; a running job stops at its next progress report."""
    if job.owner_id != actor.pk and not actor.is_staff:
        raise NotFound("no such job")
    message = f"cancelled by {actor.username}"
    # Atomic: the job ends cancelled together with what its kind marks failed (a version in processing).
    with transaction.atomic():
        updated = Job.objects.filter(pk=job.pk, status__in=[Status.QUEUED, Status.RUNNING]).update(
            status=Status.CANCELLED, finished_at=timezone.now(), message=message
        )
        job.refresh_from_db()
        if not updated:
            raise Conflict(f"the job has already {job.status}")
        _ended_unsuccessfully(job, f"the job was {message}")
    transaction.on_commit(partial(_push, job.pk))
    return job


def _claimed(job: Job) -> QuerySet[Job]:
    """The job's row while this runner still holds it: running, under the same task and attempt."""
    return Job.objects.filter(
        pk=job.pk, status=Status.RUNNING, celery_task_id=job.celery_task_id, attempts=job.attempts
    )


class JobReporter:
    """The one helper a running job calls to report progress and metrics. The first report, every report with
    metrics, and others at most every REPORT_SECONDS are written and pushed to the job's page (each write also
    checks the claim); the others only move the job's fields in memory, so a short job that reports each of
    its steps is not slowed by a write and a push per step."""

    REPORT_SECONDS = 0.5

    def __init__(self, job: Job) -> None:
        self.job = job
        self.job.metrics = list(job.metrics or [])
        self._written_at: float | None = None

    def __call__(self, progress: float, *, message: str = "", metrics: dict[str, Any] | None = None) -> None:
        """Record progress (0..1), a status line and one point of metrics; raise JobCancelled if cancelled."""
        job = self.job
        if metrics:
            job.metrics.append(_finite_or_none(metrics))
            del job.metrics[:-MAX_METRIC_POINTS]
        progress = float(progress)
        if math.isfinite(progress):
            job.progress = min(max(progress, 0.0), 1.0)
        job.message = message[:200]
        now = time.monotonic()
        if not metrics and self._written_at is not None and now - self._written_at < self.REPORT_SECONDS:
            return
        self._written_at = now
        job.heartbeat_at = timezone.now()
        # Conditional on the claim: a job cancelled, or taken over by the sweep and another worker, stops here.
        updated = _claimed(job).update(
            progress=job.progress, message=job.message, metrics=job.metrics, heartbeat_at=job.heartbeat_at
        )
        if not updated:
            raise JobCancelled(job.pk)
        _push(job.pk, job)


def job_start(*, job_id: int, worker: str, task_id: str | None = None) -> Job | None:
    """Claim a queued job for this worker; None when it is not queued under this task (a redelivered task,
    or one whose job is running, finished or gone, does nothing). In-process runs pass no task id."""
    now = timezone.now()
    queued = Job.objects.filter(pk=job_id, status=Status.QUEUED)
    if task_id is not None:
        # A lost job is requeued by the sweep under a new task id: only that task may run it now.
        queued = queued.filter(celery_task_id=task_id)
    claimed = queued.update(
        status=Status.RUNNING,
        worker=worker[:200],
        runner_pid=os.getpid(),
        started_at=now,
        heartbeat_at=now,
        error="",
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return None
    job = Job.objects.get(pk=job_id)
    _push(job_id, job)
    return job


def job_succeed(*, job: Job, result: dict[str, Any]) -> None:
    """Record a running job's result. A runner calls it inside its own durable transaction, so that its
    business rows and ledger entry commit together with the result; JobCancelled if its claim was lost."""
    json_finite(result)
    if not _claimed(job).update(
        status=Status.SUCCEEDED, progress=1.0, result=result, message="done", finished_at=timezone.now()
    ):
        raise JobCancelled(job.pk)
    transaction.on_commit(partial(_push, job.pk))


def _fail(job: Job, reason: str) -> None:
    """End the job failed with `reason`, with its kind's hook; never raises, so a job never stays running."""
    try:
        # Atomic: the job's failure and what its kind marks failed with it commit together.
        with transaction.atomic():
            if _claimed(job).update(status=Status.FAILED, error=reason, finished_at=timezone.now()):
                _ended_unsuccessfully(job, reason)
    except Exception:
        logger.exception("job %s: recording its failure (or its kind's on_failure) failed", job.pk)
        try:
            _claimed(job).update(status=Status.FAILED, error=reason[:2000], finished_at=timezone.now())
        except Exception:
            logger.exception("job %s: could not be marked failed", job.pk)
    _push(job.pk)


def _reason(exc: BaseException) -> str:
    """What a user reads when a job fails on an unexpected exception."""
    if isinstance(exc, OverflowError):
        return f"a number in the data is too large to compute with ({exc})"
    if isinstance(exc, MemoryError):
        return "the job ran out of memory"
    return f"the job failed unexpectedly: {type(exc).__name__}: {exc}"


def job_execute(*, job_id: int, worker: str, task_id: str | None = None) -> None:
    """Run one job to its end: claim it, call its kind's runner, record success or the reason it failed."""
    job = job_start(job_id=job_id, worker=worker, task_id=task_id)
    if job is None:
        logger.info("job %s is not queued under task %s; nothing to do", job_id, task_id)
        return
    reporter = JobReporter(job)
    try:
        result = get_kind(job.kind).run(job=job, reporter=reporter)
        # A runner that did not record its result itself (job_succeed) has it recorded here, in a savepoint:
        # a result the database refuses leaves the connection usable to record why the job failed.
        if _claimed(job).exists():
            with transaction.atomic():
                job_succeed(job=job, result=result)
    except JobCancelled:
        logger.info("job %s was cancelled (or taken over) while running", job_id)
    except SoftTimeLimitExceeded:
        _fail(job, "the job ran past its time limit and was stopped")
    except DomainError as exc:
        _fail(job, exc.message)
    except Exception as exc:
        logger.exception("job %s failed", job_id)
        _fail(job, _reason(exc))
    else:
        _push(job_id)


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


def _requeue_or_fail(job: Job, *, lost: str) -> str | None:
    """Requeue a job whose runner is lost under a new task id, or fail it after JOB_MAX_ATTEMPTS; what was done
    ("requeued", "failed"), or None when the job moved on meanwhile."""
    same = Job.objects.filter(
        pk=job.pk, status=Status.RUNNING, attempts=job.attempts, heartbeat_at=job.heartbeat_at
    )
    outcome = None
    if job.attempts < settings.JOB_MAX_ATTEMPTS:
        task_id = str(uuid.uuid4())
        if same.update(status=Status.QUEUED, celery_task_id=task_id, message=f"requeued: {lost}"[:200]):
            outcome = "requeued"
            transaction.on_commit(partial(_dispatch, job.pk, task_id, job.queue))
    else:
        reason = f"{lost} after {job.attempts} attempt(s)"
        # Atomic: the job and what its kind was processing end failed together.
        with transaction.atomic():
            if same.update(status=Status.FAILED, finished_at=timezone.now(), error=reason):
                outcome = "failed"
                _ended_unsuccessfully(job, reason)
    transaction.on_commit(partial(_push, job.pk))
    return outcome


def job_sweep_stale() -> dict[str, int]:
    """Requeue (or fail, after JOB_MAX_ATTEMPTS) running jobs whose worker stopped sending heartbeats, or
    restarted since it claimed them (its redelivered task does not run a job that is still marked running)."""
    cutoff = timezone.now() - timedelta(seconds=settings.WORKER_ONLINE_SECONDS)
    live = dict(WorkerHeartbeat.objects.filter(last_seen__gte=cutoff).values_list("hostname", "started_at"))
    candidates = Job.objects.filter(status=Status.RUNNING, heartbeat_at__lt=cutoff)
    stale = [
        job
        for job in candidates
        if job.worker not in live or (job.started_at is not None and job.started_at < live[job.worker])
    ]
    outcomes = [
        _requeue_or_fail(job, lost=f"the worker running this job ({job.worker}) stopped responding")
        for job in stale
    ]
    WorkerHeartbeat.objects.filter(~Q(last_seen__gte=cutoff - timedelta(hours=1))).delete()
    return {"requeued": outcomes.count("requeued"), "failed": outcomes.count("failed")}


def job_requeue_orphans(*, hostname: str, alive: Callable[[int], bool]) -> dict[str, int]:
    """Called by a worker for its own running jobs: requeue (or fail) those whose runner process is gone, e.g. a
    pool process killed for memory, whose worker is still alive and so escapes the sweep."""
    running = Job.objects.filter(status=Status.RUNNING, worker=hostname, runner_pid__isnull=False)
    outcomes = [
        _requeue_or_fail(job, lost=f"the process running this job ({hostname}, pid {job.runner_pid}) died")
        for job in running
        if not alive(job.runner_pid)
    ]
    return {"requeued": outcomes.count("requeued"), "failed": outcomes.count("failed")}
