"""Unsupervised learning on purchased data: results for licensees, never rows, every run on the ledger."""

import json

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from ledger.models import Entry
from marketplace import analyses, services
from marketplace.models import DatasetVersion
from platform_site.errors import Conflict, PermissionDenied
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_execute
from tests.conftest import api_as
from tests.ledger.helpers import fund

pytestmark = pytest.mark.django_db

OUTLIER = 987654.321


def blobs_csv(rows: int = 300) -> bytes:
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0, 0], [10, 10, 10], [-10, 10, -10]])
    points = np.concatenate([rng.normal(c, 1.0, size=(rows // 3, 3)) for c in centers])
    lines = ["x,y,z,segment"] + [
        f"{x:.4f},{y:.4f},{z:.4f},{'abc'[i // (rows // 3)]}" for i, (x, y, z) in enumerate(points)
    ]
    lines.append(f"{OUTLIER},0,0,a")  # one row that must never be singled out
    return ("\n".join(lines) + "\n").encode()


def listing_with(owner, content: bytes, name: str = "data.csv"):
    dataset = services.dataset_create(
        owner=owner, title="Blobs", terms_preset="research", price_download=5_000,
        price_compute=1_000,
    )  # fmt: skip
    version = services.dataset_version_upload(
        dataset=dataset, actor=owner, upload=SimpleUploadedFile(name, content)
    )
    job_execute(job_id=version.stats_job_id, worker="test")  # the statistics job, run here in-process
    version.refresh_from_db()
    if version.status == DatasetVersion.Status.READY:
        services.dataset_publish(dataset=dataset, actor=owner)
    return dataset, version


def run(job) -> Job:
    job_execute(job_id=job.pk, worker="test")
    return Job.objects.get(pk=job.pk)


def test_a_compute_only_buyer_gets_private_clusters_but_no_rows_and_no_download(alice, bob):
    dataset, _version = listing_with(alice, blobs_csv(3_000))
    fund(f"user:{bob.pk}", 10_000)
    services.license_purchase(buyer=bob, dataset=dataset, tier="compute")
    job = run(services.analysis_submit(user=bob, dataset=dataset, params={"analysis": "kmeans", "k": 3}))
    assert job.status == "succeeded", job.error
    result = job.result["result"]
    assert result["privacy"]["epsilon"] == 1.0 and result["privacy"]["delta"] == 1e-8
    # Three blobs of 1,000 rows each: sizes and centroids released with noise, and its scale stated.
    visible = [c for c in result["clusters"] if not c["suppressed"]]
    assert visible and all(c["centroid_sd"]["x"] > 0 for c in visible)
    assert sum(c["size"] for c in visible) == pytest.approx(3_001, abs=300)
    assert [c["id"] for c in analyses.get("kmeans").charts(result)] == ["clusters", "clusters-apart"]
    assert str(OUTLIER) not in json.dumps(job.result), "no value singles out a row"
    entry = Entry.objects.get(kind="marketplace.analysis.completed")
    assert entry.payload["result_sha256"] == job.result["result_sha256"]
    assert entry.payload["epsilon"] == "1.00"
    with pytest.raises(PermissionDenied):
        services.download_authorize(user=bob, dataset=dataset)
    assert api_as(bob).get(f"/api/data/datasets/{dataset.pk}/download/").status_code == 403


@pytest.mark.parametrize("analysis", ["pca", "isolation_forest", "dbscan"])
def test_the_other_analyses_run_for_the_owner(alice, analysis):
    dataset, _version = listing_with(alice, blobs_csv())
    job = run(services.analysis_submit(user=alice, dataset=dataset, params={"analysis": analysis}))
    assert job.status == "succeeded", job.error
    assert str(OUTLIER) not in json.dumps(job.result)


def test_strangers_cannot_run_analyses(alice, mallory):
    dataset, _version = listing_with(alice, blobs_csv())
    with pytest.raises(PermissionDenied):
        services.analysis_submit(user=mallory, dataset=dataset, params={"analysis": "pca"})
    response = api_as(mallory).post(
        f"/api/data/datasets/{dataset.pk}/analyses/", {"analysis": "pca"}, format="json"
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("content", "name", "params", "message"),
    [
        (b"city,team\nOslo,a\n" * 3, "data.csv", {"analysis": "kmeans", "k": 2}, "numeric"),
        (b"x,y\n1,2\n3,4\n5,6\n", "data.csv", {"analysis": "kmeans", "k": 5}, "k"),
        (b"x,y\n1,\n2,\n3,\n4,\n5,\n6,\n", "data.csv", {"analysis": "pca"}, None),
    ],
    ids=["no-numeric-columns", "fewer-rows-than-clusters", "all-missing-column"],
)
def test_bad_data_fails_the_job_with_a_clear_reason(alice, content, name, params, message):
    dataset, _version = listing_with(alice, content, name)
    job = run(services.analysis_submit(user=alice, dataset=dataset, params=params))
    if message is None:  # an all-missing column is dropped and named, and the rest is analysed
        assert job.status == "succeeded", job.error
        assert "y" in json.dumps(job.result["result"]["input"])
    else:
        assert job.status == "failed"
        assert message in job.error.lower()
        assert not Entry.objects.filter(kind="marketplace.analysis.completed").exists()


@pytest.mark.parametrize(
    ("content", "name"),
    [
        (b"\xff\xfe\x00bad", "data.csv"),
        (b'{"x": 1}\n{not json\n', "data.jsonl"),
        (b"a,b\n1,2,3\n", "data.csv"),
    ],
    ids=["mis-encoded", "malformed-jsonl", "ragged-csv"],
)
def test_a_malformed_file_fails_its_statistics_job_and_cannot_be_published(alice, content, name):
    dataset, version = listing_with(alice, content, name)
    assert version.status == "failed" and version.error
    assert Job.objects.get(pk=version.stats_job_id).status == "failed"
    with pytest.raises(Conflict):
        services.dataset_publish(dataset=dataset, actor=alice)


def test_the_statistics_job_saves_the_columns_features_and_preview_so_analyses_never_reparse(alice):
    dataset, version = listing_with(alice, blobs_csv())
    assert version.preview["columns"] == ["x", "y", "z", "segment"]
    assert len(version.preview["rows"]) == 10 and version.preview["rows"][0][3] == "a"
    assert version.columns_file and version.features_file
    assert version.features["options"] == services.DEFAULT_PREPARE

    default = run(
        services.analysis_submit(user=alice, dataset=dataset, params={"analysis": "kmeans", "k": 3})
    )
    # The same analysis prepared from the parsed columns (no saved features) gives the same result ...
    DatasetVersion.objects.filter(pk=version.pk).update(features_file="", features=None)
    from_columns = run(
        services.analysis_submit(user=alice, dataset=dataset, params={"analysis": "kmeans", "k": 3})
    )
    assert default.status == from_columns.status == "succeeded"
    assert default.result["result"] == from_columns.result["result"]
    # ... and neither path reads the upload again.
    version.file.storage.delete(version.file.name)
    other_options = run(
        services.analysis_submit(user=alice, dataset=dataset, params={"analysis": "pca", "max_categories": 2})
    )
    assert other_options.status == "succeeded", other_options.error
    assert other_options.result["result"]["input"]["dropped_columns"] == [
        {"column": "segment", "reason": "too many categories (3 > 2)"}
    ]


def test_the_isolation_forest_flags_the_share_of_outliers_the_user_expects(alice):
    dataset, _version = listing_with(alice, blobs_csv())
    job = run(
        services.analysis_submit(
            user=alice, dataset=dataset, params={"analysis": "isolation_forest", "contamination": 0.05}
        )
    )
    assert job.status == "succeeded", job.error
    assert job.result["result"]["contamination"] == 0.05
    assert job.result["result"]["share_flagged"] == pytest.approx(0.05, abs=0.01)


def test_a_statistics_job_run_again_replaces_its_files(alice):
    from marketplace.services import version_stats_compute

    _dataset, version = listing_with(alice, blobs_csv())
    storage, folder = version.columns_file.storage, f"datasets/{version.dataset_id}"
    before = set(storage.listdir(folder)[1])
    version_stats_compute(version_id=version.pk, reporter=lambda *a, **k: None)  # as a retried job would
    again = DatasetVersion.objects.get(pk=version.pk)
    assert again.columns_file.name == version.columns_file.name
    assert again.features_file.name == version.features_file.name
    assert set(storage.listdir(folder)[1]) == before


def test_the_api_refuses_a_meaningless_contamination_with_a_400(alice):
    dataset, _version = listing_with(alice, blobs_csv())
    response = api_as(alice).post(
        f"/api/data/datasets/{dataset.pk}/analyses/",
        {"analysis": "isolation_forest", "contamination": 0.9},
        format="json",
    )
    assert response.status_code == 400
    assert "less than or equal to 0.5" in response.json()["contamination"][0]
    assert not Job.objects.filter(kind="marketplace.analysis").exists()
