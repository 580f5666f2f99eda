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
from django.db import connection

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
