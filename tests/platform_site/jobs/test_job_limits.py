"""One user cannot flood the queues: at most JOB_MAX_ACTIVE_PER_USER jobs queued or running, a clear 429."""

import threading

import pytest
from django.db import connection

from platform_site.errors import TooManyRequests
from platform_site.jobs import services
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_cancel, job_submit
from tests.conftest import api_as
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _limit(settings):
    settings.JOB_MAX_ACTIVE_PER_USER = 3


def selftest(user) -> Job:
    return job_submit(owner=user, kind="ml.selftest", params={"epochs": 1})


@pytest.mark.django_db
def test_a_user_at_the_limit_gets_a_429_with_a_clear_message_and_no_job(alice):
    for _ in range(3):
        assert api_as(alice).post("/api/jobs/selftest/", {}, format="json").status_code == 201
    response = api_as(alice).post("/api/jobs/selftest/", {}, format="json")
    assert response.status_code == 429
    assert response.json() == {
        "detail": "you already have 3 jobs queued or running, the most one user may have; wait for one to "
        "finish (or cancel one) and submit again",
        "code": "too_many_requests",
    }
    assert int(response["Retry-After"]) > 0
    assert Job.objects.filter(owner=alice).count() == 3


@pytest.mark.django_db
def test_another_user_is_accepted_while_the_first_is_at_the_limit(alice, bob):
    for _ in range(3):
        selftest(alice)
    with pytest.raises(TooManyRequests):
        selftest(alice)
    assert api_as(bob).post("/api/jobs/selftest/", {}, format="json").status_code == 201


@pytest.mark.django_db
def test_finished_jobs_do_not_count_and_a_cancelled_one_frees_a_place(alice):
    Job.objects.create(owner=alice, kind="ml.selftest", status="succeeded")
    Job.objects.create(owner=alice, kind="ml.selftest", status="failed")
    jobs = [selftest(alice) for _ in range(3)]
    with pytest.raises(TooManyRequests):
        selftest(alice)
    job_cancel(job=jobs[0], actor=alice)
    assert selftest(alice).status == "queued"


@pytest.mark.django_db
def test_staff_are_held_to_the_same_limit(staff):
    for _ in range(3):
        selftest(staff)
    with pytest.raises(TooManyRequests):
        selftest(staff)


@pytest.mark.django_db
def test_the_page_says_why_a_selftest_was_not_queued(client, alice):
    for _ in range(3):
        selftest(alice)
    client.force_login(alice)
    response = client.post("/jobs/selftest/", follow=True)
    assert response.status_code == 200
    assert "you already have 3 jobs queued or running" in response.content.decode()
    assert Job.objects.filter(owner=alice).count() == 3


@pytest.mark.django_db(transaction=True)
def test_parallel_submits_of_one_user_never_pass_the_limit(monkeypatch):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite runs one writing transaction at a time; the race needs PostgreSQL")
    monkeypatch.setattr(services, "_dispatch", lambda *args: None)  # no broker: only the rows count here
    alice = UserFactory(username="alice")
    start = threading.Barrier(12)
    outcomes: list[str] = []

    def submit() -> None:
        try:
            start.wait()
            selftest(alice)
            outcomes.append("accepted")
        except TooManyRequests:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["accepted"] * 3 + ["refused"] * 9
    assert Job.objects.filter(owner=alice, status="queued").count() == 3
