import json
import re

import pytest
from django.test import Client

from platform_site.celery_app import app as celery_app
from platform_site.jobs.models import Job
from tests.factories import UserFactory


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_healthz_is_ok_when_database_broker_worker_and_ledger_key_are_up(client, celery_worker):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "worker", "ledger"}
    assert {"default", "ml"} <= set(body["checks"]["worker"]["queues"])
    assert len(body["checks"]["ledger"]["signing_key_id"]) == 8  # the C2SP key id of the ledger key


@pytest.mark.django_db
def test_healthz_says_503_and_why_when_no_worker_is_alive(client, settings):
    settings.WORKER_ONLINE_SECONDS = 0  # every heartbeat is too old
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "down"
    assert "no Celery worker" in response.json()["checks"]["worker"]["error"]


@pytest.mark.django_db
def test_healthz_says_503_when_the_broker_is_unreachable(client, monkeypatch):
    monkeypatch.setattr(celery_app.conf, "broker_url", "redis://127.0.0.1:1/0")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False


@pytest.mark.django_db
def test_the_ops_dashboard_shows_failed_jobs_to_staff(staff, alice):
    Job.objects.create(owner=alice, kind="ml.selftest", status="failed", error="CUDA out of memory")
    client = Client()
    client.force_login(staff)
    response = client.get("/ops/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "CUDA out of memory" in page
    assert 'data-testid="chart-jobs-per-hour"' in page, "jobs per hour are plotted"
    # The failed job is in this hour's bar, in the failed colour (the chart's table holds the same numbers).
    spec = json.loads(
        page.split('<script id="jobs-per-hour-spec" type="application/json">')[1].split("</script>")[0]
    )
    assert [v["series"] for v in spec["data"]["values"]] == ["failed"]


@pytest.mark.django_db
def test_the_ops_dashboard_refuses_non_staff_and_sends_visitors_to_log_in(mallory):
    client = Client()
    response = client.get("/ops/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(mallory)
    assert client.get("/ops/").status_code == 403


@pytest.mark.django_db
def test_every_area_is_reachable_from_the_navigation(client):
    client.force_login(UserFactory(username="nav"))
    page = client.get("/").content.decode()
    for path, title in [
        ("/data/", "Data"),
        ("/models/", "Models"),
        ("/daos/", "DAOs"),
        ("/federated/", "Federated learning"),
        ("/finance/", "Finance"),
        ("/ledger/", "Ledger"),
    ]:
        assert f'href="{path}"' in page
        assert title in client.get(path).content.decode()


@pytest.mark.django_db
def test_the_dashboard_lists_a_users_recent_jobs(client):
    user = UserFactory(username="dana")
    Job.objects.create(owner=user, kind="ml.selftest")
    client.force_login(user)
    page = client.get("/").content.decode()
    assert "ml.selftest" in page and "Run the ML self-test" in page


@pytest.mark.django_db
def test_the_api_docs_load_swagger_ui_from_our_own_static_files(client):
    page = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in page
    # Every script and stylesheet comes from this site (a random CSRF token may well contain "cdn").
    assert not re.search(r'(src|href)=["\']https?://', page), "nothing is loaded from another host"
    assert "cdn.jsdelivr" not in page and "unpkg.com" not in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page


@pytest.mark.django_db
def test_healthz_says_503_when_the_key_file_is_not_the_key_the_ledger_signs_with(client, settings, tmp_path):
    from django.db import transaction

    from ledger import services
    from platform_site.keys import platform_signing_key

    with transaction.atomic():
        services.mint(
            destination="treasury", amount=1, actor="system", reason="first entry registers the key"
        )
    assert client.get("/healthz").json()["checks"]["ledger"]["size"] == 1
    settings.LEDGER_KEY_FILE = tmp_path / "another.pem"  # a fresh key appears there
    platform_signing_key.cache_clear()
    try:
        response = client.get("/healthz")
    finally:
        platform_signing_key.cache_clear()
    assert response.status_code == 503
    assert "LEDGER_KEY_FILE holds key" in response.json()["checks"]["ledger"]["error"]
