"""ml.charts: the specs that every page's charts are drawn from. Drawing them in a browser is tested in
tests/e2e/test_browser_charts.py; here, that each spec shows what the result holds, and nothing it does not."""

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ml import charts
from ml.tabular import Categorical, Table, column_stats
from ml.unsupervised import dbscan, isolation_forest, kmeans, pca, prepare
from tests.ml.test_unsupervised import blobs


def layers(spec):
    return spec.get("layer") or spec["spec"].get("layer") or [spec["spec"]]


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def well_formed(chart):
    """Every chart: JSON without NaN, the shared look, no markup anywhere, a table as wide as its header."""
    json.dumps(chart, allow_nan=False)
    assert chart["spec"]["$schema"] == charts.SCHEMA and chart["spec"]["config"] is charts.CONFIG
    assert not any("<" in text for text in strings(chart["spec"])), "specs carry data and words, never markup"
    columns = chart["table"]["columns"]
    assert columns and all(len(row) == len(columns) for row in chart["table"]["rows"])
    return chart


def overlapping_clusters():
    """Seven clusters, two big ones and five small ones drawn inside them: the case that hid clusters."""
    rng = np.random.default_rng(3)
    parts = [rng.normal([0, 0], 2.0, (400, 2)), rng.normal([6, 0], 2.0, (400, 2))]
    parts += [rng.normal(centre, 0.3, (60, 2)) for centre in ([0, 0], [1, 1], [6, 0], [5, 1], [3, 0])]
    X = np.vstack(parts)
    table = Table(
        columns=["a", "b"],
        numeric={"a": X[:, 0], "b": X[:, 1]},
        categorical={},
        n_rows=len(X),
        truncated=False,
    )
    return kmeans(prepare(table), k=7)


def test_every_cluster_is_drawn_in_its_own_colour_and_named_in_the_legend():
    result = overlapping_clusters()
    overview, apart = (well_formed(c) for c in charts.clusters(result))
    dots = overview["spec"]["layer"][0]
    drawn = {cell["cluster"] for cell in dots["data"]["values"]}
    shown = [f"Cluster {c['cluster']}" for c in result["clusters"] if not c["suppressed"]]
    assert drawn == set(shown) and len(shown) == 7
    scale = dots["encoding"]["color"]["scale"]
    assert scale["domain"] == shown, "the legend names exactly the clusters drawn"
    assert len(set(scale["range"])) == len(shown), "no two clusters share a colour"
    assert dots["mark"]["opacity"] < 1, "translucent, so that a cluster under another still shows"
    # Larger clusters are drawn first (underneath): the order channel sorts by depth, minus the size.
    sizes = {f"Cluster {c['cluster']}": c["size"] for c in result["clusters"]}
    assert dots["encoding"]["order"]["field"] == "depth"
    assert all(cell["depth"] == -sizes[cell["cluster"]] for cell in dots["data"]["values"])
    # And each cluster alone, one panel each, on the same axes as the overview.
    assert apart["spec"]["facet"]["field"] == "cluster" and apart["spec"]["facet"]["sort"] == shown
    assert apart["spec"]["spec"]["encoding"]["x"]["scale"] == dots["encoding"]["x"]["scale"]
    assert [row[0] for row in apart["table"]["rows"]] == shown


def test_centroid_labels_never_overprint():
    result = overlapping_clusters()
    overview = charts.clusters(result)[0]
    labels = overview["spec"]["layer"][-1]["data"]["values"]
    assert len(labels) == 7
    (x0, x1), (y0, y1) = (overview["spec"]["layer"][0]["encoding"][a]["scale"]["domain"] for a in ("x", "y"))
    spots = [((c["lx"] - x0) / (x1 - x0), (c["ly"] - y0) / (y1 - y0)) for c in labels]
    for i, (ax, ay) in enumerate(spots):
        for bx, by in spots[i + 1 :]:
            assert abs(ax - bx) >= 0.05 - 1e-9 or abs(ay - by) >= 0.055 - 1e-9


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=12))
def test_spread_labels_keeps_any_labels_apart_and_inside_the_plot(points):
    spots = charts.spread_labels(points, span=(0.0, 1.0, 0.0, 1.0), gap=(0.05, 0.055))
    assert len(spots) == len(points)
    for x, y in spots:
        assert 0 <= x <= 1 and 0 <= y <= 1
    for i, (ax, ay) in enumerate(spots):
        for bx, by in spots[i + 1 :]:
            assert abs(ax - bx) >= 0.05 - 1e-9 or abs(ay - by) >= 0.055 - 1e-9


def test_dbscan_noise_is_grey_and_named():
    table, _ = blobs()
    result = dbscan(prepare(table), eps=0.3, min_samples=5)
    result["scatter"]["counts"][-1][0][0] = 7  # a corner cell of noise dense enough to be shown
    overview = well_formed(charts.clusters(result)[0])
    scale = overview["spec"]["layer"][0]["encoding"]["color"]["scale"]
    assert scale["domain"][-1] == "Noise" and scale["range"][-1] == charts.NOISE
    assert "DBSCAN" in overview["title"]


def test_a_suppressed_cluster_is_not_in_the_legend_and_is_listed_as_suppressed():
    result = kmeans(prepare(blobs()[0]), k=3)
    result["clusters"][2] = {"cluster": 2, "suppressed": True}
    result["scatter"]["counts"][2] = [[0] * len(row) for row in result["scatter"]["counts"][2]]
    result["scatter"]["centroids"][2] = None
    overview = well_formed(charts.clusters(result)[0])
    assert "Cluster 2" not in overview["spec"]["layer"][0]["encoding"]["color"]["scale"]["domain"]
    assert ["Cluster 2", "suppressed", "\u2014", "\u2014"] in overview["table"]["rows"]


def test_choosing_k_is_a_line_over_every_candidate_with_the_chosen_one_marked():
    result = kmeans(prepare(blobs()[0]))
    chart = well_formed(charts.choosing_k(result["candidates"], result["k"]))
    values = chart["spec"]["data"]["values"]
    assert [v["k"] for v in values] == [c["k"] for c in result["candidates"]]
    assert [v["k"] for v in values if v["chosen"]] == [result["k"]]
    assert chart["spec"]["layer"][0]["mark"]["type"] == "line"
    assert charts.choosing_k([{"k": 2, "silhouette": None}], 2) is None


def test_pca_and_isolation_forest_charts_carry_their_numbers():
    prepared = prepare(blobs()[0])
    variance = well_formed(charts.explained_variance(pca(prepared)))
    assert [row[0] for row in variance["table"]["rows"]] == pca(prepared)["components"]
    forest = isolation_forest(prepared)
    scores = well_formed(charts.anomaly_scores(forest))
    bars = scores["spec"]["data"]["values"]
    assert [b["rows"] for b in bars] == forest["counts"]
    rule = scores["spec"]["layer"][1]
    assert rule["data"]["values"] == [{"threshold": forest["threshold"]}]
    assert "flagged" in rule["encoding"]["color"]["datum"], "the legend names the dashed line"


def test_learning_curve_in_long_form_one_panel_per_metric():
    metrics = [
        {"step": 1, "loss": 0.9, "accuracy": 0.5},
        {"step": 2, "loss": 0.5, "accuracy": float("nan")},
        {},
    ]
    chart = well_formed(charts.learning_curve(metrics))
    assert chart["spec"]["data"]["name"] == "metrics", "a live page replaces this data set by name"
    assert chart["spec"]["data"]["values"] == [
        {"step": 1, "metric": "loss", "value": 0.9},
        {"step": 1, "metric": "accuracy", "value": 0.5},
        {"step": 2, "metric": "loss", "value": 0.5},
    ]
    assert chart["spec"]["facet"]["sort"] == ["loss", "accuracy"]
    assert chart["table"]["rows"][1] == [2, 0.5, "\u2014"]
    assert well_formed(charts.learning_curve([]))["spec"]["data"]["values"] == []


def test_column_distributions_come_from_the_suppressed_histograms():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(50, 10, 300), [1e6]])  # one far outlier
    table = Table(
        columns=["income", "city"],
        numeric={"income": values},
        categorical={"city": Categorical.from_values(["a"] * 301)},
        n_rows=301,
        truncated=False,
    )
    stats = column_stats(table, min_count=5)
    hist = stats["columns"][0]["histogram"]
    assert all(c == 0 or c >= 5 for c in hist["counts"]), "no bin describes fewer than 5 rows"
    # Every row is counted once (the outlier in the last bin), except the at most 4 of each emptied bin.
    assert 301 - 4 * hist["suppressed"] <= sum(hist["counts"]) <= 301
    assert hist["edges"][-1] < 1e6, "the range ends at the 5th largest value, never at the outlier"
    chart = well_formed(charts.distributions(stats["columns"], min_count=5))
    assert {v["column"] for v in chart["spec"]["data"]["values"]} == {"income"}
    assert [v["rows"] for v in chart["spec"]["data"]["values"]] == hist["counts"]
    assert charts.distributions([{"name": "x", "type": "numeric", "histogram": None}]) is None


def test_stacked_bars_name_each_series_in_its_colour():
    chart = well_formed(
        charts.stacked_bars(
            "jobs", "Jobs", ["10:00", "11:00"], [("succeeded", [1, 0]), ("failed", [0, 2])],
            x_title="Hour", y_title="Jobs", colours=charts.STATUS_COLOURS,
        )
    )  # fmt: skip
    colour = chart["spec"]["encoding"]["color"]["scale"]
    assert colour == {"domain": ["succeeded", "failed"], "range": ["#1f9d55", "#cc3340"]}
    assert chart["table"]["rows"] == [["10:00", 1, 0], ["11:00", 0, 2]]


def test_results_of_any_shape_give_charts_or_none_never_an_error():
    for junk in ({}, {"scatter": "x"}, {"scatter": {"counts": [[[1]]], "x_edges": [0], "y_edges": [0]}},
                 {"clusters": [None, 3], "scatter": {}}):  # fmt: skip
        assert charts.clusters(junk) == []
    assert charts.explained_variance({"components": ["PC1"], "explained_variance_ratio": ["x"]}) is None
    assert charts.anomaly_scores({"bins": [0], "counts": []}) is None


def test_confusion_matrix_and_calibration_from_held_out_metrics():
    from ml import metrics

    y = np.array([0, 0, 1, 1, 1, 0])
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55], [0.7, 0.3], [0.3, 0.7]])
    matrix = well_formed(charts.confusion_matrix(metrics.confusion(y, proba), ["no", "yes"]))
    assert {(c["actual"], c["predicted"]): c["rows"] for c in matrix["spec"]["data"]["values"]} == {
        ("no", "no"): 2, ("no", "yes"): 1, ("yes", "no"): 1, ("yes", "yes"): 2,
    }  # fmt: skip
    assert matrix["table"]["rows"] == [["no", 2, 1], ["yes", 1, 2]]
    reliability = well_formed(charts.calibration(metrics.calibration(y, proba, bins=5)))
    drawn = reliability["spec"]["layer"][1]["data"]["values"]
    assert drawn and all(b["count"] > 0 for b in drawn), "empty bins are not drawn"
    assert "calibration error" in reliability["note"]
    assert charts.confusion_matrix([], []) is None and charts.calibration({"bins": []}) is None


def test_lineage_puts_ancestors_to_the_left_one_column_per_generation():
    nodes = [
        {"id": "m3", "label": "child", "kind": "model", "depth": 0},
        {"id": "m2", "label": "parent", "kind": "model", "depth": 1},
        {"id": "d1", "label": "data", "kind": "dataset", "depth": 1},
        {"id": "m1", "label": "grandparent", "kind": "model", "depth": 2},
    ]
    edges = [("m3", "m2", "fine_tuned"), ("m3", "d1", "trained_on"), ("m2", "m1", "distilled")]
    chart = well_formed(charts.lineage(nodes, edges))
    x = {p["id"]: p["x"] for p in chart["spec"]["layer"][1]["data"]["values"]}
    assert x["m1"] < x["m2"] == x["d1"] < x["m3"]
    assert len(chart["spec"]["layer"][0]["data"]["values"]) == 3
    assert charts.lineage(nodes[:1], []) is None, "a model without ancestors has no graph"
