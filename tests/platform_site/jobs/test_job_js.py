"""static/js/job.js in a real browser, fed snapshots by a stand-in websocket: every badge of the job follows the
progress card, and a finished job without metrics says nothing about waiting for a step."""

import json

import pytest

from tests.processes import ROOT

pytestmark = [pytest.mark.browser]

PAGE = """<h1>Analysis <span class="badge queued" data-job-status-badge id="heading-badge">Queued</span></h1>
<div id="job" data-job-id="7" data-api-url="/api/jobs/7/">
  <span class="badge queued" id="job-status">Queued</span> <span id="job-message"></span>
  <div class="progress queued" id="job-progress"><div class="bar"></div></div>
  <span id="job-percent">0%</span> <span id="job-live"></span>
</div>
<div id="job-charts-card"><p id="job-charts-waiting">Waiting for the first step…</p>
  <div id="job-charts"><div class="chart" data-chart="learning-curve-spec"></div></div></div>
<script id="job-snapshot" type="application/json">SNAPSHOT</script>"""

# A websocket that opens at once and hands the page each snapshot the test pushes with window.push(snapshot).
FAKE_SOCKET = """() => {
  window.WebSocket = class {
    constructor() { window.socket = this; setTimeout(() => this.onopen && this.onopen(), 0); }
    send() {}
    close() {}
  };
  window.push = (job) => window.socket.onmessage({ data: JSON.stringify(job) });
}"""


def snapshot(status: str, progress: float, metrics=()) -> dict:
    return {"id": 7, "status": status, "progress": progress, "message": "", "metrics": list(metrics),
            "result": None, "error": "", "worker": "w", "attempts": 1}  # fmt: skip


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"]
        )
        yield chromium.new_page()
        chromium.close()


def load(page, first: dict) -> None:
    page.set_content(PAGE.replace("SNAPSHOT", json.dumps(first)))
    page.evaluate(FAKE_SOCKET)
    page.add_script_tag(content=(ROOT / "static/js/job.js").read_text())
    page.wait_for_function(
        "() => window.socket && document.getElementById('job-live').textContent === 'live'"
    )


def test_every_badge_of_the_job_follows_each_snapshot(page):
    load(page, snapshot("queued", 0.0))

    page.evaluate("(job) => window.push(job)", snapshot("running", 0.21, [{"step": 1, "loss": 0.5}]))
    assert page.inner_text("#job-percent") == "21%"
    assert page.inner_text("#job-status") == "Running" and page.inner_text("#heading-badge") == "Running"
    assert page.get_attribute("#heading-badge", "class") == "badge running"
    assert page.is_hidden("#job-charts-waiting"), "a step arrived: nothing to wait for"

    page.evaluate("(job) => window.push(job)", snapshot("failed", 0.5, [{"step": 1, "loss": 0.5}]))
    assert page.inner_text("#heading-badge") == "Failed"
    assert page.get_attribute("#heading-badge", "class") == "badge failed"


def test_a_finished_job_without_metrics_hides_its_chart_card_instead_of_waiting(page):
    load(page, snapshot("running", 0.5))
    assert page.is_visible("#job-charts-waiting")

    page.evaluate("(job) => window.push(job)", snapshot("succeeded", 1.0))

    assert page.is_hidden("#job-charts-card")
    assert page.inner_text("#heading-badge") == "Succeeded"
