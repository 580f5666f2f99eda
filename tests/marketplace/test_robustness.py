"""Bad input gets a 400 and leaves nothing behind; previews stay small; drafts' versions are visible to their
owner; pages take their figures and rules from the ledger and from one selector."""

import hashlib
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from ledger.models import Account
from marketplace import selectors, services
from marketplace.models import Dataset, DatasetVersion, License
from platform_site.errors import DomainError
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_execute
from tests.conftest import api_as
from tests.ledger.helpers import fund
from tests.marketplace.conftest import files_under
from tests.marketplace.test_pages import CSV, client_for, make_listing

pytestmark = pytest.mark.django_db


def draft(owner) -> Dataset:
    return services.dataset_create(owner=owner, title="Incomes", terms_preset="open", price_download=100)


# ---------------------------------------------------------------------------------------------------- bounds


@pytest.mark.parametrize("price", [2**63, 10**30, 2**53, 0, -1])
def test_an_out_of_range_price_is_a_400_through_the_api(alice, price):
    body = {"title": "Big", "terms_preset": "open", "price_download": price}
    response = api_as(alice).post("/api/data/datasets/", json.dumps(body), content_type="application/json")
    assert response.status_code == 400 and "price_download" in response.json()
    assert not Dataset.objects.exists()


def test_the_largest_exact_price_is_listed_published_and_on_the_ledger(alice, media):
    body = {"title": "Dear", "terms_preset": "open", "price_download": 2**53 - 1}
    created = api_as(alice).post("/api/data/datasets/", body, format="json")
    assert created.status_code == 201, created.content
    dataset = Dataset.objects.get()
    version = services.dataset_version_upload(
        dataset=dataset, actor=alice, upload=SimpleUploadedFile("a.csv", CSV)
    )
    job_execute(job_id=version.stats_job_id, worker="test")
    assert api_as(alice).post(f"/api/data/datasets/{dataset.pk}/publish/").status_code == 200


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"price_download": 2**63}, "at most"),
        ({"price_compute": 10**30}, "at most"),
        ({"description": "x" * 5_001}, "description"),
        ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"terms_overrides": {"term_days": 10**10}}, "number of days"),
        ({"terms_preset": "gratis"}, "unknown terms preset"),
    ],
)
def test_the_creation_service_bounds_what_it_stores(alice, fields, message):
    with pytest.raises(DomainError, match=message):
        services.dataset_create(
            owner=alice, **{"title": "T", "terms_preset": "research", "price_download": 100, **fields}
        )
    assert not Dataset.objects.exists()


def test_an_out_of_range_price_on_the_page_is_a_form_error(alice):
    response = client_for(alice).post(
        "/data/new/",
        {"title": "Big", "terms_preset": "open", "price_download": str(10**30),
         "file": SimpleUploadedFile("a.csv", CSV)},
    )  # fmt: skip
    assert response.status_code == 200 and response.context["form"].errors["price_download"]
    assert not Dataset.objects.exists()


def test_an_absurd_dataset_id_is_a_404(alice):
    for url in (f"/api/data/datasets/{10**20}/", f"/api/data/datasets/{2**63}/versions/", f"/data/{10**30}/"):
        assert api_as(alice).get(url).status_code == 404, url


@pytest.mark.parametrize("how", ["multipart", "raw"])
def test_a_long_file_name_is_shortened_keeping_its_extension(alice, media, how):
    dataset = draft(alice)
    name = "é" * 40 + "x" * 200 + ".CSV"  # the query parameter takes up to 255
    if how == "multipart":
        response = api_as(alice).post(
            f"/api/data/datasets/{dataset.pk}/versions/",
            {"file": SimpleUploadedFile(name, CSV)},
            format="multipart",
        )
    else:
        response = api_as(alice).generic(
            "PUT", f"/api/data/datasets/{dataset.pk}/versions/upload/?filename={name}", CSV,
            content_type="application/octet-stream",
        )  # fmt: skip
    assert response.status_code == 201, response.content
    stored = DatasetVersion.objects.get().file.name
    assert len(stored) <= DatasetVersion._meta.get_field("file").max_length
    assert stored.endswith("xxx.csv") and stored.startswith(f"datasets/{dataset.pk}/")
    assert files_under(media) == [media / stored]


@pytest.mark.parametrize(
    "name", ["../../../etc/passwd.csv", "..\\..\\evil.csv", "a/b/../../c.jsonl", "<script>.csv"]
)
def test_a_file_name_with_a_path_is_stored_under_the_listing(alice, media, name):
    dataset = draft(alice)
    version = services.dataset_version_upload(
        dataset=dataset, actor=alice, upload=SimpleUploadedFile(name, CSV)
    )
    assert version.file.name.startswith(f"datasets/{dataset.pk}/") and ".." not in version.file.name
    assert Path(version.file.path).resolve().is_relative_to(media.resolve())


def test_a_refused_upload_leaves_no_file(alice, media, settings):
    dataset = draft(alice)
    settings.UPLOAD_MAX_BYTES = 10
    with pytest.raises(DomainError, match="larger than the limit"):
        services.dataset_version_upload(dataset=dataset, actor=alice, upload=SimpleUploadedFile("a.csv", CSV))
    with pytest.raises(DomainError, match="empty"):
        services.dataset_version_upload(dataset=dataset, actor=alice, upload=SimpleUploadedFile("a.csv", b""))
    assert files_under(media) == [] and not DatasetVersion.objects.exists()


def test_an_upload_that_fails_after_its_file_is_written_removes_the_file(alice, media, monkeypatch):
    dataset = draft(alice)

    def refuse(**kwargs):
        raise DomainError("the queue is full")

    monkeypatch.setattr(services, "job_submit", refuse)
    with pytest.raises(DomainError, match="queue is full"):
        services.dataset_version_upload(dataset=dataset, actor=alice, upload=SimpleUploadedFile("a.csv", CSV))
    assert files_under(media) == [] and not DatasetVersion.objects.exists()


@pytest.mark.parametrize("how", ["multipart", "raw"])
def test_an_upload_past_the_limit_of_active_jobs_is_a_429_and_leaves_no_file(alice, media, settings, how):
    dataset = draft(alice)
    settings.JOB_MAX_ACTIVE_PER_USER = 1
    # A job of alice's already running (a row only: no worker will touch it).
    Job.objects.create(owner=alice, kind="ml.selftest", status=Job.Status.RUNNING, queue="ml")
    client = api_as(alice)
    if how == "multipart":
        upload = SimpleUploadedFile("a.csv", CSV)
        response = client.post(
            f"/api/data/datasets/{dataset.pk}/versions/", {"file": upload}, format="multipart"
        )
    else:
        response = put(client, dataset, CSV)
    assert response.status_code == 429, response.content
    assert "jobs queued or running" in response.json()["detail"]
    assert files_under(media) == [] and not DatasetVersion.objects.exists()


# ---------------------------------------------------------------------------------------------------- raw upload


def put(client, dataset, body: bytes, *, filename="incomes.csv", **extra):
    return client.generic(
        "PUT", f"/api/data/datasets/{dataset.pk}/versions/upload/?filename={filename}", body,
        content_type="application/octet-stream", **extra,
    )  # fmt: skip


def test_a_raw_body_upload_is_hashed_stored_and_analysed_like_a_multipart_one(alice, media):
    dataset = draft(alice)
    response = put(api_as(alice), dataset, CSV)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["sha256"] == hashlib.sha256(CSV).hexdigest() and body["size"] == len(CSV)
    assert body["status"] == "processing" and body["number"] == 1
    version = DatasetVersion.objects.get()
    assert Path(version.file.path).read_bytes() == CSV
    job_execute(job_id=version.stats_job_id, worker="test")
    version.refresh_from_db()
    assert version.status == "ready" and version.stats["rows"] == 50


def test_a_raw_body_upload_needs_the_owner(alice, mallory, api, media):
    dataset = draft(alice)
    assert put(api, dataset, CSV).status_code in (401, 403)
    assert put(api_as(mallory), dataset, CSV).status_code == 404, "a draft is invisible to others"
    published = make_listing(alice, title="On sale")
    assert put(api_as(mallory), published, CSV).status_code == 403
    assert DatasetVersion.objects.filter(dataset=dataset).count() == 0
    assert DatasetVersion.objects.filter(dataset=published).count() == 1


def test_a_raw_body_over_the_limit_or_of_another_format_is_refused_with_no_file_left(alice, media, settings):
    dataset = draft(alice)
    settings.UPLOAD_MAX_BYTES = 100
    over = put(api_as(alice), dataset, CSV)
    assert over.status_code == 400 and "larger than the limit of 100 bytes" in over.json()["detail"]
    assert put(api_as(alice), dataset, b"PK\x03\x04", filename="x.xlsx").status_code == 400
    assert put(api_as(alice), dataset, b"", filename="x.csv").status_code == 400
    assert files_under(media) == [] and not DatasetVersion.objects.exists()


def test_a_raw_body_longer_than_its_content_length_says_is_stopped_at_the_limit(alice, media, settings):
    """A body that lies about its length (or is sent in chunks) is still cut off at the limit as it streams."""
    dataset = draft(alice)
    settings.UPLOAD_MAX_BYTES = 100
    upload = services.StreamUpload(io.BytesIO(CSV), name="a.csv", size=len(CSV))
    with pytest.raises(DomainError, match="larger than the limit"):
        services.dataset_version_upload(dataset=dataset, actor=alice, upload=upload)
    short = services.StreamUpload(io.BytesIO(CSV[:50]), name="a.csv", size=len(CSV))
    settings.UPLOAD_MAX_BYTES = 10_000
    with pytest.raises(DomainError, match="before its Content-Length"):
        services.dataset_version_upload(dataset=dataset, actor=alice, upload=short)
    assert files_under(media) == [] and not DatasetVersion.objects.exists()


# ---------------------------------------------------------------------------------------------------- preview


def test_a_sparse_json_lines_upload_that_multiplies_into_too_many_cells_fails_its_job(
    alice, media, monkeypatch
):
    """A line of many keys, then lines of none, each of which still holds a (missing) cell in every column: the
    statistics job stops reading at the cap (the file's bytes, or DATASET_MIN_CELLS), not at the worker's memory."""
    monkeypatch.setattr(services, "DATASET_MIN_CELLS", 1_000)
    body = (json.dumps({f"c{i}": i for i in range(200)}) + "\n" + "{}\n" * 100).encode()
    version = services.dataset_version_upload(
        dataset=draft(alice), actor=alice, upload=SimpleUploadedFile("sparse.jsonl", body)
    )
    job_execute(job_id=version.stats_job_id, worker="test")
    version.refresh_from_db()
    job = Job.objects.get(pk=version.stats_job_id)
    assert version.status == "failed" and job.status == "failed"
    assert f"more than {len(body):,} values" in job.error


def one_huge_row_jsonl() -> bytes:
    row = {"id": 1, "note": "y" * 3_000_000, **{f"c{i}": "z" * 500 for i in range(80)}}
    return (json.dumps(row) + "\n").encode()


def test_a_huge_row_is_stored_capped_and_previews_stay_out_of_lists(alice, bob, media):
    dataset = services.dataset_create(
        owner=alice, title="Huge", terms_preset="open", price_download=100, preview_enabled=True
    )
    version = services.dataset_version_upload(
        dataset=dataset, actor=alice, upload=SimpleUploadedFile("huge.jsonl", one_huge_row_jsonl())
    )
    job_execute(job_id=version.stats_job_id, worker="test")
    services.dataset_publish(dataset=dataset, actor=alice)
    version.refresh_from_db()
    preview = version.preview
    assert len(preview["columns"]) == selectors.PREVIEW_COLUMNS
    row = preview["rows"][0]
    assert max(len(cell) for cell in row) <= selectors.PREVIEW_CELL_CHARS
    assert sum(len(cell) for cell in row) <= selectors.PREVIEW_ROW_CHARS
    assert row[1].endswith("\u2026"), "a cut cell says so"

    listing = api_as(bob).get("/api/data/datasets/")
    assert "preview" not in listing.json()["results"][0] and len(listing.content) < 20_000
    detail = api_as(bob).get(f"/api/data/datasets/{dataset.pk}/")
    assert detail.json()["preview"] == preview and len(detail.content) < 40_000
    page = Client().get(f"/data/{dataset.pk}/")
    assert page.status_code == 200 and 'data-testid="preview-table"' in page.content.decode()
    assert len(page.content) < 80_000


def test_a_preview_stored_before_the_caps_is_capped_when_shown(alice, bob):
    dataset = make_listing(alice)
    DatasetVersion.objects.filter(dataset=dataset).update(
        preview={"columns": ["note"], "rows": [["w" * 1_000_000]]}
    )
    Dataset.objects.filter(pk=dataset.pk).update(preview_enabled=True)
    detail = api_as(bob).get(f"/api/data/datasets/{dataset.pk}/")
    assert len(detail.json()["preview"]["rows"][0][0]) == selectors.PREVIEW_CELL_CHARS
    page = Client().get(f"/data/{dataset.pk}/")
    assert len(page.content) < 40_000


# ---------------------------------------------------------------------------------------------------- versions


def test_the_owner_lists_every_version_with_its_status_error_and_statistics(alice, media):
    dataset = draft(alice)
    ok = services.dataset_version_upload(
        dataset=dataset, actor=alice, upload=SimpleUploadedFile("a.csv", CSV)
    )
    job_execute(job_id=ok.stats_job_id, worker="test")
    bad = services.dataset_version_upload(
        dataset=dataset, actor=alice, upload=SimpleUploadedFile("b.csv", b"a,b\n1,2,3\n")
    )
    job_execute(job_id=bad.stats_job_id, worker="test")
    services.dataset_version_upload(dataset=dataset, actor=alice, upload=SimpleUploadedFile("c.csv", CSV))
    detail = api_as(alice).get(f"/api/data/datasets/{dataset.pk}/").json()
    assert detail["current_version"] is None, "a draft has none on sale"
    response = api_as(alice).get(f"/api/data/datasets/{dataset.pk}/versions/")
    assert response.status_code == 200
    versions = response.json()["results"]
    assert [(v["number"], v["status"]) for v in versions] == [(3, "processing"), (2, "failed"), (1, "ready")]
    assert versions[1]["error"] and versions[2]["error"] == ""
    assert versions[2]["stats"]["rows"] == 50 and versions[2]["sha256"] == hashlib.sha256(CSV).hexdigest()
    assert versions[2]["size"] == len(CSV) and versions[2]["created_at"]
    assert versions[0]["stats_job"] == Job.objects.filter(kind="marketplace.stats").order_by("-pk")[0].pk


def test_nobody_but_the_owner_sees_the_versions(alice, bob, mallory, api):
    unpublished = make_listing(alice, title="Draft", publish=False)
    on_sale = make_listing(alice, title="On sale")
    fund(f"user:{bob.pk}", 50_000)
    services.license_purchase(buyer=bob, dataset=on_sale, tier="download")
    assert api_as(mallory).get(f"/api/data/datasets/{unpublished.pk}/versions/").status_code == 404
    assert api_as(mallory).get(f"/api/data/datasets/{on_sale.pk}/versions/").status_code == 403
    assert api_as(bob).get(f"/api/data/datasets/{on_sale.pk}/versions/").status_code == 403, "even a licensee"
    assert api.get(f"/api/data/datasets/{on_sale.pk}/versions/").status_code in (401, 403)


# ---------------------------------------------------------------------------------------------------- rules


def test_my_datasets_shows_what_the_ledger_paid_the_seller(alice, bob, mallory):
    dataset = make_listing(alice, price_download=10_001, price_compute=333)
    fund(f"user:{bob.pk}", 50_000)
    fund(f"user:{mallory.pk}", 50_000)
    for buyer, tier in ((bob, "download"), (bob, "compute"), (mallory, "compute")):
        services.license_purchase(buyer=buyer, dataset=dataset, tier=tier)
    paid = Account.objects.get(name=f"user:{alice.pk}").balance
    assert paid == 9_751 + 2 * 325  # each sale split on its own, the remainder to the seller
    mine = client_for(alice).get("/data/mine/")
    html = mine.content.decode()
    assert '<td class="num" data-testid="listing-net">104.01 tokens</td>' in html
    assert "104.01 tokens" in html.split('data-testid="total-net"')[1][:40]
    assert selectors.sale_split(owner_id=alice.pk, price=10_001) == (9_751, 250)


def actions(user, dataset) -> dict:
    return api_as(user).get(f"/api/data/datasets/{dataset.pk}/").json()["actions"]


def test_the_page_and_the_api_offer_the_same_actions(alice, bob, mallory):
    dataset = make_listing(alice)
    fund(f"user:{bob.pk}", 50_000)
    services.license_purchase(buyer=bob, dataset=dataset, tier="compute")
    owner, buyer, stranger = actions(alice, dataset), actions(bob, dataset), actions(mallory, dataset)
    assert owner["withdraw"] and owner["upload"] and owner["see_versions"] and not owner["buy_download"]
    assert not owner["publish"], "version 1 is on sale already"
    assert (
        buyer["buy_download"] and not buyer["buy_compute"] and buyer["analyse"] and buyer["analyse_private"]
    )
    assert not buyer["download"] and not buyer["withdraw"]
    assert stranger["buy_download"] and stranger["buy_compute"] and not stranger["analyse"]
    anonymous = Client().get(f"/data/{dataset.pk}/").context["actions"]
    assert not any(anonymous.as_dict().values())

    page = client_for(bob).get(f"/data/{dataset.pk}/")
    assert page.context["actions"].as_dict() == buyer
    assert page.context["can_buy_download"] and not page.context["can_buy_compute"]


def test_an_expired_licence_holder_is_not_offered_a_purchase_the_service_would_refuse(alice, bob):
    dataset = make_listing(alice)
    fund(f"user:{bob.pk}", 50_000)
    services.license_purchase(buyer=bob, dataset=dataset, tier="download")
    License.objects.filter(buyer=bob).update(expires_at=timezone.now() - timedelta(days=1))
    assert not actions(bob, dataset)["buy_download"] and not actions(bob, dataset)["download"]
    assert not client_for(bob).get(f"/data/{dataset.pk}/").context["can_buy_download"]
    bought = api_as(bob).post(f"/api/data/datasets/{dataset.pk}/buy/", {"tier": "download"}, format="json")
    assert bought.status_code == 409


def test_a_failed_newer_version_does_not_hide_the_publishable_one(alice, media):
    dataset = draft(alice)
    ok = services.dataset_version_upload(
        dataset=dataset, actor=alice, upload=SimpleUploadedFile("a.csv", CSV)
    )
    job_execute(job_id=ok.stats_job_id, worker="test")
    bad = services.dataset_version_upload(
        dataset=dataset, actor=alice, upload=SimpleUploadedFile("b.csv", b"a\n")
    )
    job_execute(job_id=bad.stats_job_id, worker="test")
    assert actions(alice, dataset)["publish"]
    assert client_for(alice).get(f"/data/{dataset.pk}/").context["can_publish"]
    published = api_as(alice).post(f"/api/data/datasets/{dataset.pk}/publish/").json()
    assert published["current_version"]["number"] == 1 and not published["actions"]["publish"]


def test_creating_a_listing_through_the_api_builds_its_terms_in_the_service(alice):
    body = {"title": "T", "terms_preset": "commercial", "terms_text": " Cite us. ", "price_compute": 5}
    created = api_as(alice).post("/api/data/datasets/", body, format="json")
    assert created.status_code == 201
    assert created.json()["terms"] == {**services.TERM_PRESETS["commercial"], "preset": "commercial",
                                       "free_text": "Cite us."}  # fmt: skip
