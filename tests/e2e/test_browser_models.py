"""Buying and calling a model in the browser: find it, buy a licence through the confirmation, try it, get the
receipt, and see the call in "my models"."""

import json
import re

import pytest
from playwright.sync_api import expect

from tests.e2e.test_browser_mobile import log_in
from tests.factories import UserFactory
from tests.ledger.helpers import fund
from tests.models_market.helpers import ROW, listed

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def market(asgi_server):
    owner = UserFactory(username="olga")
    buyer = UserFactory(username="ben")
    fund(f"user:{buyer.pk}", 10_000)
    listed(owner, price_perpetual=2_500, price_per_call=10)
    return asgi_server


def test_a_buyer_finds_buys_and_calls_a_model_with_a_receipt(market, browser):
    url = market
    page = browser.new_page()
    log_in(page, url, "ben")
    page.goto(f"{url}/models/")
    page.get_by_test_id("model-card").get_by_role("link", name=re.compile("Churn")).click()
    expect(page.get_by_test_id("model-card")).to_be_visible()
    page.get_by_test_id("buy-perpetual").click()
    expect(page.get_by_test_id("buy-price")).to_have_text("25.00 tokens")
    expect(page.get_by_test_id("buy-balance")).to_have_text("100.00 tokens")
    expect(page.get_by_test_id("buy-after")).to_have_text("75.00 tokens")
    page.get_by_test_id("buy-confirm-button").click()
    expect(page.get_by_test_id("my-licence")).to_contain_text("perpetual")

    page.fill("textarea[name=rows]", json.dumps([ROW]))
    page.get_by_test_id("try-submit").click()
    expect(page.get_by_test_id("try-predictions")).to_be_visible()
    expect(page.get_by_test_id("try-receipt")).to_contain_text("0.10 tokens")

    page.goto(f"{url}/models/mine/")
    expect(page.get_by_test_id("my-licences")).to_contain_text("Churn")
    expect(page.get_by_test_id("my-receipts").locator("tbody tr")).to_have_count(1)
    page.close()
