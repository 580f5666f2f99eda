"""A newcomer's whole journey in a real browser, against the live server and a real Celery worker: sign up, take
tokens from the faucet, find a dataset, buy it after a confirmation, analyse it, reach the results from the job
page; then list a dataset of their own, watch its statistics arrive without reloading, publish it and find it."""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import Page, expect

from marketplace import services as marketplace
from platform_site.jobs.models import Job
from tests.factories import UserFactory
from tests.processes import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ON_SALE = "Retail customer segments"
MINE = "Bike counts by street"
PASSWORD = "a-long-unusual-passphrase-42"

SEGMENTS = b"age,spend,visits,region\n" + b"".join(
    f"{20 + i % 45},{100 + (i * 37) % 900},{1 + i % 9},{['north', 'south', 'east'][i % 3]}\n".encode()
    for i in range(150)
)
BIKES = b"street,hour,bikes\n" + b"".join(
    f"{['Main', 'Harbour', 'Park'][i % 3]},{i % 24},{(i * 13) % 200}\n".encode() for i in range(60)
)


@pytest.fixture
def on_sale(celery_worker) -> None:
    """alice's listing, analysed by the worker and published: made before the browser starts its event loop in
    this thread, where the ORM refuses to run."""
    alice = UserFactory(username="alice")
    dataset = marketplace.dataset_create(
        owner=alice, title=ON_SALE, description="Spend and visits of a shop's customers", tags=["retail"],
        terms_preset="research", price_download=40_000, price_compute=15_000,
    )  # fmt: skip
    version = marketplace.dataset_version_upload(
        dataset=dataset, actor=alice, upload=SimpleUploadedFile("segments.csv", SEGMENTS)
    )
    wait_for(lambda: Job.objects.get(pk=version.stats_job_id).is_finished, timeout=90, what="the stats job")
    marketplace.dataset_publish(dataset=dataset, actor=alice)


def data_area(page: Page) -> None:
    page.get_by_role("navigation", name="Areas").get_by_role("link", name="Data").click()
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()


def test_a_newcomer_signs_up_buys_analyses_and_sells_a_dataset(on_sale, asgi_server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.set_default_timeout(20_000)

    # 1. Sign up from the home page.
    page.goto(f"{asgi_server}/")
    page.get_by_role("link", name="Sign up").first.click()
    page.fill("input[name=username]", "nadia")
    page.fill("input[name=email]", "nadia@example.com")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.get_by_role("button", name="Create my account").click()
    expect(page.get_by_test_id("greeting")).to_have_text("Welcome, nadia")

    # 2. Tokens from the faucet, on the wallet page.
    page.get_by_test_id("nav-profile").click()
    expect(page.get_by_test_id("wallet-balance")).to_have_text("0.00 tokens")
    page.get_by_test_id("faucet").click()
    expect(page.get_by_text(re.compile(r"1,000\.00 tokens added to your wallet"))).to_be_visible()
    expect(page.get_by_test_id("wallet-balance")).to_have_text("1,000.00 tokens")

    # 3. Find the dataset by browsing, and buy compute-only access through the confirmation page.
    data_area(page)
    page.get_by_test_id("listings").get_by_role("link", name=ON_SALE).click()
    expect(page.get_by_role("heading", name=ON_SALE)).to_be_visible()
    page.get_by_test_id("buy-compute").click()
    expect(page.get_by_test_id("buy-price")).to_have_text("150.00 tokens")
    expect(page.get_by_test_id("buy-balance")).to_have_text("1,000.00 tokens")
    expect(page.get_by_test_id("buy-after")).to_have_text("850.00 tokens")
    expect(page.get_by_test_id("buy-terms")).to_contain_text("Research")
    expect(page.get_by_test_id("buy-terms")).to_contain_text("365 days from purchase")
    page.get_by_test_id("buy-confirm-button").click()
    expect(
        page.get_by_text(re.compile(r"You bought compute(-only)? access for 150\.00 tokens"))
    ).to_be_visible()
    expect(page.get_by_test_id("license")).to_contain_text(re.compile(r"You hold compute(-only)? access"))

    # 4. Run k-means from the dataset's page.
    page.select_option("select[name=analysis]", "kmeans")
    page.fill("input[name=k]", "2")
    page.get_by_test_id("run-analysis").click()
    expect(page).to_have_url(re.compile(r"/data/\d+/analyses/\d+/$"))

    # 5. The jobs list names the job's dataset; the job page links to the results, which show the plot.
    page.get_by_role("navigation", name="Account").get_by_role("link", name="Jobs").click()
    row = page.get_by_test_id("jobs-table").get_by_role("row").filter(has_text=ON_SALE)
    expect(row).to_have_count(1)
    row.get_by_role("link", name=re.compile(r"^#\d+$")).click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    expect(page.get_by_test_id("job-object")).to_contain_text(ON_SALE)
    expect(page.get_by_test_id("job-status")).to_have_text("Succeeded", timeout=120_000)
    page.get_by_test_id("job-results-link").click()
    expect(page).to_have_url(re.compile(r"/data/\d+/analyses/\d+/$"))
    expect(page.get_by_test_id("analysis-status")).to_have_text("Succeeded")
    expect(page.get_by_test_id("analysis-plot")).to_be_visible()
    expect(page.get_by_test_id("analysis-figures")).to_contain_text(re.compile(r"\d"))

    # The wallet tells the purchase in words.
    page.get_by_test_id("nav-profile").click()
    expect(page.get_by_test_id("wallet-balance")).to_have_text("850.00 tokens")
    expect(page.get_by_test_id("wallet-activity")).to_contain_text(f"Bought “{ON_SALE}” (compute-only)")

    # 6. List a dataset: the draft's statistics and its Publish button arrive without a reload.
    data_area(page)
    page.get_by_role("link", name="List a dataset").click()
    data_file = tmp_path / "bikes.csv"
    data_file.write_bytes(BIKES)
    page.fill("input[name=title]", MINE)
    page.fill("textarea[name=description]", "Hourly bike counts on three streets")
    page.fill("input[name=tags]", "mobility")
    page.select_option("select[name=terms_preset]", "open")
    page.fill("input[name=price_download]", "20")
    page.set_input_files("input[name=file]", str(data_file))
    page.get_by_role("button", name="Create listing").click()
    expect(page).to_have_url(re.compile(r"/data/\d+/$"))
    expect(page.get_by_test_id("dataset-status")).to_have_text("Draft")
    expect(page.get_by_test_id("stats-pending")).to_be_visible()
    page.evaluate("window.__sameDocument = true")  # a reload would drop it
    expect(page.get_by_test_id("stats-table")).to_contain_text("bikes", timeout=60_000)
    expect(page.get_by_test_id("publish")).to_be_visible()
    assert page.evaluate("window.__sameDocument === true"), "the statistics arrived without a reload"

    # 7. Publish, and the listing is on sale in browse.
    page.get_by_test_id("publish").click()
    expect(page.get_by_text("Published version 1")).to_be_visible()
    expect(page.get_by_test_id("dataset-status")).to_have_text("Published")
    data_area(page)
    mine = page.get_by_test_id("listing").filter(has_text=MINE)
    expect(mine).to_contain_text("by nadia")
    expect(mine).to_contain_text("20.00 tokens")
