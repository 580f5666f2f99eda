"""A coordinator watches their federation live: as the parties' updates arrive and the worker aggregates the
round, the rounds table and the accuracy chart appear on the open page, without a reload."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import expect

from tests.e2e.test_browser_mobile import log_in
from tests.factories import UserFactory
from tests.federation.helpers import admitted, create, keyed, submit, trained_delta

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def running(asgi_server, celery_worker):
    """alice's federation with bob and carol admitted: round 1 is open (made before the browser starts, whose
    event loop would refuse the database calls in this thread)."""
    federation = create(UserFactory(username="alice"), target_value=0.999)
    members = admitted(federation, [keyed(UserFactory(username="bob")), keyed(UserFactory(username="carol"))])
    return asgi_server, federation, members


def both_parties_submit(federation, members) -> None:
    for index, member in enumerate(members):
        delta, examples, _ = trained_delta(federation, 1, index, len(members))
        submit(federation, 1, member, delta, examples)


def test_the_coordinator_sees_a_round_aggregate_on_the_open_page(running, browser):
    url, federation, members = running
    page = browser.new_page()
    log_in(page, url, "alice")
    page.goto(f"{url}/federated/{federation.pk}/")
    expect(page.get_by_test_id("federation-live")).to_have_text("live", timeout=20_000)
    expect(page.get_by_test_id("federation-rounds")).to_contain_text("Open")
    page.evaluate("window.stillTheSamePage = true")

    with ThreadPoolExecutor(1) as pool:  # the parties, outside the browser's event loop
        pool.submit(both_parties_submit, federation, members).result()

    rounds = page.get_by_test_id("federation-rounds")
    expect(rounds).to_contain_text("Closed", timeout=120_000)
    expect(rounds).to_contain_text("accuracy")
    chart = page.get_by_test_id("chart-round-metrics").locator(".chart svg, .chart canvas")
    expect(chart.first).to_be_visible(timeout=20_000)
    expect(page.get_by_test_id("federation-live")).to_have_text("live")
    assert page.evaluate("window.stillTheSamePage") is True  # swapped in place, not reloaded
