"""The privacy budget on the pages: stated on the listing before buying, what is left for a compute-only
licensee, each licence's spend and the budget's setting for the owner, and private results explained."""

import re
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from marketplace import services
from marketplace.models import Dataset, License
from platform_site.jobs.models import Job
from tests.ledger.helpers import fund
from tests.marketplace.test_analyses import blobs_csv, listing_with, run
from tests.marketplace.test_analysis_pages import finished_job, results_url
from tests.marketplace.test_pages import CSV, client_for, make_listing, messages_of

pytestmark = pytest.mark.django_db

STATEMENT = "may spend ε = 10 in total on differentially private analyses"


def buy(user, dataset, tier: str = "compute") -> License:
    fund(f"user:{user.pk}", 50_000)
    return services.license_purchase(buyer=user, dataset=dataset, tier=tier)


def spend(license: License, epsilon: str) -> None:
    """As if earlier analyses had spent `epsilon` of the licence's budget."""
    License.objects.filter(pk=license.pk).update(epsilon_spent=Decimal(epsilon))


def page(user, dataset) -> str:
    client = client_for(user) if user is not None else Client()
    response = client.get(f"/data/{dataset.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# ---------------------------------------------------------------------------------------------------- the listing


def test_the_privacy_budget_shows_on_the_listing_before_buying(alice, bob):
    dataset = make_listing(alice)
    for html in (page(None, dataset), page(bob, dataset)):
        assert 'data-testid="privacy-budget"' in html and STATEMENT in html
        assert 'data-testid="epsilon-left"' not in html and 'data-testid="owner-privacy"' not in html


def test_a_listing_without_compute_only_access_states_no_budget_and_a_custom_budget_shows_as_set(alice):
    download_only = make_listing(alice, title="Download only", price_compute=None)
    assert 'data-testid="privacy-budget"' not in page(None, download_only)
    strict = make_listing(alice, title="Strict", privacy_budget=Decimal("2.5"))
    assert "may spend ε = 2.50 in total" in page(None, strict)


def test_a_compute_licensee_sees_the_epsilon_left_and_the_epsilon_field(alice, bob):
    dataset = make_listing(alice)
    spend(buy(bob, dataset), "3.00")
    html = page(bob, dataset)
    assert "ε left: 7.00 of 10.00" in text_of(html)
    assert 'name="epsilon"' in html and "ε = 7.00 is left" in html
    assert 'data-testid="private-analysis-help"' in html and "DBSCAN is not offered" in html
    assert "required with compute-only access" in html, "k must be given"
    assert 'name="eps"' not in html, "DBSCAN's options are not offered"


def test_a_nearly_spent_budget_proposes_no_more_than_what_is_left(alice, bob):
    dataset = make_listing(alice)
    spend(buy(bob, dataset), "9.75")
    html = page(bob, dataset)
    assert "ε left: 0.25 of 10.00" in text_of(html)
    assert re.search(r'name="epsilon" value="0.25"', html)


def test_the_owner_and_a_download_licensee_get_no_epsilon_field(alice, bob):
    dataset = make_listing(alice)
    buy(bob, dataset, tier="download")
    for user in (alice, bob):
        html = page(user, dataset)
        assert 'data-testid="analysis-form"' in html
        assert 'name="epsilon"' not in html and 'data-testid="epsilon-left"' not in html
        assert 'name="eps"' in html, "exact analyses keep DBSCAN"


# ---------------------------------------------------------------------------------------------------- the owner


def test_the_owner_sees_the_spend_of_each_compute_licence(alice, bob, mallory):
    dataset = make_listing(alice)
    spend(buy(bob, dataset), "3.00")
    buy(mallory, dataset)
    buy(mallory, dataset, tier="download")  # a download licence has no budget and is not listed
    html = page(alice, dataset)
    table = html.split('data-testid="privacy-licences"')[1].split("</table>")[0]
    rows = [
        text_of(row).split() for row in re.findall(r'data-testid="privacy-licence">(.*?)</tr>', table, re.S)
    ]
    assert sorted(rows) == [["bob", "10.00", "3.00", "7.00"], ["mallory", "10.00", "0.00", "10.00"]]
    assert 'data-testid="privacy-budget-form"' in html
    assert 'data-testid="owner-privacy"' not in page(bob, dataset), "a buyer sees no one else's spend"


def test_the_owner_changes_the_budget_for_licences_sold_from_then_on(alice, bob, mallory):
    dataset = make_listing(alice)
    buy(bob, dataset)
    client = client_for(alice)
    response = client.post(f"/data/{dataset.pk}/privacy-budget/", {"budget": "4.5"}, follow=True)
    assert response.redirect_chain[-1][0] == f"/data/{dataset.pk}/"
    assert "may spend ε = 4.50; licences already sold keep their budget" in " ".join(messages_of(response))
    assert Dataset.objects.get(pk=dataset.pk).privacy_budget == Decimal("4.50")
    assert "may spend ε = 4.50 in total" in response.content.decode()
    assert License.objects.get(buyer=bob).epsilon_budget == Decimal("10.00")
    assert buy(mallory, Dataset.objects.get(pk=dataset.pk)).epsilon_budget == Decimal("4.50")


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ("0.01", "greater than or equal to 0.10"),
        ("5000", "less than or equal to 1000.00"),
        ("lots", "a number"),
    ],
    ids=["too-small", "too-large", "not-a-number"],
)
def test_a_budget_out_of_range_is_refused_with_a_message(alice, budget, message):
    dataset = make_listing(alice)
    response = client_for(alice).post(f"/data/{dataset.pk}/privacy-budget/", {"budget": budget}, follow=True)
    shown = " ".join(messages_of(response))
    assert message in shown, shown
    assert Dataset.objects.get(pk=dataset.pk).privacy_budget == Decimal("10.00")


def test_mallory_cannot_change_the_budget(alice, bob, mallory):
    dataset = make_listing(alice)
    draft = make_listing(alice, title="Draft", publish=False)
    assert (
        client_for(mallory).post(f"/data/{dataset.pk}/privacy-budget/", {"budget": "1000"}).status_code == 403
    )
    assert (
        client_for(mallory).post(f"/data/{draft.pk}/privacy-budget/", {"budget": "1000"}).status_code == 404
    )
    buy(bob, dataset)
    assert client_for(bob).post(f"/data/{dataset.pk}/privacy-budget/", {"budget": "1000"}).status_code == 403
    anonymous = Client().post(f"/data/{dataset.pk}/privacy-budget/", {"budget": "1000"})
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    assert client_for(alice).get(f"/data/{dataset.pk}/privacy-budget/").status_code == 405
    assert set(Dataset.objects.values_list("privacy_budget", flat=True)) == {Decimal("10.00")}


# ---------------------------------------------------------------------------------------------------- submitting


def test_an_over_budget_analysis_shows_what_is_left_and_starts_nothing(alice, bob):
    dataset = make_listing(alice)
    license = buy(bob, dataset)
    spend(license, "9.50")
    response = client_for(bob).post(
        f"/data/{dataset.pk}/analyses/", {"analysis": "pca", "epsilon": "1.00"}, follow=True
    )
    assert response.status_code == 200 and response.redirect_chain[-1][0] == f"/data/{dataset.pk}/"
    shown = " ".join(messages_of(response))
    assert "Not started:" in shown and "only ε = 0.50 is left" in shown, shown
    assert not Job.objects.filter(kind="marketplace.analysis").exists()
    assert License.objects.get(pk=license.pk).epsilon_spent == Decimal("9.50")


@pytest.mark.parametrize(
    ("posted", "message"),
    [
        ({"analysis": "dbscan"}, "no differentially private version"),
        ({"analysis": "kmeans", "k": ""}, "choose the number of clusters k"),
        (
            {"analysis": "pca", "epsilon": "0.001"},
            "Privacy budget to spend (ε): Ensure that there are no more",
        ),
    ],
    ids=["dbscan", "kmeans-without-k", "epsilon-too-precise"],
)
def test_what_a_compute_licence_refuses_is_a_message_on_the_page(alice, bob, posted, message):
    dataset = make_listing(alice)
    buy(bob, dataset)
    response = client_for(bob).post(f"/data/{dataset.pk}/analyses/", posted, follow=True)
    assert response.status_code == 200
    shown = " ".join(messages_of(response))
    assert message in shown, shown
    assert not Job.objects.filter(kind="marketplace.analysis").exists()
    assert License.objects.get(buyer=bob).epsilon_spent == 0


def test_the_epsilon_chosen_on_the_page_is_charged_and_shown_as_spent(alice, bob):
    dataset = make_listing(alice)
    buy(bob, dataset)
    client = client_for(bob)
    response = client.post(
        f"/data/{dataset.pk}/analyses/", {"analysis": "kmeans", "k": "2", "epsilon": "2.5"}
    )
    job = Job.objects.get(kind="marketplace.analysis")
    assert response["Location"] == results_url(dataset, job)
    assert job.params["private"] is True and job.params["epsilon"] == "2.50"
    assert "ε left: 7.50 of 10.00" in text_of(page(bob, dataset))


# ---------------------------------------------------------------------------------------------------- results


def private_kmeans_result() -> dict:
    return {
        "analysis": "kmeans",
        "result_sha256": "cd" * 32,
        "entry_seq": 9,
        "result": {
            "algorithm": "kmeans", "k": 2, "chosen_by": "given", "candidates": [], "silhouette": None,
            "inertia": None, "rows": 2_998, "min_cluster_size": 5,
            "clusters": [
                {"cluster": 0, "size": 1_502, "suppressed": False, "centroid": {"age": 38.5, "income": 33000.25},
                 "category_shares": {"city": {"Oslo": 0.5, "Bergen": 0.5}},
                 "centroid_sd": {"age": 0.0412, "income": 1234.5}, "share_sd": 0.0123},
                {"cluster": 1, "size": None, "suppressed": True, "centroid": None, "category_shares": None,
                 "centroid_sd": None},
            ],
            "input": {"rows_used": 2_998, "rows_dropped": None, "numeric_columns": ["age", "income"],
                      "categorical_columns_used": ["city"], "dropped_columns": []},
            "privacy": {
                "epsilon": 1.0, "delta": 1e-8, "rho": 0.0012,
                "releases": [{"what": "cluster sums and sizes", "sensitivity": 4.2, "sigma": 30.1, "rho": 0.0009},
                             {"what": "density grid by cluster", "sensitivity": 1.0, "sigma": 40.0, "rho": 0.0003}],
                "iterations": 3, "size_sd": 7.16, "cell_sd": 40.0,
            },
        },
    }  # fmt: skip


def test_a_private_k_means_shows_the_privacy_section_and_the_noise_of_each_coordinate(alice, bob):
    dataset = make_listing(alice)
    buy(bob, dataset)
    job = finished_job(bob, dataset, k=2, private=True, epsilon="1.00", result=private_kmeans_result())
    response = client_for(bob).get(results_url(dataset, job))
    assert response.status_code == 200
    html = response.content.decode()
    section = text_of(html.split('data-testid="privacy"')[1].split("</div>")[0])
    assert "ε = 1.00" in section and "δ = 10⁻⁸" in section
    assert "cluster sizes: ± 7.2 rows" in section and "± 40 rows each" in section
    assert "cluster sums and sizes: 75%" in section
    sds = re.findall(r'data-testid="centroid-sd">([^<]*)<', html)
    assert sds == ["± 0.041", "± 1,200"], "one ± per coordinate of each shown cluster"
    assert 'colspan="6"' in html, (
        "a suppressed cluster spans the size, two (coordinate, ±) pairs and categories"
    )
    assert "± 1.2 points" in html
    figures = text_of(html)
    assert "None" not in figures and "Silhouette" not in figures and "Inertia" not in figures
    assert "not released" in figures and "epsilon=" not in html and "private=" not in html


def test_an_exact_result_has_no_privacy_section(alice, bob):
    dataset = make_listing(alice)
    buy(bob, dataset, tier="download")
    result = private_kmeans_result()
    del result["result"]["privacy"]
    job = finished_job(bob, dataset, k=2, result=result)
    html = client_for(bob).get(results_url(dataset, job)).content.decode()
    assert 'data-testid="privacy"' not in html and 'data-testid="centroid-sd"' not in html


@pytest.fixture
def blobs(alice, bob):
    """alice's listing of three blobs of 1,000 rows, with bob holding compute-only access."""
    dataset, _version = listing_with(alice, blobs_csv(3_000))
    buy(bob, dataset)
    return dataset


@pytest.mark.parametrize(
    ("params", "shown"),
    [
        ({"analysis": "kmeans", "k": 3}, ["clusters-table", "centroid-sd"]),
        ({"analysis": "pca"}, ["variance-table", "variance-error"]),
        ({"analysis": "isolation_forest"}, ["bin-sd", "share-flagged"]),
    ],
    ids=["kmeans", "pca", "isolation-forest"],
)
def test_each_private_analysis_run_on_the_worker_explains_its_noise(blobs, bob, params, shown):
    job = run(services.analysis_submit(user=bob, dataset=blobs, params=params))
    assert job.status == "succeeded", job.error
    response = client_for(bob).get(results_url(blobs, job))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="privacy"' in html and "ε = 1.00" in html
    for testid in shown:
        assert f'data-testid="{testid}"' in html, testid
    assert "None" not in text_of(html)


# ---------------------------------------------------------------------------------------------------- new listing


def new_listing(client: Client, **fields) -> object:
    return client.post(
        "/data/new/",
        {
            "title": "Incomes 2026",
            "terms_preset": "research",
            "price_compute": "12.50",
            "file": SimpleUploadedFile("incomes.csv", CSV, content_type="text/csv"),
            **fields,
        },
        follow=True,
    )


def test_the_new_listing_form_offers_and_stores_the_privacy_budget(alice):
    client = client_for(alice)
    form = client.get("/data/new/").content.decode()
    assert (
        "Privacy budget per compute-only licence (ε)" in form and 'name="privacy_budget" value="10"' in form
    )
    new_listing(client, privacy_budget="2.5")
    assert Dataset.objects.get().privacy_budget == Decimal("2.50")


def test_an_empty_privacy_budget_is_the_default_and_one_out_of_range_is_a_form_error(alice):
    client = client_for(alice)
    new_listing(client, privacy_budget="")
    assert Dataset.objects.get().privacy_budget == Decimal("10.00")
    response = new_listing(client, title="Too generous", privacy_budget="5000")
    assert response.status_code == 200 and "less than or equal to 1000.00" in response.content.decode()
    assert Dataset.objects.count() == 1
