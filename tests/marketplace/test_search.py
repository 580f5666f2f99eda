"""Browse and search: full text (PostgreSQL's, or word matching on SQLite), filters, sorting, on pages and API."""

import pytest
from django.db import connection
from django.test import Client

from marketplace import selectors, services
from marketplace.models import Dataset, DatasetVersion
from tests.conftest import api_as
from tests.factories import UserFactory
from tests.ledger.helpers import fund
from tests.marketplace.test_pages import make_listing, messages_of

pytestmark = pytest.mark.django_db


def listing(owner, title: str, *, rows: int = 50, description: str = "", **fields) -> Dataset:
    dataset = make_listing(owner, title=title, **fields)
    if description:
        Dataset.objects.filter(pk=dataset.pk).update(description=description)
    version = DatasetVersion.objects.get(pk=dataset.current_version_id)
    version.stats = {**version.stats, "rows": rows}
    version.save(update_fields=["stats"])
    return dataset


def titles(query: str = "") -> list[str]:
    response = Client().get(f"/data/?{query}")
    assert response.status_code == 200
    return [card["dataset"].title for card in response.context["cards"]]


def api_titles(user, query: str = "") -> list[str]:
    response = api_as(user).get(f"/api/data/datasets/?{query}")
    assert response.status_code == 200, response.content
    return [row["title"] for row in response.json()["results"]]


@pytest.fixture
def shelf(alice, bob):
    """Four listings with different words, tags, prices, sizes and sellers."""
    listing(
        alice, "Bird counts", description="Yearly counts of birds in Norwegian wetlands", tags=["ecology"],
        price_download=None, price_compute=2_000, rows=5_000,
    )  # fmt: skip
    listing(
        alice, "Weather stations", description="Temperatures, with a few bird sightings noted",
        tags=["climate", "ecology"], price_download=30_000, price_compute=None, rows=200_000,
    )  # fmt: skip
    listing(
        bob, "Household incomes", description="Synthetic survey of household incomes",
        tags=["finance", "survey"], price_download=10_000, price_compute=4_000, rows=50,
    )  # fmt: skip
    listing(
        bob, "Loan defaults", description="Credit outcomes of consumer loans", tags=["finance", "credit"],
        price_download=50_000, price_compute=None, rows=120_000,
    )  # fmt: skip


def test_search_finds_a_word_in_the_description(shelf):
    assert titles("q=wetlands") == ["Bird counts"]
    assert titles("q=consumer") == ["Loan defaults"]


def test_search_matches_word_forms_and_quoted_phrases(shelf):
    assert titles("q=wetland") == ["Bird counts"]
    assert titles('q="bird+sightings"') == ["Weather stations"]


def test_search_finds_by_tag(shelf):
    assert titles("q=credit") == ["Loan defaults"]
    assert set(titles("q=climate")) == {"Weather stations"}


def test_search_ranks_a_title_match_above_a_description_match(shelf):
    assert titles("q=bird") == ["Bird counts", "Weather stations"]


def test_search_needs_every_word_and_honours_exclusions(shelf):
    assert titles("q=household+survey") == ["Household incomes"]
    assert titles("q=household+wetlands") == []
    assert titles("q=bird+-weather") == ["Bird counts"]


def test_a_search_with_no_match_says_so(shelf):
    response = Client().get("/data/?q=zeppelin")
    assert response.context["cards"] == []
    assert "No dataset matches this search." in response.content.decode()


def test_filters_by_tags_seller_price_and_rows(shelf):
    assert set(titles("tag=finance")) == {"Household incomes", "Loan defaults"}
    assert titles("tag=finance,+credit") == ["Loan defaults"]
    assert set(titles("owner=alice")) == {"Bird counts", "Weather stations"}
    assert set(titles("price_min=100&price_max=400")) == {"Household incomes", "Weather stations"}
    assert titles("tier=compute&price_min=30") == ["Household incomes"]  # its download price is ignored
    assert set(titles("rows_min=100000")) == {"Weather stations", "Loan defaults"}
    assert titles("rows_min=1000&rows_max=100000") == ["Bird counts"]
    assert titles("q=ecology&owner=alice&price_max=25") == ["Bird counts"]


def test_sorting(shelf, alice):
    assert titles("sort=price") == ["Bird counts", "Household incomes", "Weather stations", "Loan defaults"]
    assert titles("sort=-price") == ["Loan defaults", "Weather stations", "Household incomes", "Bird counts"]
    assert titles("sort=title") == ["Bird counts", "Household incomes", "Loan defaults", "Weather stations"]
    assert titles("sort=newest") == ["Loan defaults", "Household incomes", "Weather stations", "Bird counts"]
    assert titles("sort=oldest") == ["Bird counts", "Weather stations", "Household incomes", "Loan defaults"]
    assert titles("sort=rows") == ["Weather stations", "Loan defaults", "Bird counts", "Household incomes"]
    assert titles("tier=download&sort=price") == ["Household incomes", "Weather stations", "Loan defaults"]
    buyer = UserFactory(username="carol")
    fund(f"user:{buyer.pk}", 100_000)
    loans = Dataset.objects.get(title="Loan defaults")
    services.license_purchase(buyer=buyer, dataset=loans, tier="download")
    assert titles("sort=most_sold")[0] == "Loan defaults"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("price_min=50&price_max=10", "The minimum price is more than the maximum."),
        ("rows_min=10&rows_max=1", "The minimum number of rows is more than the maximum."),
        ("price_min=lots", "Min price (tokens): Enter a number."),
        ("rows_max=-1", "Max rows: Ensure this value is greater than or equal to 0."),
        ("sort=cheapest", "Sort by: Select a valid choice."),
    ],
)
def test_bad_filters_show_a_message_and_list_everything(shelf, query, message):
    response = Client().get(f"/data/?{query}")
    assert response.status_code == 200
    shown = " ".join(messages_of(response))
    assert message in shown and "The filter was ignored" in shown, shown
    assert len(response.context["cards"]) == 4


def test_the_api_searches_filters_in_minor_units_and_sorts(shelf, mallory):
    assert api_titles(mallory, "q=wetlands") == ["Bird counts"]
    assert api_titles(mallory, "q=bird") == ["Bird counts", "Weather stations"]
    assert set(api_titles(mallory, "price_min=10000&price_max=40000")) == {
        "Household incomes",
        "Weather stations",
    }
    assert api_titles(mallory, "tag=finance&sort=-price") == ["Loan defaults", "Household incomes"]
    assert api_titles(mallory, "rows_max=100") == ["Household incomes"]
    assert api_titles(mallory, "owner=bob&sort=title") == ["Household incomes", "Loan defaults"]


@pytest.mark.parametrize(
    "query",
    [
        "price_min=5&price_max=1",
        "sort=cheapest",
        "price_max=-1",
        "rows_min=x",
        f"price_max={10**30}",
        "tier=free",
    ],
)
def test_the_api_answers_bad_filters_with_400(shelf, mallory, query):
    response = api_as(mallory).get(f"/api/data/datasets/?{query}")
    assert response.status_code == 400, response.content


def test_searching_and_filtering_24_listings_takes_constant_queries(alice, django_assert_max_num_queries):
    base = listing(alice, "Set 0", description="survey of birds", rows=500)
    owner_ids = [UserFactory(username=f"owner{i}").pk for i in range(30)]
    Dataset.objects.bulk_create(
        Dataset(owner_id=owner_id, title=f"Bird survey {owner_id}", description="birds", status="published",
                price_download=500 + owner_id, terms=base.terms, current_version=base.current_version,
                tags=["bulk", "birds"])
        for owner_id in owner_ids
    )  # fmt: skip
    client = Client()
    for query in ("q=bird+survey", "q=birds&sort=most_sold&rows_min=10", "tag=bulk&price_min=1&sort=price"):
        with django_assert_max_num_queries(3):
            response = client.get(f"/data/?{query}")
        assert len(response.context["cards"]) == 24, query


@pytest.mark.parametrize(
    "query",
    [
        "q=%21%21%21",
        "q=the",
        "q=%22unclosed",
        "q=-",
        "q=50%25_off",
        f"rows_min={10**15}&sort=rows",
        "sort=relevance",
    ],
    ids=[
        "punctuation",
        "stop-word",
        "unclosed-quote",
        "lone-minus",
        "like-wildcards",
        "huge-rows",
        "relevance-no-q",
    ],
)
def test_odd_searches_answer_without_error(shelf, query):
    assert Client().get(f"/data/?{query}").status_code == 200


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the search index exists on PostgreSQL only")
def test_postgresql_searches_thousands_of_listings_through_the_gin_index(alice):
    terms = services.terms_build(preset="open")
    Dataset.objects.bulk_create(
        Dataset(owner=alice, title=f"Sales ledger {i}", description="Monthly sales by region", tags=["sales"],
                status=Dataset.Status.PUBLISHED, price_download=100, terms=terms)
        for i in range(3_000)
    )  # fmt: skip
    listing(alice, "Bird counts", description="Yearly counts of birds")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE marketplace_dataset")
    found = selectors.dataset_list_public(q="birds")
    assert [d.title for d in found] == ["Bird counts"]
    assert "dataset_search" in found.explain()
