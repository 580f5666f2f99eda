"""The marketplace's pages: browse, detail, buying, publishing, a new listing, and the user's own page."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from marketplace import services
from marketplace.models import Dataset, DatasetVersion, License
from platform_site.jobs.models import Job
from platform_site.jobs.services import job_execute
from tests.factories import UserFactory
from tests.ledger.helpers import fund

pytestmark = pytest.mark.django_db

CSV = b"age,income,city\n" + b"".join(
    f"{20 + i % 40},{30000 + 137 * i},{['Oslo', 'Bergen'][i % 2]}\n".encode() for i in range(50)
)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_listing(owner, *, title="Household incomes", publish=True, **fields) -> Dataset:
    """A listing with one analysed version, its statistics job run here instead of on a worker."""
    fields = {"price_download": 10_000, "price_compute": 4_000, "tags": ["finance"], **fields}
    dataset = services.dataset_create(
        owner=owner, title=title, description="Synthetic survey", terms_preset="research",
        **fields,
    )  # fmt: skip
    version = services.dataset_version_upload(
        dataset=dataset, actor=owner, upload=SimpleUploadedFile("incomes.csv", CSV)
    )
    job_execute(job_id=version.stats_job_id, worker="test")
    if publish:
        dataset = services.dataset_publish(dataset=dataset, actor=owner)
    return Dataset.objects.get(pk=dataset.pk)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# ---------------------------------------------------------------------------------------------------- browse


def test_browse_shows_published_listings_and_hides_drafts_to_anyone(alice):
    make_listing(alice, title="Published incomes")
    make_listing(alice, title="Secret draft", publish=False)
    page = Client().get("/data/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Published incomes" in html and "Secret draft" not in html
    assert "100.00 tokens" in html and "40.00 tokens" in html
    assert "50 rows \u00d7 3 columns" in html


def test_search_and_filters_narrow_the_listings(alice, bob):
    make_listing(
        alice, title="Household incomes", tags=["finance"], price_download=10_000, price_compute=None
    )
    make_listing(bob, title="Bird counts", tags=["ecology"], price_download=None, price_compute=2_000)
    client = Client()

    def titles(query: str) -> set[str]:
        response = client.get(f"/data/?{query}")
        assert response.status_code == 200
        return {card["dataset"].title for card in response.context["cards"]}

    assert titles("") == {"Household incomes", "Bird counts"}
    assert titles("q=bird") == {"Bird counts"}
    assert titles("tag=finance") == {"Household incomes"}
    assert titles("tier=compute") == {"Bird counts"}
    assert titles("price_max=50") == {"Bird counts"}  # 50 tokens = 5,000 minor units
    assert titles("price_max=100") == {"Household incomes", "Bird counts"}


def test_bad_filter_input_shows_a_message_not_a_500(alice):
    make_listing(alice)
    response = Client().get("/data/?price_max=lots&tier=free")
    assert response.status_code == 200
    shown = " ".join(messages_of(response))
    assert "The filter was ignored" in shown
    assert len(response.context["cards"]) == 1


def test_browse_pages_24_listings_in_constant_queries(alice, django_assert_max_num_queries):
    for i in range(3):
        make_listing(alice, title=f"Set {i}")
    owner_ids = [UserFactory(username=f"owner{i}").pk for i in range(30)]
    base = Dataset.objects.get(title="Set 0")
    Dataset.objects.bulk_create(
        Dataset(owner_id=owner_id, title=f"Copy {owner_id}", status="published", price_download=500,
                terms=base.terms, current_version=base.current_version, tags=["bulk"])
        for owner_id in owner_ids
    )  # fmt: skip
    client = Client()
    with django_assert_max_num_queries(3):
        first = client.get("/data/")
    assert len(first.context["cards"]) == 24
    with django_assert_max_num_queries(3):
        second = client.get("/data/?page=2")
    assert len(second.context["cards"]) == 9


# ---------------------------------------------------------------------------------------------------- detail


def test_detail_shows_terms_prices_statistics_and_the_ledger_entry(alice):
    dataset = make_listing(alice)
    version = dataset.current_version
    html = Client().get(f"/data/{dataset.pk}/").content.decode()
    assert 'data-testid="stats-table"' in html
    assert (
        "<code>income</code>" in html and '<code>Oslo</code>&nbsp;<span class="count">\u00d725</span>' in html
    )
    assert ">33,356<" in html  # the mean income, written for reading: four significant digits, grouped
    assert version.sha256 in html
    assert f'href="/ledger/entries/{version.published_seq}/"' in html
    assert "not allowed" in html and "365 days from purchase" in html
    assert "Log in to buy" in html and 'data-testid="buy-download"' not in html


def test_someone_elses_draft_is_404_but_its_owner_sees_it(alice, mallory):
    draft = make_listing(alice, publish=False)
    assert Client().get(f"/data/{draft.pk}/").status_code == 404
    assert client_for(mallory).get(f"/data/{draft.pk}/").status_code == 404
    own = client_for(alice).get(f"/data/{draft.pk}/")
    assert own.status_code == 200
    assert 'data-testid="publish"' in own.content.decode()


def test_anonymous_visitors_may_browse_but_new_and_mine_ask_them_to_log_in():
    client = Client()
    assert client.get("/data/").status_code == 200
    for url in ("/data/new/", "/data/mine/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_writes_refuse_get_and_anonymous_posts(alice):
    dataset = make_listing(alice)
    assert client_for(alice).get(f"/data/{dataset.pk}/withdraw/").status_code == 405
    response = Client().post(f"/data/{dataset.pk}/buy/", {"tier": "download"})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert not License.objects.exists()


# ---------------------------------------------------------------------------------------------------- new listing


def test_the_new_listing_form_creates_a_draft_with_a_version(alice):
    response = client_for(alice).post(
        "/data/new/",
        {
            "title": "Incomes 2026",
            "description": "Synthetic",
            "tags": "Finance, survey ,",
            "terms_preset": "commercial",
            "terms_text": "Cite us.",
            "price_download": "12.50",
            "price_compute": "",
            "file": SimpleUploadedFile("incomes.csv", CSV, content_type="text/csv"),
        },
        follow=True,
    )
    dataset = Dataset.objects.get()
    assert response.redirect_chain[-1][0] == f"/data/{dataset.pk}/"
    assert "statistics are being computed; publish when they are ready" in " ".join(messages_of(response))
    assert dataset.status == "draft" and dataset.owner == alice
    assert dataset.price_download == 1_250 and dataset.price_compute is None
    assert dataset.tags == ["finance", "survey"]
    assert dataset.terms["commercial_use"] is True and dataset.terms["free_text"] == "Cite us."
    version = dataset.versions.get()
    assert version.size == len(CSV) and version.status == "processing"
    assert Job.objects.get(pk=version.stats_job_id).kind == "marketplace.stats"


def test_a_bad_file_extension_shows_an_error_and_creates_nothing(alice):
    response = client_for(alice).post(
        "/data/new/",
        {
            "title": "Incomes",
            "terms_preset": "open",
            "price_download": "10",
            "file": SimpleUploadedFile("incomes.pkl", b"not data"),
        },
    )
    assert response.status_code == 200
    assert "Upload a .csv or .jsonl file." in response.content.decode()
    assert not Dataset.objects.exists() and not DatasetVersion.objects.exists()


def test_a_listing_without_any_price_is_refused_with_a_form_error(alice):
    response = client_for(alice).post(
        "/data/new/",
        {"title": "Incomes", "terms_preset": "open", "file": SimpleUploadedFile("incomes.csv", CSV)},
    )
    assert response.status_code == 200
    assert "Offer at least one tier" in response.content.decode()
    assert not Dataset.objects.exists()


# ---------------------------------------------------------------------------------------------------- owner actions


def test_the_owner_publishes_withdraws_and_uploads_from_the_page(alice, django_capture_on_commit_callbacks):
    dataset = make_listing(alice, publish=False)
    client = client_for(alice)
    response = client.post(f"/data/{dataset.pk}/publish/", follow=True)
    assert "Published version 1" in " ".join(messages_of(response))
    response = client.post(f"/data/{dataset.pk}/publish/", follow=True)
    assert response.status_code == 200  # the refusal is a message: nothing to publish twice
    response = client.post(
        f"/data/{dataset.pk}/versions/", {"file": SimpleUploadedFile("v2.csv", CSV)}, follow=True
    )
    assert "Version 2 uploaded" in " ".join(messages_of(response))
    response = client.post(f"/data/{dataset.pk}/withdraw/", follow=True)
    assert "Withdrawn" in " ".join(messages_of(response))
    dataset.refresh_from_db()
    assert dataset.status == "withdrawn" and dataset.versions.count() == 2


def test_mallory_cannot_publish_someone_elses_listing(alice, mallory):
    dataset = make_listing(alice, publish=False)
    assert client_for(mallory).post(f"/data/{dataset.pk}/publish/").status_code == 404
    published = make_listing(alice, title="On sale")
    response = client_for(mallory).post(f"/data/{published.pk}/withdraw/", follow=True)
    assert "only the owner withdraws" in " ".join(messages_of(response))
    published.refresh_from_db()
    assert published.status == "published"


# ---------------------------------------------------------------------------------------------------- buying


def test_buying_with_too_little_balance_shows_the_refusal_and_grants_nothing(alice, bob):
    dataset = make_listing(alice)
    fund(f"user:{bob.pk}", 5_000)
    response = client_for(bob).post(f"/data/{dataset.pk}/buy/", {"tier": "download"}, follow=True)
    assert response.status_code == 200
    # Back to the confirmation, which says what is missing and where to get tokens.
    assert response.redirect_chain[-1][0] == f"/data/{dataset.pk}/buy/?tier=download"
    shown = " ".join(messages_of(response))
    assert shown == "Not bought: You have 50.00 tokens; this costs 100.00 tokens.", shown
    assert "user:" not in response.content.decode()
    assert not License.objects.exists()


def test_bob_buys_download_access_and_then_sees_the_download_button(alice, bob):
    dataset = make_listing(alice)
    fund(f"user:{bob.pk}", 50_000)
    client = client_for(bob)
    before = client.get(f"/data/{dataset.pk}/").content.decode()
    assert 'data-testid="buy-download"' in before and 'data-testid="download"' not in before
    response = client.post(f"/data/{dataset.pk}/buy/", {"tier": "download"}, follow=True)
    assert "You bought download access for 100.00 tokens" in " ".join(messages_of(response))
    after = response.content.decode()
    assert 'data-testid="download"' in after and 'data-testid="buy-download"' not in after
    download = client.get(f"/api/data/datasets/{dataset.pk}/download/")
    assert download.status_code == 200 and b"".join(download.streaming_content) == CSV


def test_mallory_sees_no_download_button_and_the_api_refuses_her(alice, mallory):
    dataset = make_listing(alice)
    client = client_for(mallory)
    html = client.get(f"/data/{dataset.pk}/").content.decode()
    assert 'data-testid="download"' not in html and 'data-testid="analysis"' not in html
    assert client.get(f"/api/data/datasets/{dataset.pk}/download/").status_code == 403


def test_a_compute_licensee_runs_an_analysis_and_lands_on_its_results_page(alice, bob):
    dataset = make_listing(alice)
    fund(f"user:{bob.pk}", 50_000)
    client = client_for(bob)
    client.post(f"/data/{dataset.pk}/buy/", {"tier": "compute"})
    response = client.post(f"/data/{dataset.pk}/analyses/", {"analysis": "kmeans", "k": "2"})
    job = Job.objects.get(kind="marketplace.analysis")
    assert response.status_code == 302
    assert response["Location"] == f"/data/{dataset.pk}/analyses/{job.pk}/"
    assert job.owner == bob and job.params["k"] == 2
    assert client.get(response["Location"]).status_code == 200


def test_mallory_cannot_start_an_analysis_without_a_license(alice, mallory):
    dataset = make_listing(alice)
    response = client_for(mallory).post(f"/data/{dataset.pk}/analyses/", {"analysis": "pca"}, follow=True)
    assert "Not started" in " ".join(messages_of(response))
    assert not Job.objects.filter(kind="marketplace.analysis").exists()


# ---------------------------------------------------------------------------------------------------- mine


def test_my_datasets_shows_sales_and_my_purchases(alice, bob):
    dataset = make_listing(alice)
    make_listing(alice, title="Still a draft", publish=False)
    fund(f"user:{bob.pk}", 50_000)
    services.license_purchase(buyer=bob, dataset=dataset, tier="download")
    services.license_purchase(buyer=bob, dataset=dataset, tier="compute")

    mine = client_for(alice).get("/data/mine/")
    html = mine.content.decode()
    assert "Still a draft" in html and "Household incomes" in html
    assert mine.context["total_sales"] == 2
    assert "140.00 tokens" in html  # 100 + 40 gross

    purchases = client_for(bob).get("/data/mine/").content.decode()
    assert f'href="/data/{dataset.pk}/"' in purchases
    assert "Download" in purchases and "Compute" in purchases and "100.00 tokens" in purchases
