"""The job pages: each kind's summary and link to its app's results, the raw JSON behind a link, the object of
each job in the list (without a query per job), and nobody else's jobs."""

import json

import pytest

from marketplace.models import DatasetVersion
from platform_site.jobs.models import Job
from platform_site.jobs.registry import Presentation
from platform_site.jobs.selectors import job_presentations
from tests.marketplace.test_analysis_pages import finished_job
from tests.marketplace.test_pages import client_for, make_listing

pytestmark = pytest.mark.django_db

SVG = '<svg xmlns="http://www.w3.org/2000/svg"><circle r="3"/></svg>'


def kmeans_outcome(job_id: int = 0) -> dict:
    """A result as the analysis job stores it: the aggregates, a grid of counts, the plot and its hash."""
    result = {
        "algorithm": "kmeans", "k": 3, "chosen_by": "silhouette", "silhouette": 0.4123, "inertia": 12.5,
        "rows": 1200, "clusters": [], "feature_names": ["age", "income"],
        "scatter": {"counts": [[[0] * 20 for _ in range(20)] for _ in range(3)]},
    }  # fmt: skip
    return {
        "analysis": "kmeans",
        "result": result,
        "plot_svg": SVG,
        "result_sha256": "ab" * 32,
        "entry_seq": 42,
    }


@pytest.fixture
def dataset(alice, bob):
    # Another listing first, so that alice's version's pk is not its number 1.
    make_listing(bob, title="Someone else's data")
    return make_listing(alice, title="Retail customer segments")


def test_a_finished_analysis_job_page_shows_a_summary_and_links_to_its_results_page(alice, dataset):
    job = finished_job(alice, dataset, result=kmeans_outcome())
    version = dataset.current_version
    assert version.pk != version.number

    page = client_for(alice).get(f"/jobs/{job.pk}/").content.decode()

    assert f'href="/data/{dataset.pk}/analyses/{job.pk}/"' in page
    assert "Clusters (k)" in page and "0.412" in page and "1,200" in page and "#42" in page
    assert "Retail customer segments · version 1" in page
    assert f'href="/jobs/{job.pk}/raw/"' in page
    assert "<svg" not in page and "&lt;svg" not in page and "plot_svg" not in page and "{#" not in page
    assert "result_sha256" not in page and "chosen_by" not in page, "the result JSON is not printed"
    assert "Waiting for the first step" not in page and 'id="job-charts"' not in page
    assert "version=1" in page and f"version={version.pk}" not in page, "the version's number, not its pk"


def test_the_raw_link_gives_the_job_as_stored(alice, dataset):
    job = finished_job(alice, dataset, result=kmeans_outcome())

    response = client_for(alice).get(f"/jobs/{job.pk}/raw/")

    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert json.loads(response.content)["result"]["plot_svg"] == SVG


def test_mallory_gets_a_404_for_alices_job_page_and_its_raw_json(alice, mallory, dataset):
    job = finished_job(alice, dataset, result=kmeans_outcome())
    client = client_for(mallory)

    assert client.get(f"/jobs/{job.pk}/").status_code == 404
    assert client.get(f"/jobs/{job.pk}/raw/").status_code == 404


def test_a_failed_statistics_job_page_names_its_version_shows_the_reason_and_links_to_the_dataset(
    alice, dataset
):
    version = dataset.current_version
    job = Job.objects.create(
        owner=alice, kind="marketplace.stats", params={"version": version.pk}, status=Job.Status.FAILED,
        progress=0.3, error="line 7: 3 fields where the header has 4",
    )  # fmt: skip

    page = client_for(alice).get(f"/jobs/{job.pk}/").content.decode()

    assert "line 7: 3 fields where the header has 4" in page
    assert f'href="/data/{dataset.pk}/"' in page and "Open the dataset&#x27;s page" in page
    assert "Retail customer segments · version 1" in page
    assert "Waiting for the first step" not in page and 'id="job-charts"' not in page
    assert 'href="/jobs/' + str(job.pk) + '/raw/"' not in page, "no result, no raw link"


def test_a_running_self_test_keeps_its_live_chart_and_a_finished_one_shows_its_accuracy(alice):
    running = Job.objects.create(
        owner=alice, kind="ml.selftest", status=Job.Status.RUNNING, progress=0.4,
        metrics=[{"step": 1, "loss": 0.9, "accuracy": 0.7}, {"step": 2, "loss": 0.5, "accuracy": 0.85}],
    )  # fmt: skip
    done = Job.objects.create(
        owner=alice, kind="ml.selftest", status=Job.Status.SUCCEEDED, progress=1.0,
        metrics=[{"step": 1, "loss": 0.2, "accuracy": 0.95}],
        result={"epochs": 5, "final_loss": 0.0812, "test_accuracy": 0.9722, "train_samples": 1437,
                "test_samples": 360, "parameters": 4810, "device": "cpu"},
    )  # fmt: skip
    client = client_for(alice)

    running_page = client.get(f"/jobs/{running.pk}/").content.decode()
    done_page = client.get(f"/jobs/{done.pk}/").content.decode()

    assert 'id="job-charts"' in running_page and "data-reload-when-finished" in running_page
    assert 'id="job-charts"' in done_page
    assert "Test accuracy" in done_page and "97.2%" in done_page and "4,810" in done_page
    assert "test_accuracy" not in done_page.split('id="job-snapshot"')[0]


def test_a_job_of_a_kind_no_app_registers_still_shows(alice):
    job = Job.objects.create(owner=alice, kind="retired.kind", status=Job.Status.SUCCEEDED, result={"x": 1})

    assert job_presentations([job]) == {job.pk: Presentation()}
    page = client_for(alice).get(f"/jobs/{job.pk}/").content.decode()
    assert "retired.kind" in page and "no summary" in page


def test_the_jobs_list_names_and_links_the_object_of_each_job(alice, dataset):
    job = finished_job(alice, dataset, result=kmeans_outcome())

    page = client_for(alice).get("/jobs/").content.decode()

    assert f'href="/jobs/{job.pk}/"' in page
    assert f'href="/jobs/{dataset.current_version.stats_job_id}/"' in page
    assert page.count(f'<a href="/data/{dataset.pk}/" data-testid="job-object">') == 2, (
        "its analysis and stats"
    )
    assert "Retail customer segments · version 1" in page and "Unsupervised analysis" in page


def test_the_jobs_list_resolves_objects_per_kind_not_per_job(alice, django_assert_max_num_queries):
    first = make_listing(alice, title="First")
    finished_job(alice, first, result=kmeans_outcome())
    client = client_for(alice)
    with django_assert_max_num_queries(8) as few:
        assert client.get("/jobs/").status_code == 200

    for n in range(4):
        listing = make_listing(alice, title=f"More {n}")
        finished_job(alice, listing, result=kmeans_outcome())
        Job.objects.create(owner=alice, kind="ml.selftest")
    assert DatasetVersion.objects.count() == 5

    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get("/jobs/").content.decode()
    assert "More 3 · version 1" in page
