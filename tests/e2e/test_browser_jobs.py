"""The first journey of every user, in a real browser: sign up, log in, run a job and watch it finish."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_newcomer_signs_up_logs_in_and_watches_a_job_reach_100_percent(celery_worker, asgi_server, browser):
    page = browser.new_page()
    page.set_default_timeout(20_000)

    page.goto(f"{asgi_server}/")
    page.get_by_role("link", name="Sign up").click()
    page.fill("input[name=username]", "newcomer")
    page.fill("input[name=email]", "newcomer@example.com")
    page.fill("input[name=password1]", "a-long-unusual-passphrase-42")
    page.fill("input[name=password2]", "a-long-unusual-passphrase-42")
    page.locator("form button[type=submit]").last.click()
    expect(page.get_by_test_id("greeting")).to_have_text("Welcome, newcomer")

    page.get_by_role("button", name="Log out").click()
    page.goto(f"{asgi_server}/accounts/login/")
    page.fill("input[name=username]", "newcomer")
    page.fill("input[name=password]", "a-long-unusual-passphrase-42")
    page.locator("form button[type=submit]").last.click()
    expect(page.get_by_test_id("greeting")).to_have_text("Welcome, newcomer")

    page.get_by_test_id("run-selftest").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    expect(page.get_by_test_id("job-percent")).to_have_text("100%", timeout=120_000)
    expect(page.get_by_test_id("job-status")).to_have_text("Succeeded")
    expect(page.get_by_test_id("job-progress")).to_have_attribute("aria-valuenow", "100")
    # The learning curve was drawn while the job ran, from the live snapshots: one panel per metric, each a line.
    expect(page.locator("#job-charts svg g.mark-line.role-mark path")).to_have_count(2)
    titles = page.eval_on_selector_all("#job-charts svg text", "nodes => nodes.map(n => n.textContent)")
    assert {"loss", "accuracy"} <= set(titles), "loss and accuracy are plotted, each named"
    expect(page.get_by_test_id("job-result")).to_contain_text("Test accuracy")
