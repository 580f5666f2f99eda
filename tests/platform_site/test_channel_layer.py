"""The job websocket stays open while idle on the Redis channel layer (redis-py's socket timeout vs its reads)."""

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from django.conf import settings
from django.test import Client

from platform_site.jobs.models import Job
from tests.processes import ROOT, database_url_for_tests, free_port, stop, wait_for

IDLE_SECONDS = 60


def test_the_redis_layer_socket_outwaits_its_blocking_read():
    from channels_redis.core import RedisChannelLayer

    if "channels_redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
        pytest.skip("needs REDIS_URL")
    (host,) = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    assert host["socket_timeout"] > RedisChannelLayer.brpop_timeout
    assert host["socket_keepalive"] is True


def up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310  (loopback only)
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_an_idle_job_websocket_stays_open_for_a_minute_on_redis(alice, transactional_db, tmp_path):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    if not os.environ.get("REDIS_URL"):
        pytest.skip("needs REDIS_URL: the fault is in the Redis channel layer")
    job = Job.objects.create(owner=alice, kind="ml.selftest", queue="ml")  # queued; no worker takes it
    client = Client()
    client.force_login(alice)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_tests(),
        "DJANGO_SETTINGS_MODULE": "platform_site.settings_test",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "web.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "platform_site.asgi:application"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(
            lambda: up(f"http://127.0.0.1:{port}/accounts/login/"), timeout=90, what="uvicorn", proc=proc
        )
        headers = {
            "Cookie": f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}",
            "Origin": f"http://127.0.0.1:{port}",
        }
        with connect(f"ws://127.0.0.1:{port}/ws/jobs/{job.pk}/", additional_headers=headers) as ws:
            assert json.loads(ws.recv(timeout=10))["status"] == "queued"
            opened = time.monotonic()
            try:
                message = ws.recv(timeout=IDLE_SECONDS)
            except TimeoutError:
                message = None  # idle all along, as it should be
            except ConnectionClosed as exc:
                pytest.fail(
                    f"the server closed the idle websocket after {time.monotonic() - opened:.0f}s: {exc}"
                )
            assert message is None, message
            ws.send(json.dumps({"type": "refresh"}))  # still alive both ways
            assert json.loads(ws.recv(timeout=10))["id"] == job.pk
    finally:
        stop(proc)
    server_log = log.read_text()
    assert "TimeoutError" not in server_log, server_log[-4000:]
    assert "Exception in ASGI application" not in server_log, server_log[-4000:]
