"""Chart specs: a result's numbers in, Vega-Lite specs out. The one place that decides how the platform's
charts look, so that clusters, learning curves, rounds and portfolios read alike on every page.

A chart is a dict `{"id", "title", "description", "note", "spec", "table"}`:
- `spec` is a Vega-Lite 6 spec, drawn in the browser by the vendored library (static/vendor/vega, through
  static/js/charts.js): axes with ticks, tooltips and a legend that names exactly what is drawn;
- `table` (`{"columns": [...], "rows": [[...], ...]}`) holds the same numbers, the fallback for readers
  without JavaScript and for anyone who prefers figures to pictures.

Pure: JSON in, JSON out; no Django, no markup. Results store data only; pages call these when they render.
Specs that vary in width are given `"width": "container"` (charts.js fits faceted ones to their box).
"""

import math
from collections.abc import Iterable, Sequence
from typing import Any

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"  # an identifier; nothing is fetched

# Tableau 10: distinct in hue and lightness, and readable on white.
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)  # fmt: skip
NOISE = "#555555"
STATUS_COLOURS = {
    "queued": "#8fb3f0",
    "running": "#2f6fde",
    "succeeded": "#1f9d55",
    "failed": "#cc3340",
    "cancelled": "#c47f00",
}
_INK, _MUTED, _GRID = "#1f2328", "#57606a", "#e4e7eb"

CONFIG = {
    "font": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    "background": None,
    "view": {"stroke": None},
    "axis": {
        "labelFontSize": 12, "titleFontSize": 12, "titleFontWeight": 600, "labelColor": _MUTED,
        "titleColor": _INK, "gridColor": _GRID, "domainColor": "#8c959f", "tickColor": "#8c959f",
        "labelOverlap": True, "titlePadding": 8,
    },
    "legend": {
        "labelFontSize": 12, "titleFontSize": 12, "titleFontWeight": 600, "labelColor": _INK, "titleColor": _INK,
        "orient": "bottom", "direction": "horizontal", "columns": 3, "labelLimit": 240, "symbolSize": 110,
    },
    "header": {"labelFontSize": 12, "labelFontWeight": 600, "labelColor": _INK, "titleFontSize": 12},
    "title": {"fontSize": 14, "fontWeight": 600, "anchor": "start", "color": _INK, "offset": 10},
    "range": {"category": list(PALETTE)},
    "point": {"size": 60},
    "line": {"strokeWidth": 2},
}  # fmt: skip

# Small multiples: at most this many panels a row (charts.js uses fewer on a narrow screen).
PANEL_COLUMNS = 3


def chart(
    chart_id: str,
    title: str,
    spec: dict[str, Any],
    table: tuple[Sequence[str], Iterable[Sequence[Any]]],
    description: str = "",
    note: str = "",
) -> dict[str, Any]:
    """A chart: the spec with the shared look, plus the same numbers as a table. `description` says what it
    shows (for screen readers); `note`, shown under the title, how to read it."""
    columns, rows = table
    return {
        "id": chart_id,
        "title": title,
        "description": description,
        "note": note,
        "spec": {"$schema": SCHEMA, "config": CONFIG, "description": description or title, **spec},
        "table": {"columns": list(columns), "rows": [list(row) for row in rows]},
    }


def number(value: Any) -> float | None:
    """A finite number, or None for anything else (missing, text, NaN, booleans)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _fmt(value: Any, digits: int = 4) -> Any:
    """A number for a fallback table: rounded to `digits` significant digits; other values as they are."""
    value_ = number(value)
    if value_ is None:
        return "\u2014" if value is None or isinstance(value, float) else value  # missing, NaN or infinite
    return float(f"{value_:.{digits}g}") if isinstance(value_, float) else value_


def _tip(field: str, title: str, fmt: str | None = None, kind: str = "quantitative") -> dict[str, Any]:
    tip = {"field": field, "type": kind, "title": title}
    if fmt:
        tip["format"] = fmt
    return tip


# ------------------------------------------------------------------------------------------------ generic charts


def line_chart(
    chart_id: str,
    title: str,
    rows: list[dict[str, Any]],
    *,
    x: str,
    series: Sequence[str],
    x_title: str,
    y_title: str,
    x_integer: bool = False,
    description: str = "",
) -> dict[str, Any]:
    """Lines of several series over a shared x (portfolio value, round accuracy): one colour per series, named
    in the legend, a point on each value with its tooltip."""
    long = [
        {x: row.get(x), "series": name, "value": number(row.get(name))}
        for row in rows
        for name in series
        if number(row.get(name)) is not None and number(row.get(x)) is not None
    ]
    x_axis: dict[str, Any] = {"title": x_title}
    if x_integer:
        x_axis.update(tickMinStep=1, format="d")
    spec = {
        "width": "container",
        "height": 240,
        "data": {"values": long},
        "encoding": {
            "x": {"field": x, "type": "quantitative", "axis": x_axis, "scale": {"zero": False}},
            "y": {"field": "value", "type": "quantitative", "title": y_title, "scale": {"zero": False}},
            "color": {"field": "series", "type": "nominal", "title": None, "sort": list(series)},
        },
        "layer": [
            {"mark": {"type": "line"}},
            {
                "mark": {"type": "point", "filled": True},
                "encoding": {
                    "tooltip": [
                        _tip("series", "Series", kind="nominal"),
                        _tip(x, x_title),
                        _tip("value", y_title, ".4~g"),
                    ]
                },
            },
        ],
    }
    table_rows = [[_fmt(row.get(x)), *(_fmt(row.get(name)) for name in series)] for row in rows]
    return chart(chart_id, title, spec, ([x_title, *series], table_rows), description)


def learning_curve(
    metrics: list[dict[str, Any]], *, x: str = "step", x_title: str = "Step"
) -> dict[str, Any]:
    """Each metric of a training job (loss, accuracy, ...) over its steps or epochs, one small panel per metric
    with its own y axis. The data set is named `metrics`, in the long form of `metric_rows`, so that a live page
    can replace it as new steps arrive."""
    names = metric_names(metrics, x=x)
    spec = {
        "data": {"name": "metrics", "values": metric_rows(metrics, x=x)},
        "facet": {"field": "metric", "type": "nominal", "title": None, "sort": names},
        "columns": 2,
        "resolve": {"scale": {"y": "independent"}},
        "spec": {
            "width": "container",
            "height": 170,
            "encoding": {
                "x": {"field": x, "type": "quantitative", "title": x_title, "axis": {"tickMinStep": 1}},
                "y": {"field": "value", "type": "quantitative", "title": None, "scale": {"zero": False}},
            },
            "layer": [
                {"mark": {"type": "line", "color": PALETTE[0]}},
                {
                    "mark": {"type": "point", "filled": True, "color": PALETTE[0]},
                    "encoding": {
                        "tooltip": [
                            _tip("metric", "Metric", kind="nominal"),
                            _tip(x, x_title),
                            _tip("value", "Value", ".4~g"),
                        ]
                    },
                },
            ],
        },
    }
    rows = [[_fmt(m.get(x, i + 1)), *(_fmt(m.get(name)) for name in names)] for i, m in enumerate(metrics)]
    return chart(
        "learning-curve", "Learning curve", spec, ([x_title, *names], rows), "each metric over the steps"
    )


def metric_names(metrics: list[dict[str, Any]], *, x: str = "step") -> list[str]:
    """The metrics reported, in order of first appearance."""
    names: list[str] = []
    for m in metrics:
        for name, value in m.items():
            if name != x and name not in names and number(value) is not None:
                names.append(name)
    return names


def metric_rows(metrics: list[dict[str, Any]], *, x: str = "step") -> list[dict[str, Any]]:
    """`[{"step": 1, "loss": 0.7, "accuracy": 0.5}, ...]` in long form: one row per step and metric (a step
    that names no x is numbered by its position). static/js/charts.js does the same for live updates."""
    return [
        {x: m.get(x, i + 1), "metric": name, "value": value}
        for i, m in enumerate(metrics)
        for name, value in m.items()
        if name != x and number(value) is not None
    ]


def histogram(
    chart_id: str,
    title: str,
    edges: Sequence[Any],
    counts: Sequence[Any],
    *,
    x_title: str,
    y_title: str = "Rows",
    threshold: float | None = None,
    threshold_label: str = "",
    suppressed_below: int | None = None,
    description: str = "",
) -> dict[str, Any]:
    """Bars over bins (`edges` one longer than `counts`); a bin whose count is None or 0 is drawn empty. An
    optional threshold is a dashed rule named in the legend."""
    bins = [
        {"start": number(lo), "end": number(hi), "rows": number(count) or 0}
        for lo, hi, count in zip(edges[:-1], edges[1:], counts, strict=False)
        if number(lo) is not None and number(hi) is not None
    ]
    bars: dict[str, Any] = {
        "mark": {"type": "bar", "color": PALETTE[0], "binSpacing": 1},
        "encoding": {
            "x": {"field": "start", "type": "quantitative", "bin": {"binned": True}, "title": x_title},
            "x2": {"field": "end"},
            "y": {"field": "rows", "type": "quantitative", "title": y_title},
            "tooltip": [
                _tip("start", "From", ".4~g"),
                _tip("end", "To", ".4~g"),
                _tip("rows", y_title, ",d"),
            ],
        },
    }
    layers: list[dict[str, Any]] = [bars]
    if number(threshold) is not None:
        layers.append(
            {
                "data": {"values": [{"threshold": threshold}]},
                "mark": {"type": "rule", "strokeDash": [5, 4], "strokeWidth": 2},
                "encoding": {
                    "x": {"field": "threshold", "type": "quantitative"},
                    "color": {"datum": threshold_label or "threshold", "type": "nominal",
                              "scale": {"range": [PALETTE[2]]}, "title": None},
                    "tooltip": [_tip("threshold", threshold_label or "Threshold", ".4~g")],
                },
            }
        )  # fmt: skip
    spec = {"width": "container", "height": 220, "data": {"values": bins}, "layer": layers}
    note = f"Bins of fewer than {suppressed_below} rows are drawn empty." if suppressed_below else ""
    rows = [[_fmt(b["start"]), _fmt(b["end"]), b["rows"]] for b in bins]
    return chart(chart_id, title, spec, (["From", "To", y_title], rows), description, note)


def stacked_bars(
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    *,
    x_title: str,
    y_title: str,
    colours: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Stacked bars, one per label, one colour per series (jobs per hour by status)."""
    names = [name for name, _ in series]
    values = [
        {"label": label, "series": name, "count": counts[i], "order": i}
        for name, counts in series
        for i, label in enumerate(labels)
        if counts[i]
    ]
    colour = {"field": "series", "type": "nominal", "title": None, "scale": {"domain": names}}
    if colours:
        colour["scale"]["range"] = [colours.get(name, NOISE) for name in names]
    spec = {
        "width": "container",
        "height": 180,
        "data": {"values": values},
        "mark": {"type": "bar"},
        "encoding": {
            "x": {"field": "label", "type": "ordinal", "title": x_title, "sort": list(labels),
                  "scale": {"domain": list(labels)}, "axis": {"labelAngle": 0}},
            "y": {"field": "count", "type": "quantitative", "title": y_title, "stack": True,
                  "axis": {"tickMinStep": 1, "format": "d"}},
            "color": colour,
            "order": {"field": "series", "sort": "ascending"},
            "tooltip": [_tip("label", x_title, kind="ordinal"), _tip("series", "Status", kind="nominal"),
                        _tip("count", y_title, ",d")],
        },
    }  # fmt: skip
    rows = [[label, *(counts[i] for _, counts in series)] for i, label in enumerate(labels)]
    return chart(chart_id, title, spec, ([x_title, *names], rows))


# ------------------------------------------------------------------------------------------------ the analyses


def _cluster_names(result: dict[str, Any]) -> list[tuple[str, str, int | None]]:
    """(name, colour, size) of each layer of the density grid: the clusters, then DBSCAN's noise."""
    clusters = [c for c in result.get("clusters") or [] if isinstance(c, dict)]
    out = []
    for i, cluster in enumerate(clusters):
        size = None if cluster.get("suppressed") else number(cluster.get("size"))
        out.append((f"Cluster {cluster.get('cluster', i)}", PALETTE[i % len(PALETTE)], size))
    if result.get("algorithm") == "dbscan":
        out.append(("Noise", NOISE, None if result.get("noise_suppressed") else number(result.get("noise"))))
    return out


def _centre(edges: Sequence[Any], i: int) -> float | None:
    lo, hi = number(edges[i]), number(edges[i + 1])
    return None if lo is None or hi is None else round((lo + hi) / 2, 6)


def _axis_title(grid: dict[str, Any], d: int) -> str:
    ratios = grid.get("explained_variance_ratio") or []
    ratio = number(ratios[d]) if d < len(ratios) else None
    name = f"PC{d + 1}"
    return f"{name} ({100 * ratio:.1f}% of variance)" if ratio is not None else name


def spread_labels(
    points: Sequence[tuple[float, float]],
    *,
    span: tuple[float, float, float, float],
    gap: tuple[float, float],
) -> list[tuple[float, float]]:
    """Positions for one short label per point, none overlapping another: each label starts up and to the right
    of its point and moves down, a label's height at a time, until it clears those placed before it.
    `span` is (x0, x1, y0, y1) of the plot and `gap` the label's (width, height) as shares of it."""
    x0, x1, y0, y1 = span
    w, h = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    placed: list[tuple[float, float]] = []
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(points)
    # Highest point first, so labels move down into the plot rather than off its top.
    for i in sorted(range(len(points)), key=lambda i: -points[i][1]):
        px, py = (points[i][0] - x0) / w, (points[i][1] - y0) / h
        lx, ly = min(px + 0.03, 1 - gap[0]), min(py + 0.045, 0.98)
        for _ in range(50):
            if all(abs(lx - qx) >= gap[0] or abs(ly - qy) >= gap[1] for qx, qy in placed):
                break
            ly -= gap[1]
            if ly < 0.02:  # the bottom is reached: start again at the top, one label's width to the right
                ly, lx = 0.98, min(lx + gap[0], 1 - gap[0])
        placed.append((lx, ly))
        out[i] = (x0 + lx * w, y0 + ly * h)
    return out


def clusters(result: dict[str, Any]) -> list[dict[str, Any]]:
    """A k-means or DBSCAN result drawn from its density grid (rows per cell of the first two principal
    components, suppressed cells already zero): every cluster on one plot, large clusters underneath and
    translucent, centroids labelled apart; then each cluster alone on the same axes."""
    grid = result.get("scatter") if isinstance(result.get("scatter"), dict) else {}
    counts = grid.get("counts") or []
    x_edges, y_edges = grid.get("x_edges") or [], grid.get("y_edges") or []
    layers = _cluster_names(result)
    cells: list[dict[str, Any]] = []
    shown: list[str] = []
    for (name, _, size), layer in zip(layers, counts, strict=False):
        for i, column in enumerate(layer):
            for j, count in enumerate(column):
                x, y = _centre(x_edges, i), _centre(y_edges, j)
                if number(count) and x is not None and y is not None:
                    # Larger clusters are drawn first (underneath): `depth` orders the marks.
                    cells.append({"cluster": name, "pc1": x, "pc2": y, "rows": count, "depth": -(size or 0)})
                    if name not in shown:
                        shown.append(name)
    if not cells:
        return []
    colour_of = {name: colour for name, colour, _ in layers}
    colour = {"field": "cluster", "type": "nominal", "title": None,
              "scale": {"domain": shown, "range": [colour_of[n] for n in shown]}}  # fmt: skip
    x_title, y_title = _axis_title(grid, 0), _axis_title(grid, 1)
    span = (number(x_edges[0]) or 0.0, number(x_edges[-1]) or 1.0, number(y_edges[0]) or 0.0,
            number(y_edges[-1]) or 1.0)  # fmt: skip
    position = {
        "x": {"field": "pc1", "type": "quantitative", "title": x_title, "scale": {"domain": list(span[:2])}},
        "y": {"field": "pc2", "type": "quantitative", "title": y_title, "scale": {"domain": list(span[2:])}},
    }
    tooltip = [_tip("cluster", "Cluster", kind="nominal"), _tip("rows", "Rows in this cell", ",d"),
               _tip("pc1", "PC1", ".3~g"), _tip("pc2", "PC2", ".3~g")]  # fmt: skip
    dots = {
        "data": {"values": cells},
        "mark": {"type": "circle", "opacity": 0.55, "stroke": "#ffffff", "strokeWidth": 0.5},
        "encoding": {
            **position,
            "size": {"field": "rows", "type": "quantitative", "title": "Rows in a cell",
                     "scale": {"range": [12, 260]}, "legend": None},
            "color": colour,
            "order": {"field": "depth", "type": "quantitative"},
            "tooltip": tooltip,
        },
    }  # fmt: skip
    centroids = []
    for (name, _, _), point in zip(layers, grid.get("centroids") or [], strict=False):
        if isinstance(point, list) and len(point) >= 2 and name in shown:
            px, py = number(point[0]), number(point[1])
            if px is not None and py is not None:
                centroids.append(
                    {"cluster": name, "label": name.removeprefix("Cluster "), "pc1": px, "pc2": py}
                )
    spots = spread_labels([(c["pc1"], c["pc2"]) for c in centroids], span=span, gap=(0.05, 0.055))
    for c, (lx, ly) in zip(centroids, spots, strict=True):
        c.update(lx=round(lx, 6), ly=round(ly, 6))
    overview_layers: list[dict[str, Any]] = [dots]
    if centroids:
        overview_layers += [
            {
                "data": {"values": centroids},
                "mark": {"type": "rule", "color": _INK, "strokeWidth": 1, "opacity": 0.6},
                "encoding": {**position, "x2": {"field": "lx"}, "y2": {"field": "ly"}},
            },
            {
                "data": {"values": centroids},
                "mark": {"type": "point", "shape": "diamond", "filled": True, "size": 110, "color": "#ffffff",
                         "stroke": _INK, "strokeWidth": 2},
                "encoding": {**position, "tooltip": [_tip("cluster", "Centroid of", kind="nominal"),
                                                     _tip("pc1", "PC1", ".3~g"), _tip("pc2", "PC2", ".3~g")]},
            },
            {
                "data": {"values": centroids},
                "mark": {"type": "text", "fontSize": 12, "fontWeight": 700, "color": _INK, "align": "left",
                         "baseline": "middle", "stroke": "#ffffff", "strokeWidth": 3, "strokeOpacity": 0.9},
                "encoding": {"x": {"field": "lx", "type": "quantitative"},
                             "y": {"field": "ly", "type": "quantitative"}, "text": {"field": "label"}},
            },
            {
                "data": {"values": centroids},
                "mark": {"type": "text", "fontSize": 12, "fontWeight": 700, "color": _INK, "align": "left",
                         "baseline": "middle"},
                "encoding": {"x": {"field": "lx", "type": "quantitative"},
                             "y": {"field": "ly", "type": "quantitative"}, "text": {"field": "label"}},
            },
        ]  # fmt: skip
    name = "DBSCAN" if result.get("algorithm") == "dbscan" else f"k-means, k={result.get('k')}"
    note = (
        "Each dot is a cell of a grid; its size is the cluster's rows in that cell. Diamonds are centroids."
    )
    if number(grid.get("suppressed_cells")):
        note += f" {grid['suppressed_cells']:,} cells of too few rows are left out."
    overview = chart(
        "clusters",
        f"{name}: the clusters on the first two principal components",
        {"width": "container", "height": 360, "layer": overview_layers},
        (["Cluster", "Rows", "Centroid PC1", "Centroid PC2"],
         [[n, size if size is not None else "suppressed",
           *next(([_fmt(c["pc1"]), _fmt(c["pc2"])] for c in centroids if c["cluster"] == n), ["\u2014", "\u2014"])]
          for n, _, size in layers]),
        "every cluster's rows per grid cell over the first two principal components",
        note,
    )  # fmt: skip
    charts = [overview]
    if len(shown) > 1:
        charts.append(
            chart(
                "clusters-apart",
                "Each cluster alone, on the same axes",
                {
                    "data": {"values": cells},
                    "facet": {"field": "cluster", "type": "nominal", "title": None, "sort": shown},
                    "columns": PANEL_COLUMNS,
                    "spec": {
                        "width": "container",
                        "height": 150,
                        "mark": {"type": "circle", "opacity": 0.8},
                        "encoding": {
                            **{axis: {**enc, "title": None, "axis": {"tickCount": 4}}
                               for axis, enc in position.items()},
                            "size": {"field": "rows", "type": "quantitative", "scale": {"range": [6, 120]},
                                     "legend": None},
                            "color": {**colour, "legend": None},
                            "tooltip": tooltip,
                        },
                    },
                },
                (["Cluster", "Cells drawn", "Rows in them"],
                 [[n, sum(1 for c in cells if c["cluster"] == n), sum(c["rows"] for c in cells if c["cluster"] == n)]
                  for n in shown]),
                "one panel per cluster, sharing the axes of the plot above",
            )
        )  # fmt: skip
    return charts


def choosing_k(candidates: list[dict[str, Any]], chosen: Any) -> dict[str, Any] | None:
    """The silhouette of each k that k-means tried, as a line, with the chosen k marked."""
    points = [
        {"k": c.get("k"), "silhouette": number(c.get("silhouette")), "chosen": c.get("k") == chosen}
        for c in candidates
        if isinstance(c, dict) and number(c.get("k")) is not None
    ]
    scored = [p for p in points if p["silhouette"] is not None]
    if not scored:
        return None
    position = {
        "x": {"field": "k", "type": "quantitative", "title": "Clusters (k)",
              "axis": {"tickMinStep": 1, "format": "d"}, "scale": {"zero": False}},
        "y": {"field": "silhouette", "type": "quantitative", "title": "Silhouette (higher is better)",
              "scale": {"zero": False}},
    }  # fmt: skip
    tooltip = [_tip("k", "k", "d"), _tip("silhouette", "Silhouette", ".4f")]
    spec = {
        "width": "container",
        "height": 200,
        "data": {"values": scored},
        "encoding": position,
        "layer": [
            {"mark": {"type": "line", "color": PALETTE[0]}},
            {"mark": {"type": "point", "filled": True, "color": PALETTE[0], "size": 60},
             "encoding": {"tooltip": tooltip}},
            {"transform": [{"filter": "datum.chosen"}],
             "mark": {"type": "point", "filled": True, "size": 170, "shape": "diamond"},
             "encoding": {"color": {"datum": "chosen k", "type": "nominal", "title": None,
                                    "scale": {"range": [PALETTE[2]]}}, "tooltip": tooltip}},
            {"transform": [{"filter": "datum.chosen"}],
             "mark": {"type": "text", "dy": -14, "fontSize": 12, "fontWeight": 700, "color": PALETTE[2]},
             "encoding": {"text": {"field": "k", "type": "quantitative", "format": "d"}}},
        ],
    }  # fmt: skip
    rows = [[p["k"], _fmt(p["silhouette"]), "chosen" if p["chosen"] else ""] for p in points]
    return chart(
        "choosing-k", "Choosing k", spec, (["k", "Silhouette", ""], rows), "silhouette for each k tried"
    )


def explained_variance(result: dict[str, Any]) -> dict[str, Any] | None:
    """PCA: each component's share of the variance as a bar, and the running total as a line."""
    names = list(result.get("components") or [])
    ratios = list(result.get("explained_variance_ratio") or [])
    totals = list(result.get("cumulative") or [])
    values = [
        {"component": name, "share": number(r), "cumulative": number(t)}
        for name, r, t in zip(names, ratios, totals, strict=False)
        if number(r) is not None
    ]
    if not values:
        return None
    x = {
        "field": "component",
        "type": "ordinal",
        "title": "Component",
        "sort": names,
        "axis": {"labelAngle": 0},
    }
    y_axis = {"format": ".0%"}
    series = {"type": "nominal", "title": None, "scale": {"domain": ["each component", "cumulative"],
                                                         "range": [PALETTE[0], PALETTE[1]]}}  # fmt: skip
    spec = {
        "width": "container",
        "height": 240,
        "data": {"values": values},
        "encoding": {"x": x},
        "layer": [
            {"mark": {"type": "bar"},
             "encoding": {"y": {"field": "share", "type": "quantitative", "title": "Share of variance",
                                "axis": y_axis, "scale": {"domain": [0, 1]}},
                          "color": {**series, "datum": "each component"},
                          "tooltip": [_tip("component", "Component", kind="ordinal"),
                                      _tip("share", "Share", ".1%"), _tip("cumulative", "Cumulative", ".1%")]}},
            {"mark": {"type": "line", "point": True},
             "encoding": {"y": {"field": "cumulative", "type": "quantitative"},
                          "color": {**series, "datum": "cumulative"},
                          "tooltip": [_tip("component", "Component", kind="ordinal"),
                                      _tip("cumulative", "Cumulative", ".1%")]}},
        ],
    }  # fmt: skip
    rows = [[v["component"], _percent(v["share"]), _percent(v["cumulative"])] for v in values]
    return chart("explained-variance", "PCA: explained variance", spec,
                 (["Component", "Share of variance", "Cumulative"], rows))  # fmt: skip


def _percent(value: float | None) -> str:
    return "\u2014" if value is None else f"{100 * value:.1f}%"


def anomaly_scores(result: dict[str, Any]) -> dict[str, Any] | None:
    """The isolation forest's score histogram with the flagging threshold."""
    edges, counts = result.get("bins") or [], result.get("counts") or []
    if len(edges) < 2 or not counts:
        return None
    share = number(result.get("share_flagged"))
    label = "threshold" + (f" ({100 * share:.1f}% flagged)" if share is not None else "")
    return histogram(
        "anomaly-scores",
        "Isolation forest: anomaly scores",
        edges,
        counts,
        x_title="Anomaly score (higher is more isolated)",
        threshold=number(result.get("threshold")),
        threshold_label=label,
        suppressed_below=result.get("min_count") if number(result.get("suppressed_bins")) else None,
        description="rows per anomaly score bin, and the threshold above which rows are flagged",
    )


def distributions(columns: list[dict[str, Any]], *, min_count: int | None = None) -> dict[str, Any] | None:
    """One small histogram per numeric column (from its statistics' `histogram`, whose bins of too few rows are
    already empty), each with its own x axis."""
    values = []
    names = []
    for column in columns:
        hist = column.get("histogram") if isinstance(column, dict) else None
        if column.get("type") != "numeric" or not isinstance(hist, dict):
            continue
        edges, counts = hist.get("edges") or [], hist.get("counts") or []
        for lo, hi, count in zip(edges[:-1], edges[1:], counts, strict=False):
            if number(lo) is not None and number(hi) is not None:
                values.append({"column": column["name"], "start": lo, "end": hi, "rows": number(count) or 0})
        if column["name"] not in names:
            names.append(column["name"])
    if not values:
        return None
    note = f"Bins of fewer than {min_count} rows are drawn empty. " if min_count else ""
    note += "The few values beyond each range are counted in its end bins."
    spec = {
        "data": {"values": values},
        "facet": {"field": "column", "type": "nominal", "title": None, "sort": names},
        "columns": PANEL_COLUMNS,
        "resolve": {"scale": {"x": "independent", "y": "independent"}},
        "spec": {
            "width": "container",
            "height": 90,
            "mark": {"type": "bar", "color": PALETTE[0], "binSpacing": 1},
            "encoding": {
                "x": {"field": "start", "type": "quantitative", "bin": {"binned": True}, "title": None,
                      "axis": {"tickCount": 3, "format": "~s"}},
                "x2": {"field": "end"},
                "y": {"field": "rows", "type": "quantitative", "title": None, "axis": {"tickCount": 3}},
                "tooltip": [_tip("column", "Column", kind="nominal"), _tip("start", "From", ".4~g"),
                            _tip("end", "To", ".4~g"), _tip("rows", "Rows", ",d")],
            },
        },
    }  # fmt: skip
    rows = [[v["column"], _fmt(v["start"]), _fmt(v["end"]), v["rows"]] for v in values]
    return chart("distributions", "Distributions", spec, (["Column", "From", "To", "Rows"], rows),
                 "a histogram of each numeric column", note)  # fmt: skip


# ------------------------------------------------------------------------------------------------ supervised models


def confusion_matrix(matrix: list[list[Any]], classes: Sequence[Any]) -> dict[str, Any] | None:
    """Rows are true classes, columns predicted ones: a heatmap with each cell's count written in it."""
    names = [str(c) for c in classes]
    cells = [
        {"actual": names[i], "predicted": names[j], "rows": number(count) or 0}
        for i, row in enumerate(matrix[: len(names)])
        if isinstance(row, list)
        for j, count in enumerate(row[: len(names)])
    ]
    if not cells:
        return None
    side = {"type": "nominal", "sort": names, "axis": {"labelAngle": 0}}
    spec = {
        "width": "container",
        "height": max(140, 44 * len(names)),
        "data": {"values": cells},
        "encoding": {
            "x": {"field": "predicted", "title": "Predicted", **side},
            "y": {"field": "actual", "title": "Actual", **side},
        },
        "layer": [
            {"mark": {"type": "rect"},
             "encoding": {"color": {"field": "rows", "type": "quantitative", "title": "Rows",
                                    "scale": {"scheme": "blues"}, "legend": {"orient": "right", "direction": "vertical"}},
                          "tooltip": [_tip("actual", "Actual", kind="nominal"),
                                      _tip("predicted", "Predicted", kind="nominal"), _tip("rows", "Rows", ",d")]}},
            {"mark": {"type": "text", "fontSize": 13, "fontWeight": 600},
             "encoding": {"text": {"field": "rows", "type": "quantitative", "format": ",d"},
                          "color": {"condition": {"test": "datum.rows > 0", "value": _INK}, "value": _MUTED}}},
        ],
    }  # fmt: skip
    rows = [
        [names[i], *(number(c) or 0 for c in row[: len(names)])] for i, row in enumerate(matrix[: len(names)])
    ]
    return chart("confusion-matrix", "Confusion matrix (held-out rows)", spec, (["Actual \\ predicted", *names], rows),
                 "counts of held-out rows by actual and predicted class")  # fmt: skip


def calibration(result: dict[str, Any]) -> dict[str, Any] | None:
    """A reliability diagram: the observed frequency against the mean predicted probability per bin, with the
    diagonal of perfect calibration; a point's size is its rows."""
    bins = [
        b for b in result.get("bins") or []
        if isinstance(b, dict) and number(b.get("mean_predicted")) is not None and number(b.get("observed")) is not None
    ]  # fmt: skip
    if not bins:
        return None
    unit = {"type": "quantitative", "scale": {"domain": [0, 1]}, "axis": {"format": ".0%"}}
    kind = result.get("probability_of") or "positive class"
    spec = {
        "width": "container",
        "height": 260,
        "layer": [
            {"data": {"values": [{"p": 0, "o": 0}, {"p": 1, "o": 1}]},
             "mark": {"type": "line", "strokeDash": [4, 4], "strokeWidth": 1},
             "encoding": {"x": {"field": "p", **unit, "title": f"Mean predicted probability ({kind})"},
                          "y": {"field": "o", **unit, "title": "Observed frequency"},
                          "color": {"datum": "perfectly calibrated", "type": "nominal", "title": None,
                                    "scale": {"domain": ["perfectly calibrated", "this model"],
                                              "range": [_MUTED, PALETTE[0]]}}}},
            {"data": {"values": bins},
             "mark": {"type": "line", "point": {"filled": True}},
             "encoding": {"x": {"field": "mean_predicted", **unit}, "y": {"field": "observed", **unit},
                          "color": {"datum": "this model", "type": "nominal"},
                          "tooltip": [_tip("low", "Bin from", ".0%"), _tip("high", "to", ".0%"),
                                      _tip("mean_predicted", "Mean predicted", ".1%"),
                                      _tip("observed", "Observed", ".1%"), _tip("count", "Rows", ",d")]}},
        ],
    }  # fmt: skip
    ece = number(result.get("ece"))
    rows = [[_percent(b.get("low")), _percent(b.get("high")), _percent(b["mean_predicted"]),
             _percent(b["observed"]), b.get("count")] for b in bins]  # fmt: skip
    note = f"Expected calibration error: {100 * ece:.1f} points." if ece is not None else ""
    return chart("calibration", "Calibration", spec,
                 (["Bin from", "To", "Mean predicted", "Observed", "Rows"], rows),
                 "observed frequency against predicted probability", note)  # fmt: skip


def lineage(nodes: list[dict[str, Any]], edges: list[tuple[str, str, str]]) -> dict[str, Any] | None:
    """A model's family tree as a layered graph: `nodes` are {"id", "label", "kind" ("model" | "dataset"),
    "depth" (0 for the model shown, 1 for its parents, ...)}, `edges` (child id, parent id, relation). Ancestors
    sit to the left, one column per generation, so the graph reads left to right like its history."""
    if len(nodes) < 2:
        return None
    depth = max(int(n["depth"]) for n in nodes)
    by_depth: dict[int, list[dict[str, Any]]] = {}
    for node in nodes:
        by_depth.setdefault(int(node["depth"]), []).append(node)
    place = {}
    for d, members in by_depth.items():
        for i, node in enumerate(sorted(members, key=lambda n: (n["kind"], n["label"]))):
            place[node["id"]] = (depth - d, (i + 1) / (len(members) + 1))
    points = [{"id": n["id"], "label": n["label"], "kind": n["kind"], "x": place[n["id"]][0],
               "y": place[n["id"]][1], "url": n.get("url", "")} for n in nodes]  # fmt: skip
    links = [
        {"x": place[parent][0], "y": place[parent][1], "x2": place[child][0], "y2": place[child][1],
         "relation": relation.replace("_", " ")}
        for child, parent, relation in edges
        if child in place and parent in place
    ]  # fmt: skip
    position = {"x": {"field": "x", "type": "quantitative", "axis": None, "scale": {"domain": [-0.3, depth + 0.6]}},
                "y": {"field": "y", "type": "quantitative", "axis": None, "scale": {"domain": [0, 1]}}}  # fmt: skip
    kinds = {"type": "nominal", "title": None, "scale": {"domain": ["model", "dataset"],
                                                         "range": [PALETTE[0], PALETTE[4]]}}  # fmt: skip
    spec = {
        "width": "container",
        "height": max(140, 60 * max(len(m) for m in by_depth.values())),
        "layer": [
            {"data": {"values": links}, "mark": {"type": "rule", "color": "#8c959f", "strokeWidth": 1.5},
             "encoding": {**position, "x2": {"field": "x2"}, "y2": {"field": "y2"},
                          "tooltip": [_tip("relation", "Relation", kind="nominal")]}},
            {"data": {"values": points},
             "mark": {"type": "point", "filled": True, "size": 220, "cursor": "pointer"},
             "encoding": {**position, "color": {"field": "kind", **kinds},
                          "shape": {"field": "kind", "type": "nominal", "legend": None,
                                    "scale": {"domain": ["model", "dataset"], "range": ["circle", "square"]}},
                          "href": {"field": "url"},
                          "tooltip": [_tip("label", "Name", kind="nominal"), _tip("kind", "Kind", kind="nominal")]}},
            # Labels above the nodes of even columns and below those of odd ones, so neighbours never overprint.
            {"data": {"values": points}, "transform": [{"filter": "datum.x % 2 == 0"}],
             "mark": {"type": "text", "dy": -16, "fontSize": 12, "limit": 160, "color": _INK},
             "encoding": {**position, "text": {"field": "label"}}},
            {"data": {"values": points}, "transform": [{"filter": "datum.x % 2 == 1"}],
             "mark": {"type": "text", "dy": 20, "fontSize": 12, "limit": 160, "color": _INK},
             "encoding": {**position, "text": {"field": "label"}}},
        ],
    }  # fmt: skip
    rows = [[n["label"], n["kind"], n["depth"]] for n in sorted(nodes, key=lambda n: n["depth"])]
    return chart("lineage", "Lineage", spec, (["Name", "Kind", "Generations back"], rows),
                 "the models and datasets this model was built from", "Ancestors are to the left; "
                 "a share of every payment to this model flows to them.")  # fmt: skip
