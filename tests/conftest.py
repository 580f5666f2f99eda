import asyncio
import os
import subprocess
import sys
import urllib.request

import pytest
from rest_framework.test import APIClient

from tests.factories import UserFactory
from tests.processes import ROOT, database_url_for_tests, free_port, start_worker, stop, wait_for


@pytest.fixture(autouse=True)
def _no_throttling(settings):
    # Rate limits would make the suite's many calls flaky; their own test sets them. The throttles read their
    # rates on each request (platform_site.throttling), and no rate means no limit.
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": None, "user": None},
    }


@pytest.fixture(autouse=True)
def _tasks_wait_for_the_worker(request, monkeypatch):
    """A test that does not use the suite's Celery worker sends no task to the broker.

    The worker, started by an earlier test, lives for the whole session: it would take a job that this test
    dispatched and run it against the test database while the test's flush empties the tables, and the two
    deadlock (CI failed once on a dataset's statistics job that a streaming-upload test had queued).
    """
    if "celery_worker_process" in request.fixturenames:
        return
    from celery.app.task import Task

    monkeypatch.setattr(Task, "apply_async", lambda *args, **kwargs: None)


@pytest.fixture
def alice(db):
    """The owner: of jobs, organizations, datasets."""
    return UserFactory(username="alice")


@pytest.fixture
def bob(db):
    """The buyer."""
    return UserFactory(username="bob")


@pytest.fixture
def mallory(db):
    """Who must be refused."""
    return UserFactory(username="mallory")


@pytest.fixture
def staff(db):
    return UserFactory(username="olivia", is_staff=True, is_superuser=True)


@pytest.fixture
def api():
    return APIClient()


def api_as(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def asgi_server(transactional_db, tmp_path):
    """Uvicorn serving the site over HTTP and websockets against the test database."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_tests(),
        "DJANGO_SETTINGS_MODULE": "platform_site.settings_test",
    }
    log = tmp_path / "web.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "platform_site.asgi:application"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/accounts/login/", timeout=2):  # noqa: S310  (loopback only)
                return True
        except OSError:
            return False

    try:
        wait_for(up, timeout=60, what="the web server", proc=proc)
    except Exception:
        stop(proc)
        raise RuntimeError(log.read_text()[-4000:]) from None
    yield url
    stop(proc)


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker process consuming both queues against the test database and the real broker."""
    from platform_site.jobs.models import WorkerHeartbeat

    env = {**os.environ, "DATABASE_URL": database_url_for_tests(), "PYTHONUNBUFFERED": "1"}
    env["DJANGO_SETTINGS_MODULE"] = "platform_site.settings_test"
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc, hostname = start_worker(env=env, log=log)

    def online() -> bool:
        with django_db_blocker.unblock():
            return WorkerHeartbeat.objects.filter(hostname=hostname).exists()

    try:
        wait_for(online, timeout=90, what="the Celery worker's first heartbeat", proc=proc)
    except Exception:
        stop(proc)
        raise RuntimeError(f"the test worker did not start:\n{log.read_text()[-5000:]}") from None
    yield hostname, proc
    stop(proc)


@pytest.fixture
def celery_worker(celery_worker_process) -> str:
    """The worker's hostname, once its heartbeat is back (a transactional test's flush deletes it)."""
    from platform_site.jobs.models import WorkerHeartbeat

    hostname, proc = celery_worker_process
    wait_for(
        lambda: WorkerHeartbeat.objects.filter(hostname=hostname).exists(),
        timeout=30,
        what="heartbeat",
        proc=proc,
    )
    return hostname


def run_async(coro):
    """asyncio.run with fresh channel layers: a Redis layer's locks belong to the event loop that made them."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    return asyncio.run(coro)
