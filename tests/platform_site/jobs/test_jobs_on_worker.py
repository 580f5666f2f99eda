"""Jobs run on a real Celery worker process over the real broker, with progress streamed over the websocket."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from platform_site.asgi import application
from platform_site.jobs.models import Job
from tests.conftest import api_as, run_async

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def session_headers(user) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    return [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie.encode())]


def watch(user, job_id: int, *, timeout: float = 120, on_snapshot=None) -> list[dict]:
    """Every snapshot the job's websocket sends until the job finishes."""
    return run_async(_watch(session_headers(user), job_id, timeout=timeout, on_snapshot=on_snapshot))


async def _watch(headers, job_id: int, *, timeout: float, on_snapshot) -> list[dict]:
    communicator = WebsocketCommunicator(application, f"/ws/jobs/{job_id}/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    seen = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                snapshot = await communicator.receive_json_from(timeout=timeout)
                seen.append(snapshot)
                if on_snapshot is not None:
                    await on_snapshot(snapshot)
                if snapshot["status"] in ("succeeded", "failed", "cancelled"):
                    return seen
    finally:
        await communicator.disconnect()


def test_a_selftest_job_runs_on_the_worker_and_its_progress_arrives_over_the_websocket(alice, celery_worker):
    # Long enough (about a second) that even a websocket polling the row sees it mid-way.
    response = api_as(alice).post("/api/jobs/selftest/", {"epochs": 20, "hidden": 512}, format="json")
    assert response.status_code == 201, response.content
    job_id = response.json()["id"]

    seen = watch(alice, job_id)

    final = seen[-1]
    assert final["status"] == "succeeded", final
    assert final["progress"] == 1.0
    assert [m["step"] for m in final["metrics"]] == list(range(1, 21))
    assert final["result"]["test_accuracy"] > 0.8
    progresses = [s["progress"] for s in seen]
    assert progresses == sorted(progresses), "progress never goes backwards"
    assert any(0 < p < 1 for p in progresses), "intermediate progress was streamed, not only the end"
    job = Job.objects.get(pk=job_id)
    assert job.worker == celery_worker
    assert job.attempts == 1


def test_a_crashing_job_ends_failed_with_its_error_shown(alice, celery_worker):
    response = api_as(alice).post("/api/jobs/selftest/", {"epochs": 4, "fail_at_epoch": 2}, format="json")
    job_id = response.json()["id"]

    final = watch(alice, job_id)[-1]

    assert final["status"] == "failed"
    assert "crashed at epoch 2" in final["error"]
    assert [m["step"] for m in final["metrics"]] == [1]
    detail = api_as(alice).get(f"/api/jobs/{job_id}/").json()
    assert detail["status"] == "failed" and "crashed at epoch 2" in detail["error"]
    page = Client()
    page.force_login(alice)
    assert "crashed at epoch 2" in page.get(f"/jobs/{job_id}/").content.decode()


def test_without_a_shared_channel_layer_the_websocket_reads_progress_from_the_job_row(
    alice, celery_worker, settings
):
    # The embedded default: the worker's pushes cannot reach this process, so the consumer polls the row.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.REALTIME_POLL = True
    response = api_as(alice).post("/api/jobs/selftest/", {"epochs": 3}, format="json")

    seen = watch(alice, response.json()["id"])

    assert seen[-1]["status"] == "succeeded"
    assert len(seen[-1]["metrics"]) == 3


def test_a_running_job_stops_when_cancelled(alice, celery_worker):
    client = api_as(alice)
    job_id = client.post("/api/jobs/selftest/", {"epochs": 50, "hidden": 512}, format="json").json()["id"]

    cancelled = []

    async def cancel_once_running(snapshot: dict) -> None:
        if snapshot["status"] == "running" and snapshot["metrics"] and not cancelled:
            cancelled.append(await sync_to_async(client.post)(f"/api/jobs/{job_id}/cancel/"))

    seen = watch(alice, job_id, on_snapshot=cancel_once_running)

    assert cancelled[0].status_code == 200
    assert seen[-1]["status"] == "cancelled"
    job = Job.objects.get(pk=job_id)
    assert job.status == "cancelled"
    assert len(job.metrics) < 50, "the worker stopped training instead of running to the end"
