"""The data sale in a real browser: alice lists and publishes, bob buys, downloads and analyses his purchase,
mallory is refused."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.factories import PASSWORD, UserFactory
from tests.ledger.helpers import fund

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CSV = b"age,income,city\n" + b"".join(
    f"{20 + i % 40},{30000 + 137 * i},{['Oslo', 'Bergen'][i % 2]}\n".encode() for i in range(60)
)


def log_in(browser, base: str, username: str) -> Page:
    page = browser.new_context(accept_downloads=True).new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").click()
    expect(page.get_by_test_id("nav-profile")).to_have_text(username)
    return page


@pytest.fixture
def people(transactional_db) -> None:
    """alice, bob with tokens, and mallory; made before the browser starts its event loop in this thread, where
    the ORM refuses to run."""
    UserFactory(username="alice")
    bob = UserFactory(username="bob")
    UserFactory(username="mallory")
    fund(f"user:{bob.pk}", 50_000)


def test_alice_sells_a_dataset_bob_downloads_it_and_mallory_is_refused(
    celery_worker, asgi_server, people, browser, tmp_path
):
    data_file = tmp_path / "incomes.csv"
    data_file.write_bytes(CSV)

    alice_page = log_in(browser, asgi_server, "alice")
    alice_page.goto(f"{asgi_server}/data/new/")
    alice_page.fill("input[name=title]", "Household incomes 2026")
    alice_page.fill("textarea[name=description]", "Synthetic survey of incomes")
    alice_page.fill("input[name=tags]", "finance, survey")
    alice_page.select_option("select[name=terms_preset]", "commercial")
    alice_page.fill("input[name=price_download]", "100")
    alice_page.fill("input[name=price_compute]", "40")
    alice_page.set_input_files("input[name=file]", str(data_file))
    alice_page.get_by_role("button", name="Create listing").click()
    expect(alice_page).to_have_url(re.compile(r"/data/\d+/$"))
    expect(
        alice_page.get_by_text("statistics are being computed; publish when they are ready")
    ).to_be_visible()
    detail_url = alice_page.url

    # The draft follows its statistics job: the table and the Publish button arrive without a reload (a reload
    # would drop the marker set on the window).
    alice_page.evaluate("window.__sameDocument = true")
    expect(alice_page.get_by_test_id("stats-table")).to_contain_text("income", timeout=60_000)
    expect(alice_page.get_by_test_id("publish")).to_be_visible()
    assert alice_page.evaluate("window.__sameDocument === true")
    alice_page.get_by_test_id("publish").click()
    expect(alice_page.get_by_text("Published version 1")).to_be_visible()
    expect(alice_page.get_by_test_id("dataset-status")).to_have_text("Published")
    expect(alice_page.get_by_test_id("ledger-link")).to_be_visible()

    bob_page = log_in(browser, asgi_server, "bob")
    bob_page.goto(f"{asgi_server}/data/")
    bob_page.get_by_role("link", name="Household incomes 2026").click()
    expect(bob_page).to_have_url(detail_url)
    expect(bob_page.get_by_test_id("download")).to_have_count(0)
    # On a phone the price and the Buy button come first, above the description.
    bob_page.set_viewport_size({"width": 390, "height": 844})
    offer = bob_page.get_by_test_id("offer").bounding_box()
    description = bob_page.get_by_text("Synthetic survey of incomes").bounding_box()
    assert offer["y"] < description["y"] and offer["x"] + offer["width"] <= 390
    bob_page.set_viewport_size({"width": 1366, "height": 900})
    bob_page.get_by_role("link", name="Buy download access").click()
    expect(bob_page.get_by_test_id("buy-price")).to_have_text("100.00 tokens")
    expect(bob_page.get_by_test_id("buy-balance")).to_have_text("500.00 tokens")
    expect(bob_page.get_by_test_id("buy-after")).to_have_text("400.00 tokens")
    expect(bob_page.get_by_test_id("buy-terms")).to_contain_text("Commercial use")
    bob_page.get_by_test_id("buy-confirm-button").click()
    expect(bob_page.get_by_text("You bought download access for 100.00 tokens")).to_be_visible()
    with bob_page.expect_download() as download_info:
        bob_page.get_by_test_id("download").click()
    saved = tmp_path / "downloaded.csv"
    download_info.value.save_as(saved)
    assert saved.read_bytes() == CSV

    # bob runs k-means with two clusters and watches the results page turn from progress into the plot.
    # The form shows the chosen analysis's options only, with the preprocessing.
    bob_page.select_option("select[name=analysis]", "dbscan")
    expect(bob_page.get_by_test_id("fieldset-dbscan")).to_be_visible()
    expect(bob_page.get_by_test_id("fieldset-kmeans")).to_be_hidden()
    expect(bob_page.get_by_role("group", name="Preprocessing")).to_be_visible()
    bob_page.select_option("select[name=analysis]", "kmeans")
    expect(bob_page.get_by_test_id("fieldset-dbscan")).to_be_hidden()
    bob_page.fill("input[name=k]", "2")
    bob_page.get_by_test_id("run-analysis").click()
    expect(bob_page).to_have_url(re.compile(r"/data/\d+/analyses/\d+/$"))
    expect(bob_page.locator("[data-testid=analysis-plot] .chart.drawn svg.marks").first).to_be_visible(
        timeout=120_000
    )
    expect(bob_page.get_by_test_id("analysis-status")).to_have_text("Succeeded")
    expect(bob_page.get_by_test_id("clusters-table")).to_contain_text("income")
    expect(bob_page.get_by_test_id("analysis-ledger-link")).to_be_visible()
    analysis_url = bob_page.url
    bob_page.get_by_role("link", name=re.compile("Household incomes 2026")).click()
    expect(bob_page.get_by_test_id("my-analysis")).to_have_count(1)

    mallory_page = log_in(browser, asgi_server, "mallory")
    mallory_page.goto(detail_url)
    expect(mallory_page.get_by_test_id("buy-download")).to_be_visible()
    expect(mallory_page.get_by_test_id("download")).to_have_count(0)
    dataset_id = re.search(r"/data/(\d+)/$", detail_url).group(1)
    refused = mallory_page.request.get(f"{asgi_server}/api/data/datasets/{dataset_id}/download/")
    assert refused.status == 403
    assert mallory_page.goto(analysis_url).status == 404
