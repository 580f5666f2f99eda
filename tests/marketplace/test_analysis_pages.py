"""An analysis from the dataset's page to its results page: options, live progress, plot, tables and refusals."""

import re
from decimal import Decimal

import pytest
from django.test import Client

from marketplace import analyses, services
from marketplace.forms import AnalysisForm
from marketplace.jobkinds import AnalysisOptions
from marketplace.models import Analysis
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_execute, job_submit
from tests.conftest import api_as
from tests.ledger.helpers import fund
from tests.marketplace.test_pages import client_for, make_listing, messages_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def listing(alice, bob):
    """alice's listing, with bob holding download access (exact results; private ones are in test_privacy)."""
    dataset = make_listing(alice)
    fund(f"user:{bob.pk}", 50_000)
    services.license_purchase(buyer=bob, dataset=dataset, tier="download")
    return dataset


def submit(user, dataset, **params) -> Job:
    return services.analysis_submit(user=user, dataset=dataset, params=params)


def run(job: Job) -> Job:
    job_execute(job_id=job.pk, worker="test")
    return Job.objects.get(pk=job.pk)


def results_url(dataset, job) -> str:
    return f"/data/{dataset.pk}/analyses/{job.pk}/"


def finished_job(owner, dataset, *, status="succeeded", result=None, error="", **params) -> Job:
    """An analysis job and its record written directly, as the submit and a worker would have left them."""
    params = {"analysis": "kmeans", "version": dataset.current_version_id, **params}
    job = Job.objects.create(
        owner=owner, kind="marketplace.analysis", params=params, status=status, progress=1.0,
        result=result, error=error,
    )  # fmt: skip
    outcome = result if isinstance(result, dict) else {}
    private = bool(params.get("private"))
    Analysis.objects.create(
        job=job, version_id=params["version"], user=owner, kind=params["analysis"], private=private,
        epsilon=Decimal(params["epsilon"]) if private else None,
        options={k: v for k, v in params.items() if k not in services.NOT_OPTIONS},
        result_sha256=outcome.get("result_sha256", ""), entry_seq=outcome.get("entry_seq"),
    )  # fmt: skip
    return job


# ---------------------------------------------------------------------------------------------------- results page


def test_a_queued_analysis_shows_live_progress_and_a_cancel_button(listing, bob):
    client = client_for(bob)
    response = client.post(f"/data/{listing.pk}/analyses/", {"analysis": "pca"})
    job = Job.objects.get(kind="marketplace.analysis")
    assert response["Location"] == results_url(listing, job)
    html = client.get(response["Location"]).content.decode()
    assert 'data-testid="analysis-progress"' in html and "data-reload-when-finished" in html
    assert 'id="job-snapshot"' in html and "js/job.js" in html
    assert f'action="/data/{listing.pk}/analyses/{job.pk}/cancel/"' in html
    assert 'data-testid="analysis-plot"' not in html


@pytest.mark.parametrize(
    ("params", "shown"),
    [
        (
            {"analysis": "kmeans", "k": None},
            ["clusters-table", "chart-choosing-k", "chosen-k"],
        ),
        ({"analysis": "kmeans", "k": 2}, ["clusters-table", "chosen-k"]),
        ({"analysis": "dbscan", "eps": 1.5, "min_samples": 3}, ["clusters-table"]),
        ({"analysis": "pca"}, ["chart-explained-variance", "variance-table", "loadings-table"]),
        ({"analysis": "isolation_forest"}, ["chart-anomaly-scores", "threshold", "share-flagged"]),
    ],
    ids=["kmeans-auto-k", "kmeans-k2", "dbscan", "pca", "isolation-forest"],
)
def test_a_succeeded_analysis_shows_its_plot_tables_preprocessing_and_ledger_entry(
    listing, bob, params, shown
):
    job = run(submit(bob, listing, **params))
    assert job.status == "succeeded", job.error
    response = client_for(bob).get(results_url(listing, job))
    assert response.status_code == 200
    html = response.content.decode()
    for chart in analyses.get(params["analysis"]).charts(job.result["result"]):
        assert f'<script id="{chart["id"]}-spec" type="application/json">' in html, "the spec is on the page"
        assert "<th>" + chart["table"]["columns"][0] + "</th>" in html, "and its numbers as a table"
    for testid in shown:
        assert f'data-testid="{testid}"' in html, testid
    assert 'data-testid="analysis-input"' in html and "<code>income</code>" in html
    assert f'href="/ledger/entries/{job.result["entry_seq"]}/"' in html
    assert job.result["result_sha256"] in html
    assert "js/job.js" not in html, "a finished job needs no live updates"


def test_suppressed_clusters_and_dropped_columns_are_explained(listing, bob):
    result = {
        "analysis": "kmeans",
        "result_sha256": "ab" * 32,
        "entry_seq": 7,
        "result": {
            "algorithm": "kmeans", "k": 2, "chosen_by": "given", "candidates": [], "silhouette": 0.71,
            "rows": 50, "min_cluster_size": 5,
            "clusters": [
                {"cluster": 0, "size": 47, "suppressed": False, "centroid": {"age": 38.5, "income": 33000.25},
                 "category_shares": {"city": {"Oslo": 0.5, "Bergen": 0.5}}},
                {"cluster": 1, "size": None, "suppressed": True, "centroid": None, "category_shares": None},
            ],
            "input": {"rows_used": 50, "rows_dropped": 0, "numeric_columns": ["age", "income"],
                      "categorical_columns_used": ["city"],
                      "dropped_columns": [{"column": "note", "reason": "too many categories (50 > 20)"}]},
        },
    }  # fmt: skip
    job = finished_job(bob, listing, result=result)
    html = client_for(bob).get(results_url(listing, job)).content.decode()
    assert "suppressed (&lt; 5 rows)" in html
    assert "33,000.2" in html and "38.5" in html and "Oslo 50%" in html
    assert "<code>note</code>: too many categories (50 &gt; 20)" in html


def test_markup_stored_in_an_older_result_is_never_shown(listing, bob):
    job = finished_job(bob, listing, result={"analysis": "pca", "plot_svg": "<script>alert(1)</script>"})
    response = client_for(bob).get(results_url(listing, job))
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in response.content.decode()


def test_the_results_page_names_only_the_options_of_its_own_analysis(listing, bob):
    kmeans = finished_job(bob, listing, k=3, algorithm="lloyd", eps=0.5, contamination=None, missing="drop")
    forest = finished_job(bob, listing, analysis="isolation_forest", k=None, eps=0.5, contamination=0.05)
    client = client_for(bob)
    kmeans_html = client.get(results_url(listing, kmeans)).content.decode()
    assert "algorithm=lloyd" in kmeans_html and "missing=drop" in kmeans_html
    assert "eps=" not in kmeans_html and "contamination=" not in kmeans_html
    forest_html = client.get(results_url(listing, forest)).content.decode()
    assert "contamination=0.05" in forest_html and "k=" not in forest_html and "eps=" not in forest_html


def test_a_failed_analysis_shows_its_error(listing, bob):
    job = finished_job(bob, listing, status="failed", error="the data has no numeric columns to analyse")
    html = client_for(bob).get(results_url(listing, job)).content.decode()
    assert 'data-testid="analysis-error"' in html
    assert "the data has no numeric columns to analyse" in html
    assert 'data-testid="analysis-plot"' not in html


def test_the_results_page_is_its_owners_alone(listing, alice, bob, mallory):
    job = finished_job(bob, listing, result={"analysis": "pca"})
    url = results_url(listing, job)
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    assert client_for(mallory).get(url).status_code == 404
    assert client_for(alice).get(url).status_code == 404, "not even the dataset's owner"
    assert client_for(bob).get(url).status_code == 200


def test_a_job_is_found_only_under_its_own_dataset_and_kind(listing, alice, bob):
    other = make_listing(alice, title="Other")
    job = finished_job(bob, listing, result={"analysis": "pca"})
    assert client_for(bob).get(results_url(other, job)).status_code == 404
    selftest = job_submit(owner=bob, kind="ml.selftest", params={})
    assert client_for(bob).get(results_url(listing, selftest)).status_code == 404
    elsewhere = finished_job(bob, other, result={"analysis": "pca"})
    assert client_for(bob).get(results_url(listing, elsewhere)).status_code == 404


def test_the_owner_of_an_analysis_cancels_it_and_mallory_cannot(listing, bob, mallory):
    job = submit(bob, listing, analysis="pca")
    assert client_for(mallory).post(f"{results_url(listing, job)}cancel/").status_code == 404
    assert Job.objects.get(pk=job.pk).status == "queued"
    response = client_for(bob).post(f"{results_url(listing, job)}cancel/", follow=True)
    assert "The analysis was cancelled." in messages_of(response)
    assert Job.objects.get(pk=job.pk).status == "cancelled"
    assert 'data-testid="analysis-cancelled"' in response.content.decode()


# ---------------------------------------------------------------------------------------------------- the user's analyses


def test_the_dataset_page_lists_my_analyses_newest_first_and_not_others(listing, alice, bob, mallory):
    first = submit(bob, listing, analysis="pca")
    second = run(submit(bob, listing, analysis="kmeans", k=2))
    submit(alice, listing, analysis="dbscan")
    html = client_for(bob).get(f"/data/{listing.pk}/").content.decode()
    links = re.findall(rf'href="/data/{listing.pk}/analyses/(\d+)/"', html)
    assert links == [str(second.pk), str(first.pk)]
    assert "k-means clusters (k=2)" in html and "Principal components" in html
    assert "DBSCAN" not in html.split('data-testid="my-analyses"')[1].split("</table>")[0]
    assert 'data-testid="my-analyses"' not in client_for(mallory).get(f"/data/{listing.pk}/").content.decode()


def test_the_dataset_page_lists_at_most_20_analyses_in_constant_queries(
    listing, bob, django_assert_max_num_queries
):
    for _ in range(25):
        finished_job(bob, listing, result={"analysis": "pca"})
    client = client_for(bob)
    client.get(f"/data/{listing.pk}/")
    with django_assert_max_num_queries(12):
        response = client.get(f"/data/{listing.pk}/")
    assert len(response.context["analyses"]) == 20


def test_the_api_lists_my_analyses_of_a_dataset(listing, alice, bob, mallory, api):
    mine = [submit(bob, listing, analysis="pca"), submit(bob, listing, analysis="kmeans", k=3)]
    submit(alice, listing, analysis="pca")
    url = f"/api/data/datasets/{listing.pk}/analyses/"
    response = api_as(bob).get(url)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [job["id"] for job in body["results"]] == [mine[1].pk, mine[0].pk]
    assert body["results"][0]["params"]["k"] == 3 and body["results"][0]["kind"] == "marketplace.analysis"
    assert api_as(mallory).get(url).json()["count"] == 0
    assert api.get(url).status_code in (401, 403)
    draft = make_listing(alice, title="Draft", publish=False)
    assert api_as(mallory).get(f"/api/data/datasets/{draft.pk}/analyses/").status_code == 404


# ---------------------------------------------------------------------------------------------------- the form


def test_the_form_offers_every_analysis_option_with_help():
    form = AnalysisForm()
    assert set(form.fields) == set(AnalysisOptions().fields)
    assert {field.name for _, fields in form.groups() for field in fields} == set(form.fields)
    for name in ("k", "eps", "min_samples", "max_categories", "missing"):
        assert form.fields[name].help_text, name
    assert form.fields["eps"].initial == 0.5 and form.fields["missing"].initial == "impute"


def test_the_dataset_page_renders_every_option(listing, bob):
    html = client_for(bob).get(f"/data/{listing.pk}/").content.decode()
    for name in set(AnalysisOptions().fields) - {"epsilon"}:  # ε is for compute-only licences; bob downloads
        assert f'name="{name}"' in html, name
    assert 'name="epsilon"' not in html


def test_the_chosen_options_reach_the_job(listing, bob):
    client_for(bob).post(
        f"/data/{listing.pk}/analyses/",
        {
            "analysis": "dbscan",
            "k": "",
            "eps": "0.8",
            "min_samples": "3",
            "max_categories": "5",
            "missing": "drop",
        },
    )
    params = Job.objects.get(kind="marketplace.analysis").params
    assert params["eps"] == 0.8 and params["min_samples"] == 3
    assert params["max_categories"] == 5 and params["missing"] == "drop" and params["k"] is None


def test_omitted_options_take_the_serializers_defaults(listing, bob):
    client_for(bob).post(f"/data/{listing.pk}/analyses/", {"analysis": "kmeans"})
    params = Job.objects.get(kind="marketplace.analysis").params
    defaults = {
        name: field.default
        for name, field in AnalysisOptions().fields.items()
        if name not in ("analysis", "epsilon")  # ε applies to compute-only licences, and bob can download
    }
    assert {name: params[name] for name in defaults} == defaults
    assert params["private"] is False and params["epsilon"] is None


@pytest.mark.parametrize(
    ("posted", "message"),
    [
        ({"analysis": "kmeans", "k": "1"}, "Clusters (k): Ensure this value is greater than or equal to 2."),
        ({"analysis": "dbscan", "eps": "0"}, "greater than or equal to 0.001"),
        ({"analysis": "dbscan", "eps": "lots"}, "Enter a number."),
        ({"analysis": "pca", "missing": "sometimes"}, "Select a valid choice."),
        ({"analysis": "pca", "max_categories": "1000"}, "less than or equal to 100"),
        ({"analysis": "isolation_forest", "contamination": "0.9"}, "Expected outlier share: Ensure this value is less than or equal to 0.5."),
        ({"analysis": "kmeans", "algorithm": "fastest"}, "Select a valid choice."),
        ({"analysis": "clustering"}, "Analysis: Select a valid choice."),
        ({}, "Analysis: This field is required."),
    ],
    ids=["k-too-small", "eps-zero", "eps-not-a-number", "missing-unknown", "too-many-categories",
         "contamination-too-high", "algorithm-unknown", "unknown-analysis", "no-analysis"],
)  # fmt: skip
def test_the_form_rejects_bad_options_with_a_message(listing, bob, posted, message):
    response = client_for(bob).post(f"/data/{listing.pk}/analyses/", posted, follow=True)
    assert response.redirect_chain[-1][0] == f"/data/{listing.pk}/"
    shown = " ".join(messages_of(response))
    assert message in shown, shown
    assert not Job.objects.filter(kind="marketplace.analysis").exists()


def test_ids_beyond_any_integer_are_404_not_500(listing, bob):
    huge = 10**25
    client = client_for(bob)
    assert client.get(f"/data/{listing.pk}/analyses/{huge}/").status_code == 404
    assert client.get(f"/data/{huge}/analyses/1/").status_code == 404
    assert api_as(bob).get(f"/api/data/datasets/{huge}/analyses/").status_code == 404
