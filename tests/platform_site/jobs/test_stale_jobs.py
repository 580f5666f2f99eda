import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from platform_site.jobs.models import Job, WorkerHeartbeat
from platform_site.jobs.services import job_requeue_orphans, job_sweep_stale
from platform_site.jobs.signals import pid_alive
from platform_site.jobs.tasks import job_run
from tests.conftest import api_as
from tests.processes import database_url_for_tests, start_worker, stop, wait_for


def running_job(owner, *, worker: str, attempts: int, age_s: int = 600) -> Job:
    return Job.objects.create(
        owner=owner,
        kind="ml.selftest",
        queue="ml",
        status="running",
        worker=worker,
        attempts=attempts,
        heartbeat_at=timezone.now() - timedelta(seconds=age_s),
    )


@pytest.mark.django_db
def test_a_job_whose_worker_vanished_is_requeued(alice, django_capture_on_commit_callbacks):
    job = running_job(alice, worker="ghost@host", attempts=1)
    with django_capture_on_commit_callbacks() as callbacks:
        assert job_sweep_stale() == {"requeued": 1, "failed": 0}
    job.refresh_from_db()
    assert job.status == "queued"
    assert job.message == "requeued: the worker running this job (ghost@host) stopped responding"
    assert callbacks, "the requeued job is dispatched once the transaction commits"


@pytest.mark.django_db
def test_a_job_that_lost_its_worker_too_often_is_failed_with_the_reason(alice):
    job = running_job(alice, worker="ghost@host", attempts=2)
    assert job_sweep_stale() == {"requeued": 0, "failed": 1}
    job.refresh_from_db()
    assert job.status == "failed"
    assert "stopped responding after 2 attempt(s)" in job.error


@pytest.mark.django_db
def test_a_quiet_job_on_a_live_worker_is_left_alone(alice):
    now = timezone.now()
    WorkerHeartbeat.objects.create(hostname="busy@host", queues=["ml"], started_at=now, last_seen=now)
    job = running_job(alice, worker="busy@host", attempts=1)
    assert job_sweep_stale() == {"requeued": 0, "failed": 0}
    job.refresh_from_db()
    assert job.status == "running"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_job_whose_worker_is_killed_is_finished_by_another_worker(alice, celery_worker, settings, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_tests(),
        "DJANGO_SETTINGS_MODULE": "platform_site.settings_test",
    }
    doomed, doomed_name = start_worker(env=env, log=tmp_path / "doomed.log", queues="doomed")
    try:
        wait_for(
            lambda: WorkerHeartbeat.objects.filter(hostname=doomed_name).exists(),
            timeout=90,
            what="worker",
            proc=doomed,
        )
        job = Job.objects.create(
            owner=alice, kind="ml.selftest", queue="ml", params={"epochs": 40, "hidden": 512},
            celery_task_id="doomed-task",
        )  # fmt: skip
        job_run.apply_async(args=[job.pk], queue="doomed", task_id=job.celery_task_id)
        wait_for(lambda: Job.objects.get(pk=job.pk).metrics, timeout=60, what="the first epoch")
        os.killpg(doomed.pid, signal.SIGKILL)  # the worker and its pool child, as a lost machine would
        doomed.wait(10)
    finally:
        stop(doomed)
    WorkerHeartbeat.objects.filter(hostname=doomed_name).delete()  # as if its heartbeat had aged out
    settings.WORKER_ONLINE_SECONDS = 1
    wait_for(lambda: job_sweep_stale()["requeued"] == 1, timeout=10, what="the sweep to requeue the job")

    wait_for(lambda: Job.objects.get(pk=job.pk).is_finished, timeout=180, what="the job to finish elsewhere")
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert job.worker == celery_worker
    assert job.attempts == 2
    assert job.celery_task_id != "doomed-task", "the sweep requeued it under a new task"
    body = api_as(alice).get(f"/api/jobs/{job.pk}/").json()
    assert (body["attempts"], body["worker"]) == (2, celery_worker)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.django_db
def test_a_worker_requeues_its_job_whose_runner_process_died(alice, django_capture_on_commit_callbacks):
    job = running_job(alice, worker="w@host", attempts=1, age_s=0)
    Job.objects.filter(pk=job.pk).update(runner_pid=dead_pid(), celery_task_id="task-1")
    with django_capture_on_commit_callbacks() as callbacks:
        assert job_requeue_orphans(hostname="w@host", alive=pid_alive) == {"requeued": 1, "failed": 0}
    job.refresh_from_db()
    assert job.status == "queued" and job.celery_task_id != "task-1"
    assert "died" in job.message
    assert callbacks, "the requeued job is dispatched under its new task id"


@pytest.mark.django_db
def test_a_worker_leaves_alone_jobs_whose_runner_lives_or_that_run_elsewhere(alice):
    mine = running_job(alice, worker="w@host", attempts=1, age_s=0)
    Job.objects.filter(pk=mine.pk).update(runner_pid=os.getpid())
    elsewhere = running_job(alice, worker="other@host", attempts=1, age_s=0)
    Job.objects.filter(pk=elsewhere.pk).update(runner_pid=dead_pid())
    assert job_requeue_orphans(hostname="w@host", alive=pid_alive) == {"requeued": 0, "failed": 0}
    assert set(Job.objects.values_list("status", flat=True)) == {"running"}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_job_whose_pool_process_is_killed_is_requeued_by_its_live_worker_and_run_once_more(
    alice, celery_worker, tmp_path
):
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_tests(),
        "DJANGO_SETTINGS_MODULE": "platform_site.settings_test",
    }
    host, host_name = start_worker(env=env, log=tmp_path / "host.log", queues="oom")
    try:
        wait_for(
            lambda: WorkerHeartbeat.objects.filter(hostname=host_name).exists(),
            timeout=90,
            what="worker",
            proc=host,
        )
        job = Job.objects.create(
            owner=alice, kind="ml.selftest", queue="ml", params={"epochs": 40, "hidden": 512},
            celery_task_id="oom-task",
        )  # fmt: skip
        job_run.apply_async(args=[job.pk], queue="oom", task_id=job.celery_task_id)
        wait_for(lambda: Job.objects.get(pk=job.pk).metrics, timeout=60, what="the first epoch")
        runner = Job.objects.get(pk=job.pk).runner_pid
        assert runner not in (None, host.pid), "a pool process runs the job"
        os.kill(runner, signal.SIGKILL)  # as the kernel's OOM killer would; the worker itself lives on
        # Its worker requeues it under a new task, on the job's own queue, where the other worker runs it; the
        # original message, redelivered to this worker, finds the job no longer queued under it and does nothing.
        wait_for(lambda: Job.objects.get(pk=job.pk).is_finished, timeout=180, what="the job to finish")
        assert host.poll() is None, "the worker survived the loss of its pool process"
    finally:
        stop(host)
    job.refresh_from_db()
    assert (job.status, job.attempts, job.worker) == ("succeeded", 2, celery_worker)
