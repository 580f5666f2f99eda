"""Charts in a real browser: the vendored Vega-Lite draws every spec of ml.charts, served by the site itself
(no CDN), at desktop and phone widths, with legends naming what is drawn and the numbers one click away."""

import numpy as np
import pytest

from marketplace.models import DatasetVersion
from ml import charts
from ml.tabular import Table, column_stats
from ml.unsupervised import isolation_forest, kmeans, pca, prepare
from tests.e2e.test_browser_mobile import log_in
from tests.factories import UserFactory
from tests.marketplace.test_analysis_pages import finished_job
from tests.ml.test_charts import overlapping_clusters
from tests.platform_site.home.listings import published

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def blob_table() -> Table:
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(centre, 0.5, (200, 2)) for centre in ([0, 0], [5, 5], [0, 6])])
    return Table(columns=["x", "y"], numeric={"x": X[:, 0], "y": X[:, 1]}, categorical={}, n_rows=600)


@pytest.fixture
def results(asgi_server):
    """alice's listing with column statistics, and her finished analyses: k-means with k chosen among
    candidates, k-means on seven overlapping clusters, PCA and the isolation forest."""
    alice = UserFactory(username="alice")
    dataset = published(alice, "Blobs", price_compute=10_000)
    table = blob_table()
    DatasetVersion.objects.filter(pk=dataset.current_version_id).update(stats=column_stats(table))
    prepared = prepare(table)
    outcomes = {
        "kmeans": kmeans(prepared),
        "overlapping": overlapping_clusters(),
        "pca": pca(prepared),
        "isolation_forest": isolation_forest(prepared),
    }
    jobs = {
        name: finished_job(alice, dataset, analysis="pca" if name == "pca" else name.replace("overlapping", "kmeans"),
                           result={"analysis": name, "result": result, "result_sha256": "ab" * 32, "entry_seq": 1})
        for name, result in outcomes.items()
    }  # fmt: skip
    return asgi_server, dataset, jobs, outcomes


def drawn_charts(page) -> list[str]:
    """Waits until every chart box on the page is drawn (or failed) and returns the ids of those drawn."""
    boxes = page.locator("[data-chart]")
    for i in range(boxes.count()):
        page.wait_for_function(
            "box => box.classList.contains('drawn') || box.classList.contains('failed')",
            arg=boxes.nth(i).element_handle(), timeout=20_000,
        )  # fmt: skip
    return page.eval_on_selector_all("[data-chart].drawn", "boxes => boxes.map(b => b.dataset.chart)")


def svg_texts(page, chart_id: str) -> list[str]:
    return page.eval_on_selector_all(
        f'[data-chart="{chart_id}-spec"] svg text', "nodes => nodes.map(n => n.textContent)"
    )


@pytest.mark.parametrize(
    "viewport", [{"width": 1366, "height": 900}, {"width": 390, "height": 844}], ids=["desktop", "phone"]
)
def test_every_chart_is_drawn_by_the_vendored_library_with_its_legend_and_table(results, browser, viewport):
    url, dataset, jobs, outcomes = results
    page = browser.new_page(viewport=viewport)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    log_in(page, url, "alice")

    page.goto(f"{url}/data/{dataset.pk}/analyses/{jobs['kmeans'].pk}/")
    assert drawn_charts(page) == ["clusters-spec", "clusters-apart-spec", "choosing-k-spec"]
    legend = svg_texts(page, "clusters")
    for cluster in outcomes["kmeans"]["clusters"]:
        assert f"Cluster {cluster['cluster']}" in legend, "every cluster is named in the legend"
    assert "Clusters (k)" in svg_texts(page, "choosing-k"), "Choosing k has a titled x axis"
    # The numbers are one click away, as a table.
    page.get_by_test_id("chart-choosing-k").locator(".chart-data summary").click()
    table = page.get_by_test_id("chart-choosing-k").locator("table")
    assert table.locator("tbody tr").count() == len(outcomes["kmeans"]["candidates"])

    page.goto(f"{url}/data/{dataset.pk}/analyses/{jobs['overlapping'].pk}/")
    assert drawn_charts(page)[:2] == ["clusters-spec", "clusters-apart-spec"]
    # Seven clusters drawn, seven legend entries, seven panels alone and seven centroid labels, none overprinted.
    assert sum(text.startswith("Cluster ") for text in svg_texts(page, "clusters")) == 7
    panels = page.locator(
        '[data-chart="clusters-apart-spec"] svg g.mark-symbol, [data-chart="clusters-apart-spec"] svg g.mark-circle'
    )
    assert panels.count() >= 7
    labels = page.eval_on_selector_all(
        '[data-chart="clusters-spec"] svg g.mark-text.role-mark text',
        "nodes => nodes.map(n => { const r = n.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })",
    )
    boxes = labels[len(labels) // 2 :]  # the halo layer, then the labels: the same boxes twice
    assert len(boxes) == 7
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], "labels overlap"

    for name, chart_id in (("pca", "explained-variance"), ("isolation_forest", "anomaly-scores")):
        page.goto(f"{url}/data/{dataset.pk}/analyses/{jobs[name].pk}/")
        assert drawn_charts(page) == [f"{chart_id}-spec"]
    assert any("flagged" in text for text in svg_texts(page, "anomaly-scores")), (
        "the threshold is in the legend"
    )

    page.goto(f"{url}/data/{dataset.pk}/")
    assert drawn_charts(page) == ["distributions-spec"]
    assert {"x", "y"} <= set(svg_texts(page, "distributions")), "one panel per numeric column, titled"

    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], (
        "nothing scrolls sideways"
    )
    assert not errors, errors
    assert all(u.startswith(url) for u in fetched), "everything comes from the site itself"
    assert any("/static/vendor/vega/vega-lite" in u for u in fetched)
    page.close()


def test_a_chart_falls_back_to_its_table_without_the_library(results, browser):
    url, dataset, jobs, outcomes = results
    page = browser.new_page()
    page.route("**/vendor/vega/**", lambda route: route.abort())
    log_in(page, url, "alice")
    page.goto(f"{url}/data/{dataset.pk}/analyses/{jobs['pca'].pk}/")
    figure = page.get_by_test_id("chart-explained-variance")
    figure.locator(".chart.failed").wait_for(timeout=10_000)
    assert "its numbers are in the table below" in figure.inner_text()
    figure.locator(".chart-data summary").click()
    rows = figure.locator("tbody tr")
    assert rows.count() == len(outcomes["pca"]["components"])
    assert charts.explained_variance(outcomes["pca"])["table"]["rows"][0][1] in rows.first.inner_text()
