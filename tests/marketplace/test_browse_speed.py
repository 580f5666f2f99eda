"""Browsing many listings: each offered order reads an index, pages and counts are cached until a listing changes."""

import pytest
from django.db import connection
from django.test import Client

from marketplace import selectors, services
from marketplace.models import Dataset, DatasetVersion
from tests.factories import UserFactory
from tests.ledger.helpers import fund
from tests.marketplace.test_pages import client_for, make_listing

pytestmark = pytest.mark.django_db


def shelf(owner, n: int) -> None:
    """`n` published listings with a version each, written directly (no jobs), then analysed for the planner."""
    terms = services.terms_build(preset="open")
    datasets = Dataset.objects.bulk_create(
        Dataset(owner=owner, title=f"Sales {i}", description="Monthly sales", tags=["sales", f"t{i % 7}"] + ["rare"] * (i % 500 == 0),
                status=Dataset.Status.PUBLISHED, price_download=100 + i, price_compute=50 + i % 13, terms=terms)
        for i in range(n)
    )  # fmt: skip
    versions = DatasetVersion.objects.bulk_create(
        DatasetVersion(dataset=d, number=1, file="x.csv", format="csv", size=1, sha256="0" * 64,
                       status="ready", stats={"rows": i * 10, "n_columns": 2, "columns": []})
        for i, d in enumerate(datasets)
    )  # fmt: skip
    for dataset, version in zip(datasets, versions, strict=True):
        dataset.current_version = version
    Dataset.objects.bulk_update(datasets, ["current_version"])
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE marketplace_dataset")
            cursor.execute("ANALYZE marketplace_datasetversion")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the plans are PostgreSQL's")
@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, "dataset_published_created"),
        ({"sort": "oldest"}, "dataset_published_created"),
        ({"sort": "title"}, "dataset_published_title"),
        ({"sort": "price"}, "dataset_published_price"),
        ({"sort": "-price"}, "dataset_published_price"),
        ({"sort": "price", "tier": "download"}, "dataset_published_download"),
        ({"sort": "-price", "tier": "compute"}, "dataset_published_compute"),
        ({"sort": "rows"}, "version_rows"),
        ({"tag": "rare,sales"}, "dataset_tags"),
    ],
)
def test_every_offered_order_and_the_tag_filter_read_an_index_instead_of_sorting_every_listing(
    alice, filters, index
):
    shelf(alice, 3_000)
    page = selectors.dataset_list_public(**filters)[:24]
    plan = page.explain()
    assert index in plan, plan
    if "tag" not in filters:
        assert "Sort Key" not in plan or "Incremental Sort" in plan, plan
    assert len(list(page)) == (6 if "tag" in filters else 24)


def test_a_browse_page_seen_before_costs_one_query_and_no_count(alice, django_assert_max_num_queries):
    make_listing(alice, title="Bird counts")
    client = Client()
    for query in ("", "q=bird", "sort=price&tier=download", "sort=most_sold", "sort=rows&rows_min=1"):
        first = client.get(f"/data/?{query}")
        assert "Bird counts" in first.content.decode(), query
        with django_assert_max_num_queries(1):  # what has changed since: one read of two indexes
            again = client.get(f"/data/?{query}")
        assert again.content == first.content


def test_a_logged_in_user_reuses_the_cached_page_and_count_but_sees_their_own_header(
    alice, bob, django_assert_max_num_queries
):
    make_listing(alice, title="Bird counts")
    Client().get("/data/")
    client = client_for(bob)
    client.get("/")
    with django_assert_max_num_queries(3):  # the session, the user, what has changed
        page = client.get("/data/")
    html = page.content.decode()
    assert "Bird counts" in html and 'data-testid="nav-profile">bob<' in html
    assert [card["dataset"].title for card in page.context["cards"]] == ["Bird counts"]


def test_a_change_to_the_listings_shows_at_once_despite_the_cache(alice, bob):
    first = make_listing(alice, title="Bird counts", price_download=10_000)
    client = Client()

    def titles(query: str = "") -> list[str]:
        return [card["dataset"].title for card in client.get(f"/data/?{query}").context["cards"]]

    assert titles() == ["Bird counts"] and titles("sort=most_sold") == ["Bird counts"]
    second = make_listing(bob, title="Loan defaults", price_download=20_000)
    assert titles() == ["Loan defaults", "Bird counts"]
    assert "2 datasets on sale" in client.get("/data/").content.decode()
    assert titles("sort=most_sold") == ["Loan defaults", "Bird counts"]  # unsold: the newest first
    buyer = UserFactory(username="carol")
    fund(f"user:{buyer.pk}", 100_000)
    services.license_purchase(buyer=buyer, dataset=first, tier="download")
    assert titles("sort=most_sold") == ["Bird counts", "Loan defaults"], "a sale reorders the most sold"
    services.dataset_withdraw(dataset=second, actor=bob)
    assert titles() == ["Bird counts"]
    assert "1 dataset on sale" in client.get("/data/").content.decode()


def test_a_visitor_with_a_message_never_gets_or_leaves_a_cached_page(alice):
    make_listing(alice, title="Bird counts")
    client = Client()
    client.get("/data/")
    shown = client.get("/data/?price_min=lots")
    assert "The filter was ignored" in shown.content.decode()
    assert "The filter was ignored" in client.get("/data/?price_min=lots").content.decode()
    assert "The filter was ignored" not in Client().get("/data/").content.decode()


@pytest.mark.parametrize("junk", ["utm=x", "q=bird", "page=01", "page=9", "page=²", "page=" + "9" * 5_000])
def test_a_query_string_beyond_the_filters_is_rendered_but_never_kept(alice, junk):
    make_listing(alice, title="Bird counts")
    client = Client()
    assert client.get("/data/?q=bird").context is not None
    assert client.get("/data/?q=bird").context is None, "the same visitor page again: from the cache"
    assert client.get("/data/?sort=&q=bird&tag=").context is None, "the form's empty fields: the same page"
    for _ in range(2):
        page = client.get(f"/data/?q=bird&{junk}")
        assert page.context is not None, "rendered each time: junk cannot fill the cache"
        assert "Bird counts" in page.content.decode()
