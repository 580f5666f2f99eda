import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client

from platform_site.asgi import application
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_submit
from tests.conftest import api_as, run_async

pytestmark = pytest.mark.django_db


def make_job(owner, **fields) -> Job:
    return Job.objects.create(owner=owner, kind="ml.selftest", **fields)


def test_anonymous_calls_are_refused_not_crashed(api, alice):
    job = make_job(alice)
    assert api.get("/api/jobs/").status_code in (401, 403)
    assert api.get(f"/api/jobs/{job.pk}/").status_code in (401, 403)
    assert api.post(f"/api/jobs/{job.pk}/cancel/").status_code in (401, 403)
    assert api.post("/api/jobs/selftest/", {}, format="json").status_code in (401, 403)
    assert Job.objects.count() == 1


def test_a_user_sees_only_their_own_jobs(alice, mallory):
    mine = make_job(alice)
    make_job(mallory)
    listed = api_as(alice).get("/api/jobs/").json()
    assert [row["id"] for row in listed["results"]] == [mine.pk]
    assert listed["count"] == 1


def test_mallory_cannot_see_or_cancel_alices_job(alice, mallory):
    job = make_job(alice)
    client = api_as(mallory)
    assert client.get(f"/api/jobs/{job.pk}/").status_code == 404
    assert client.post(f"/api/jobs/{job.pk}/cancel/").status_code == 404
    job.refresh_from_db()
    assert job.status == "queued"
    page = Client()
    page.force_login(mallory)
    assert page.get(f"/jobs/{job.pk}/").status_code == 404
    assert page.post(f"/jobs/{job.pk}/cancel/").status_code == 404


def test_staff_can_see_any_job(alice, staff):
    job = make_job(alice)
    assert api_as(staff).get(f"/api/jobs/{job.pk}/").status_code == 200


def test_the_owner_cancels_a_queued_job(alice):
    job = make_job(alice)
    response = api_as(alice).post(f"/api/jobs/{job.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


def test_cancelling_a_finished_job_is_a_conflict_that_changes_nothing(alice):
    job = make_job(alice, status="succeeded", progress=1.0, result={"ok": 1})
    response = api_as(alice).post(f"/api/jobs/{job.pk}/cancel/")
    assert response.status_code == 409
    assert "already succeeded" in response.json()["detail"]
    job.refresh_from_db()
    assert job.status == "succeeded"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 500}, "epochs"),
        ({"lr": -1}, "lr"),
        ({"hidden": "wide"}, "hidden"),
    ],
)
def test_bad_selftest_parameters_get_a_400_and_create_no_job(alice, body, field):
    response = api_as(alice).post("/api/jobs/selftest/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Job.objects.exists()


def test_submitting_an_unknown_kind_is_refused(alice):
    from platform_site.errors import DomainError

    with pytest.raises(DomainError, match="unknown job kind"):
        job_submit(owner=alice, kind="nope.nothing")


def test_the_job_list_filters_by_status_and_rejects_unknown_ones(alice):
    make_job(alice, status="failed", error="boom")
    make_job(alice)
    client = api_as(alice)
    assert client.get("/api/jobs/?status=failed").json()["count"] == 1
    assert client.get("/api/jobs/?status=exploded").status_code == 400


def test_the_job_list_page_does_not_query_per_job(client, alice, django_assert_max_num_queries):
    for _ in range(5):
        make_job(alice)
    client.force_login(alice)
    with django_assert_max_num_queries(6):
        assert client.get("/jobs/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_the_job_websocket_refuses_other_users_and_anonymous_visitors(alice, mallory):
    job = make_job(alice)

    async def try_connect(headers) -> bool:
        communicator = WebsocketCommunicator(application, f"/ws/jobs/{job.pk}/", headers=headers)
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    browser = Client()
    browser.force_login(mallory)
    mallory_headers = [
        (b"origin", b"http://localhost"),
        (b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode()),
    ]
    assert run_async(try_connect(mallory_headers)) is False
    assert run_async(try_connect([(b"origin", b"http://localhost")])) is False


@pytest.mark.django_db(transaction=True)
def test_the_job_websocket_sends_a_fresh_snapshot_when_asked(alice):
    job = make_job(alice, progress=0.25, message="epoch 1/4")
    browser = Client()
    browser.force_login(alice)
    headers = [
        (b"origin", b"http://localhost"),
        (b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode()),
    ]

    async def snapshots() -> tuple[dict, dict]:
        communicator = WebsocketCommunicator(application, f"/ws/jobs/{job.pk}/", headers=headers)
        connected, _ = await communicator.connect()
        assert connected
        first = await communicator.receive_json_from(timeout=5)
        await communicator.send_json_to({"type": "refresh"})
        second = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return first, second

    first, second = run_async(snapshots())
    assert first == second
    assert first["progress"] == 0.25 and first["message"] == "epoch 1/4"
