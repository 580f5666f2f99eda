"""On PostgreSQL each web process draws its connections from one bounded pool, however many requests come."""

import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from django.conf import settings
from django.db import connection, connections

from tests.processes import ROOT, database_url_for_tests, free_port, stop, wait_for

POOL_MAX = 3
WEB_PROCESSES = 2
APP_NAME = "pytest-pool-web"  # libpq's PGAPPNAME marks the server's sessions in pg_stat_activity


def test_postgresql_settings_use_a_bounded_pool_and_no_persistent_connections(monkeypatch):
    import importlib

    import platform_site.settings as site_settings

    monkeypatch.setenv("DATABASE_URL", "postgres://u@db.example:5432/platform")
    monkeypatch.setenv("DB_POOL_MAX", "7")
    try:
        fresh = importlib.reload(site_settings)
        database = fresh.DATABASES["default"]
        assert database["CONN_MAX_AGE"] == 0
        assert database["OPTIONS"]["pool"]["max_size"] == 7
        assert database["OPTIONS"]["pool"]["min_size"] <= 7
    finally:
        monkeypatch.undo()
        importlib.reload(site_settings)


def fetch(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310  (loopback only)
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def answers(url: str) -> bool:
    try:
        return fetch(url) == 200
    except OSError:
        return False


@pytest.mark.slow
def test_connections_stay_within_the_pools_under_a_hundred_concurrent_requests(transactional_db, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the pool is PostgreSQL's")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_tests(),
        "DJANGO_SETTINGS_MODULE": "platform_site.settings_test",
        "DB_POOL_MAX": str(POOL_MAX),
        "PGAPPNAME": APP_NAME,
    }
    log = tmp_path / "web.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(WEB_PROCESSES), "platform_site.asgi:application"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    conninfo = database_url_for_tests()
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        with psycopg.connect(conninfo, autocommit=True) as watcher:
            while not done.is_set():
                (count,) = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                    [connection.settings_dict["NAME"], APP_NAME],
                ).fetchone()
                peak = max(peak, count)
                time.sleep(0.02)

    try:
        wait_for(lambda: answers(f"{base}/data/"), timeout=90, what="the web server", proc=proc)
        sampler = threading.Thread(target=sample)
        sampler.start()
        urls = [f"{base}/data/", f"{base}/ledger/", f"{base}/api/ledger/checkpoint/"] * 100
        with ThreadPoolExecutor(max_workers=100) as pool:
            statuses = list(pool.map(fetch, urls))
        done.set()
        sampler.join()
    finally:
        done.set()
        stop(proc)
    server_errors = [s for s in statuses if s >= 500]
    assert not server_errors, log.read_text()[-4000:]
    assert 0 < peak <= POOL_MAX * WEB_PROCESSES, (peak, settings.DATABASES["default"].get("OPTIONS"))


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_a_forked_worker_process_leaves_its_parents_pooled_connections_alone(transactional_db):
    if not connection.settings_dict["OPTIONS"].get("pool"):
        pytest.skip("the pool is PostgreSQL's")
    celery_app = sys.modules["platform_site.celery_app"]
    parent_session = backend_pid()
    connection.close()  # back to the pool, idle, as a worker's heartbeat connection is between beats
    child = os.fork()
    if child == 0:  # what a prefork pool process does at start, then a task's query
        status = 1
        try:
            celery_app._forget_inherited_database_pools()
            for conn in connections.all(initialized_only=True):  # as Celery's Django fixup does next
                conn.close()
                conn.close_pool()
            status = 0 if backend_pid() != parent_session else 2
            connection.close()
        finally:
            os._exit(status)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for _ in range(3):  # the parent takes each of its pooled connections again: none was ended by the child
        backend_pid()
        connection.close()
    assert connection.pool.get_stats().get("connections_lost", 0) == 0
