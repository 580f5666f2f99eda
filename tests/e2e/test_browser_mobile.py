"""The site on a phone, 390 px wide, in a real browser: no page scrolls sideways, the open menu is one clean
column, and wide tables scroll inside their box (with edge shadows) so their last columns are reachable."""

import itertools

import pytest
from django.db import transaction

from ledger import services as ledger
from marketplace import services as marketplace
from tests.factories import PASSWORD, UserFactory
from tests.platform_site.home.listings import published

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def market(asgi_server):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    dataset = published(alice, "Retail customer segments with a rather long title", price_compute=15_000,
                        price_download=40_000, tags=["retail", "customers"])  # fmt: skip
    ledger.faucet_request(user=bob)
    marketplace.license_purchase(buyer=bob, dataset=dataset, tier="compute")
    with transaction.atomic():
        ledger.transfer(source=f"user:{bob.pk}", destination=f"user:{alice.pk}", amount=12_345,
                        actor=f"user:{bob.pk}", memo="thanks for the clean data")  # fmt: skip
    return asgi_server


def log_in(page, url: str, username: str) -> None:
    page.goto(f"{url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{url}/")


def page_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def test_no_page_scrolls_sideways_and_the_open_menu_is_one_column(market, browser):
    page = browser.new_page(viewport=PHONE)
    page.set_default_timeout(20_000)
    for path in ("/", "/accounts/signup/", "/models/"):
        page.goto(market + path)
        assert page_width(page) <= 390, path
    log_in(page, market, "bob")
    for path in ("/", "/accounts/profile/", "/ledger/", "/data/"):
        page.goto(market + path)
        assert page_width(page) <= 390, path

    page.goto(market + "/")
    links = page.locator(".mainnav a, .usernav > a, .usernav button")
    assert not links.first.is_visible(), "the menu starts closed"
    page.locator("label.nav-toggle-label").click()
    boxes = [links.nth(i).bounding_box() for i in range(links.count())]
    brand = page.locator(".brand").bounding_box()
    assert len(boxes) == 9  # six areas; jobs, the profile and log out
    assert all(b["y"] >= brand["y"] + brand["height"] for b in boxes), "the menu opens below the brand"
    assert len({round(b["x"]) for b in boxes}) == 1, "one column, left-aligned"
    tops = [b["y"] for b in boxes]
    assert tops == sorted(tops) and all(b - a >= 30 for a, b in itertools.pairwise(tops)), "no overlap"
    assert all(b["x"] + b["width"] <= 390 for b in boxes)


def test_wide_tables_scroll_inside_their_box_and_the_last_column_can_be_reached(market, browser):
    page = browser.new_page(viewport=PHONE)
    page.set_default_timeout(20_000)
    log_in(page, market, "bob")
    page.goto(market + "/ledger/")
    wrap = page.locator(".table-wrap").first
    table = wrap.locator("table")
    assert table.evaluate("t => getComputedStyle(t).minWidth") in ("0px", "auto")
    sizes = wrap.evaluate("w => [w.scrollWidth, w.clientWidth]")
    assert sizes[0] > sizes[1], "the table is wider than the phone: it scrolls inside its box"
    assert "radial-gradient" in wrap.evaluate("w => getComputedStyle(w).backgroundImage"), "edge shadows"
    last = table.locator("thead th").last
    assert last.bounding_box()["x"] >= 390, "the last column starts off screen"
    wrap.evaluate("w => { w.scrollLeft = w.scrollWidth; }")
    box = last.bounding_box()
    # The last column (a hash) may be wider than the phone: its end is what scrolling must bring into view.
    assert box["x"] < 390 and 0 < box["x"] + box["width"] <= 391, "scrolled, the last column's end is in view"


def test_the_wallet_shows_every_amount_on_a_phone(market, browser):
    page = browser.new_page(viewport=PHONE)
    page.set_default_timeout(20_000)
    log_in(page, market, "bob")
    page.goto(market + "/accounts/profile/")
    amounts = page.locator('[data-testid="wallet-entries"] .amount')
    assert amounts.count() == 3
    texts = []
    for i in range(amounts.count()):
        box = amounts.nth(i).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390
        texts.append(amounts.nth(i).inner_text())
    assert texts == ["\u2212123.45 tokens", "\u2212150.00 tokens", "+1,000.00 tokens"]
