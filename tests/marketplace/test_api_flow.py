"""The whole sale through the API, with the statistics job on a real worker."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from ledger.models import Entry
from marketplace.models import DatasetVersion
from platform_site.jobs.models import Job
from tests.conftest import api_as
from tests.ledger.helpers import fund
from tests.processes import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CSV = b"age,income,city\n" + b"".join(
    f"{20 + i % 40},{30000 + 137 * i},{['Oslo', 'Bergen'][i % 2]}\n".encode() for i in range(200)
)


def test_upload_stats_publish_buy_and_download_with_a_stranger_refused(
    alice, bob, mallory, celery_worker, api
):
    owner = api_as(alice)
    created = owner.post(
        "/api/data/datasets/",
        {
            "title": "Incomes 2026",
            "tags": ["finance"],
            "terms_preset": "commercial",
            "price_download": 10_000,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    dataset_id = created.json()["id"]
    uploaded = owner.post(
        f"/api/data/datasets/{dataset_id}/versions/",
        {"file": SimpleUploadedFile("incomes.csv", CSV, content_type="text/csv")},
        format="multipart",
    )
    assert uploaded.status_code == 201, uploaded.content
    assert owner.post(f"/api/data/datasets/{dataset_id}/publish/").status_code == 409  # stats not ready yet

    version = DatasetVersion.objects.get(dataset_id=dataset_id)
    wait_for(lambda: Job.objects.get(pk=version.stats_job_id).is_finished, timeout=90, what="the stats job")
    version.refresh_from_db()
    assert version.status == "ready", version.error
    assert version.stats["rows"] == 200
    assert owner.post(f"/api/data/datasets/{dataset_id}/publish/").status_code == 200

    assert api.get(f"/api/data/datasets/{dataset_id}/download/").status_code in (401, 403)
    assert api_as(mallory).get(f"/api/data/datasets/{dataset_id}/download/").status_code == 403
    fund(f"user:{bob.pk}", 20_000)
    bought = api_as(bob).post(f"/api/data/datasets/{dataset_id}/buy/", {"tier": "download"}, format="json")
    assert bought.status_code == 201, bought.content
    download = api_as(bob).get(f"/api/data/datasets/{dataset_id}/download/")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == CSV
    assert (
        api_as(bob)
        .post(f"/api/data/datasets/{dataset_id}/buy/", {"tier": "download"}, format="json")
        .status_code
        == 409
    )

    kinds = list(Entry.objects.order_by("seq").values_list("kind", flat=True))
    assert "marketplace.dataset.published" in kinds and "marketplace.license.granted" in kinds
    call_command("verify_ledger", "--quiet")


def test_a_compute_only_buyer_runs_k_means_on_the_worker_and_sees_no_rows(alice, bob, celery_worker):
    owner = api_as(alice)
    created = owner.post(
        "/api/data/datasets/",
        {"title": "Incomes", "terms_preset": "research", "price_compute": 2_000},
        format="json",
    )
    dataset_id = created.json()["id"]
    owner.post(
        f"/api/data/datasets/{dataset_id}/versions/",
        {"file": SimpleUploadedFile("incomes.csv", CSV, content_type="text/csv")},
        format="multipart",
    )
    version = DatasetVersion.objects.get(dataset_id=dataset_id)
    wait_for(lambda: Job.objects.get(pk=version.stats_job_id).is_finished, timeout=90, what="the stats job")
    assert owner.post(f"/api/data/datasets/{dataset_id}/publish/").status_code == 200
    fund(f"user:{bob.pk}", 5_000)
    buyer = api_as(bob)
    assert (
        buyer.post(f"/api/data/datasets/{dataset_id}/buy/", {"tier": "compute"}, format="json").status_code
        == 201
    )

    submitted = buyer.post(
        f"/api/data/datasets/{dataset_id}/analyses/", {"analysis": "kmeans", "k": 2}, format="json"
    )
    assert submitted.status_code == 201, submitted.content
    job_id = submitted.json()["id"]
    wait_for(lambda: Job.objects.get(pk=job_id).is_finished, timeout=90, what="the k-means job")
    job = buyer.get(f"/api/jobs/{job_id}/").json()
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]["result"]
    assert result["k"] == 2 and result["privacy"]["epsilon"] == 1.0
    assert result["input"]["categorical_columns_used"] == ["city"]
    licence = buyer.get("/api/data/licenses/").json()[0]
    assert (licence["epsilon_budget"], licence["epsilon_spent"], licence["epsilon_left"]) == (
        "10.00",
        "1.00",
        "9.00",
    )
    assert "30137" not in str(job["result"]), "no income from the file appears in the result"
    assert buyer.get(f"/api/data/datasets/{dataset_id}/download/").status_code == 403
    assert Entry.objects.filter(kind="marketplace.analysis.completed", payload__job=job_id).exists()
    call_command("verify_ledger", "--quiet")
