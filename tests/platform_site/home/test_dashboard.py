"""The home page as a first visitor, a new user and a returning user meet it, and the areas still coming."""

import re

import pytest
from django.db import transaction
from django.urls import reverse

from ledger import services as ledger
from platform_site.home.areas import AREAS
from tests.platform_site.home.listings import published

pytestmark = pytest.mark.django_db

HOME = "/"


def part(page: str, name: str) -> str:
    """The element with this data-testid, up to the end of the page (enough to look inside it)."""
    assert f'data-testid="{name}"' in page, name
    return page[page.index(f'data-testid="{name}"') :]


def main_action(page: str) -> str:
    tag = re.search(r'<a [^>]*data-testid="main-action"[^>]*>', page).group(0)
    return re.search(r'href="([^"]+)"', tag).group(1)


def test_anonymous_visitors_see_the_listings_on_sale_with_prices_in_tokens(client, alice):
    published(alice, "Retail customer segments", price_compute=15_000, tags=["retail"])
    published(alice, "City air quality", price_download=25_000, price_compute=8_000)
    published(alice, "Unfinished draft", price_download=100, publish=False)
    page = client.get(HOME).content.decode()
    featured = part(page, "featured")
    assert featured.count('data-testid="featured-listing"') == 2
    assert "Retail customer segments" in featured and "City air quality" in featured
    assert "Unfinished draft" not in page
    assert "150.00 tokens" in featured and "250.00 tokens" in featured and "80.00 tokens" in featured
    assert main_action(page) == reverse("marketplace:index")


def test_the_best_selling_listings_come_first_and_at_most_six_are_shown(client, alice, bob):
    for n in range(7):
        published(alice, f"Set {n}", price_download=100)
    best = published(alice, "Best seller", price_download=100)
    with transaction.atomic():
        ledger.mint(destination=f"user:{bob.pk}", amount=1_000, actor="system", reason="test")
    from marketplace import services

    services.license_purchase(buyer=bob, dataset=best, tier="download")
    featured = part(client.get(HOME).content.decode(), "featured")
    titles = re.findall(r'<h3><a href="[^"]+">([^<]+)</a></h3>', featured)
    assert len(titles) == 6
    assert titles[0] == "Best seller"


def test_an_empty_marketplace_says_so_and_invites_the_first_listing(client):
    page = client.get(HOME).content.decode()
    assert "No dataset is on sale yet" in part(page, "featured-empty")


def test_the_home_page_costs_the_same_queries_for_many_listings(client, alice, django_assert_max_num_queries):
    published(alice, "First", price_download=100)
    with django_assert_max_num_queries(3) as one:
        client.get(HOME)
    for n in range(5):
        published(alice, f"More {n}", price_download=100, tags=["a", "b"])
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert client.get(HOME).status_code == 200
    # A repeat visit reads the browse cache's stamp only: the cards and their count come from the cache.
    with django_assert_max_num_queries(1):
        page = client.get(HOME).content.decode()
    assert "All 6 datasets" in page and page.count('data-testid="featured-listing"') == 6


def test_a_new_user_is_welcomed_not_welcomed_back_and_pointed_to_browsing_data(client, alice):
    client.force_login(alice)
    page = client.get(HOME).content.decode()
    assert "Welcome back" not in page
    assert re.search(r'data-testid="greeting">Welcome, alice<', page)
    steps = part(page, "first-steps")
    assert "Get demo tokens" in steps and "Browse data" in steps
    assert main_action(page) == reverse("marketplace:index") == "/data/"


def test_a_user_with_activity_is_welcomed_back_and_sees_it_in_words(client, alice):
    ledger.faucet_request(user=alice)
    client.force_login(alice)
    page = client.get(HOME).content.decode()
    assert re.search(r'data-testid="greeting">Welcome back, alice<', page)
    assert 'data-testid="first-steps"' not in page
    activity = part(page, "dashboard-activity")
    assert "Faucet" in activity and "+1,000.00 tokens" in activity
    assert main_action(page) == reverse("marketplace:index")


def test_a_user_whose_only_activity_is_a_job_is_welcomed_back(client, alice):
    from platform_site.jobs.models import Job

    Job.objects.create(owner=alice, kind="ml.selftest", params={})
    client.force_login(alice)
    page = client.get(HOME).content.decode()
    assert "Welcome back, alice" in page
    assert 'data-testid="run-selftest"' in page


def test_areas_not_built_yet_look_unbuilt_in_the_menu_and_on_the_home_page(client):
    page = client.get(HOME).content.decode()
    menu = page[page.index('<nav class="mainnav"') :]
    menu = menu[: menu.index("</nav>")]
    coming = [area for area in AREAS if not area.built]
    assert {a.title for a in coming} == {"DAOs", "Finance"}
    for area in AREAS:
        link = re.search(rf'<a href="{reverse(area.url_name)}"[^>]*>{area.title}(.*?)</a>', menu, re.S)
        assert link, area.title
        assert ('class="soon"' in link.group(0)) is not area.built, area.title
        assert ("soon" in link.group(1)) is not area.built, area.title
    cards = re.findall(r'<a class="card area[^"]*"[^>]*>.*?</a>', page, re.S)
    assert len(cards) == len(AREAS)
    for area, card in zip(AREAS, cards, strict=True):
        assert area.title in card
        assert ("Coming" in card) is not area.built, area.title


@pytest.mark.parametrize("area", [a for a in AREAS if not a.built], ids=lambda a: a.title)
def test_each_area_still_coming_answers_with_a_page_that_says_so(client, area):
    response = client.get(reverse(area.url_name))
    assert response.status_code == 200
    page = response.content.decode()
    assert "This area is not open yet" in part(page, "area-coming")
    assert 'data-testid="coming"' in page
    assert f'href="{reverse("marketplace:index")}"' in page and f'href="{reverse("ledger:index")}"' in page


def test_the_menu_marks_the_area_the_page_belongs_to(client, alice):
    client.force_login(alice)
    page = client.get(reverse("ledger:index")).content.decode()
    assert re.search(r'<a href="/ledger/" aria-current="page"', page)
    assert not re.search(r'<a href="/data/" aria-current', page)


def test_a_listing_has_the_same_card_on_the_home_page_and_the_browse_page(client, alice):
    published(alice, "Retail customer segments", price_compute=15_000, tags=["retail", "b2c"])

    def card(path: str, testid: str) -> str:
        found = re.search(
            rf'<article class="card listing" data-testid="{testid}">.*?</article>',
            client.get(path).content.decode(),
            re.S,
        )
        return found.group(0).replace(f'data-testid="{testid}"', "")

    home = card(HOME, "featured-listing")
    assert home == card(reverse("marketplace:index"), "listing")
    assert 'href="/data/?owner=alice">alice</a>' in home and 'href="/data/?tag=retail"' in home
    assert "150.00 tokens" in home
