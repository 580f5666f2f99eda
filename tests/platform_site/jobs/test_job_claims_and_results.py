"""A job runs once per claim, a stale runner cannot overwrite it, and every exception ends it failed."""

import math

import pytest

from platform_site.jobs.models import Job
from platform_site.jobs.registry import job_kind
from platform_site.jobs.services import (
    JobCancelled,
    JobReporter,
    job_execute,
    job_start,
    job_succeed,
    job_sweep_stale,
    json_finite,
)
from platform_site.jobs.tasks import job_run
from tests.conftest import api_as

pytestmark = pytest.mark.django_db

RUNS: list[int] = []


@job_kind("tests.echo", label="Test: returns its params")
def run_echo(*, job, reporter) -> dict:
    RUNS.append(job.pk)
    reporter(0.5, message="half", metrics={"step": 1, "loss": math.nan})
    return {"echo": job.params}


@job_kind("tests.result", label="Test: returns a fixed, possibly non-finite result")
def run_result(*, job, reporter) -> dict:
    return {"echo": {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}[job.params["value"]]}


@job_kind("tests.overflow", label="Test: a number too large for a float")
def run_overflow(*, job, reporter) -> dict:
    return {"value": float(10**400)}


def queued(owner, kind: str = "tests.echo", **params) -> Job:
    return Job.objects.create(owner=owner, kind=kind, params=params, celery_task_id=f"task-{kind}-{params}")


@pytest.fixture(autouse=True)
def _no_runs():
    RUNS.clear()


def test_running_the_same_task_twice_runs_the_job_once(alice):
    job = queued(alice)
    job_run.apply(args=[job.pk], task_id=job.celery_task_id)
    job_run.apply(args=[job.pk], task_id=job.celery_task_id)
    job.refresh_from_db()
    assert [job.pk] == RUNS
    assert job.status == "succeeded"
    assert job.attempts == 1


def test_a_task_redelivered_while_its_job_runs_does_nothing(alice):
    job = queued(alice)
    assert job_start(job_id=job.pk, worker="first@host", task_id=job.celery_task_id) is not None
    job_run.apply(args=[job.pk], task_id=job.celery_task_id)  # the same message, delivered again
    job.refresh_from_db()
    assert RUNS == []
    assert (job.status, job.worker, job.attempts) == ("running", "first@host", 1)


def test_a_task_whose_job_was_requeued_under_another_task_does_nothing(alice):
    job = queued(alice)
    job_run.apply(args=[job.pk], task_id="an-older-task")
    job.refresh_from_db()
    assert RUNS == []
    assert (job.status, job.attempts) == ("queued", 0)


def test_a_stale_runner_cannot_overwrite_a_job_another_worker_now_owns(alice):
    job = queued(alice)
    stale = job_start(job_id=job.pk, worker="lost@host", task_id=job.celery_task_id)
    # The sweep gave up on lost@host and requeued the job under a new task, which another worker claimed.
    Job.objects.filter(pk=job.pk).update(status="queued", celery_task_id="task-2")
    owner = job_start(job_id=job.pk, worker="second@host", task_id="task-2")
    assert owner is not None and owner.attempts == 2

    with pytest.raises(JobCancelled):
        JobReporter(stale)(0.9, message="stale progress")
    with pytest.raises(JobCancelled):
        job_succeed(job=stale, result={"from": "the stale runner"})
    job_succeed(job=owner, result={"from": "the owner"})
    job.refresh_from_db()
    assert (job.status, job.result, job.worker) == ("succeeded", {"from": "the owner"}, "second@host")


def test_a_job_whose_worker_restarted_under_the_same_name_is_requeued_by_the_sweep(alice):
    from datetime import timedelta

    from django.utils import timezone

    from platform_site.jobs.models import WorkerHeartbeat

    now = timezone.now()
    long_ago = now - timedelta(minutes=10)
    WorkerHeartbeat.objects.create(hostname="w@host", queues=["ml"], started_at=now, last_seen=now)
    job = Job.objects.create(
        owner=alice, kind="tests.echo", status="running", worker="w@host", attempts=1,
        started_at=long_ago, heartbeat_at=long_ago, celery_task_id="task-1",
    )  # fmt: skip
    assert job_sweep_stale() == {"requeued": 1, "failed": 0}
    job.refresh_from_db()
    assert job.status == "queued" and job.celery_task_id != "task-1"


@pytest.mark.parametrize(("value", "shown"), [("inf", "Infinity"), ("-inf", "-Infinity"), ("nan", "NaN")])
def test_a_non_finite_result_fails_the_job_with_a_readable_reason(alice, value, shown):
    job = queued(alice, "tests.result", value=value)
    job_execute(job_id=job.pk, worker="test")
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error == f"the result contained a non-finite number ({shown} at echo)"
    assert job.result is None


def test_an_overflow_fails_the_job_with_a_reason_a_user_understands(alice):
    job = queued(alice, "tests.overflow")
    job_execute(job_id=job.pk, worker="test")
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error.startswith("a number in the data is too large to compute with")


def test_non_finite_metrics_are_stored_as_null(alice):
    job = queued(alice)
    job_execute(job_id=job.pk, worker="test")
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert job.metrics == [{"step": 1, "loss": None}]


def test_a_result_the_database_refuses_fails_the_job_instead_of_leaving_it_running(alice, monkeypatch):
    from platform_site.jobs import services

    job = queued(alice)

    def refused(*, job, result):
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    monkeypatch.setattr(services, "job_succeed", refused)
    job_execute(job_id=job.pk, worker="test")
    job.refresh_from_db()
    assert job.status == "failed"
    assert "too large to compute with" in job.error


def test_json_finite_names_where_the_number_was():
    with pytest.raises(Exception, match=r"Infinity at columns\[1\]\.std"):
        json_finite({"columns": [{"std": 1.0}, {"std": math.inf}]}, what="the statistics")
    assert json_finite({"a": [1, 2.5, None, "nan"]}) == {"a": [1, 2.5, None, "nan"]}


def test_the_job_api_and_page_say_which_worker_ran_the_job_and_in_how_many_attempts(alice, client):
    job = queued(alice)
    job_execute(job_id=job.pk, worker="w1@host")
    body = api_as(alice).get(f"/api/jobs/{job.pk}/").json()
    assert (body["worker"], body["attempts"]) == ("w1@host", 1)
    listed = api_as(alice).get("/api/jobs/").json()["results"][0]
    assert listed["worker"] == "w1@host"
    client.force_login(alice)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "w1@host" in page
    assert '"worker": "w1@host"' in page  # the snapshot the page's script starts from
