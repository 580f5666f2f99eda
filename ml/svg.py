"""SVG charts of the unsupervised analyses' results (`ml.unsupervised`), drawn from their JSON alone.

Only aggregates reach a chart: the results carry no rows. Every text is escaped.
"""

import math
from xml.sax.saxutils import escape

import numpy as np

NOISE_COLOUR = "#404040"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")

_W, _H, _M = 480, 360, 48  # width, height, margin


def _svg(body: list[str], title: str, width: int = _W, height: int = _H) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">'
        f"<title>{escape(title)}</title>"
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>' + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "middle", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{escape(text)}</text>'


def scatter_svg(result: dict) -> str:
    """A k-means or DBSCAN density grid as an SVG: each cluster's cells in its colour, darker where denser
    (DBSCAN's noise in dark grey)."""
    grid = result["scatter"]
    legend = [
        f"cluster {c}: " + ("suppressed" if cluster["suppressed"] else f"{cluster['size']} rows")
        for c, cluster in enumerate(result["clusters"])
    ]
    colours = [PALETTE[c % len(PALETTE)] for c in range(len(legend))]
    if result["algorithm"] == "dbscan":
        legend.append("noise: " + ("suppressed" if result["noise_suppressed"] else f"{result['noise']} rows"))
        colours.append(NOISE_COLOUR)
        title = f"DBSCAN, {result['n_clusters']} clusters"
    else:
        title = f"k-means, k={result['k']}"
    bins = grid["bins"]
    size = 360
    width, height = size + 2 * _M + 90, size + 2 * _M
    cell = size / bins
    counts = np.asarray(grid["counts"], dtype=np.float64)
    top = math.log1p(counts.max()) if counts.size and counts.max() > 0 else 1.0
    body = [f'<rect x="{_M}" y="{_M}" width="{size}" height="{size}" fill="none" stroke="#999999"/>']
    for colour, cluster in zip(colours, counts, strict=True):
        for i, j in zip(*np.nonzero(cluster), strict=True):
            opacity = 0.15 + 0.85 * math.log1p(cluster[i, j]) / top
            x, y = _M + i * cell, _M + size - (j + 1) * cell  # y grows upward, as on a plot
            body.append(
                f'<rect x="{x:.2f}" y="{y:.2f}" width="{cell:.2f}" height="{cell:.2f}" '
                f'fill="{colour}" fill-opacity="{opacity:.3f}"/>'
            )
    x_edges, y_edges = grid["x_edges"], grid["y_edges"]
    for c, point in enumerate(grid["centroids"]):
        if point is None:
            continue
        x = _M + (point[0] - x_edges[0]) / (x_edges[-1] - x_edges[0]) * size
        y = _M + size - (point[1] - y_edges[0]) / (y_edges[-1] - y_edges[0]) * size
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="#ffffff" stroke="#000000" stroke-width="2"/>'
        )
        body.append(_text(x + 8, y - 6, str(c), "start", ' font-weight="bold"'))
    for c, (label, colour) in enumerate(zip(legend, colours, strict=True)):
        y = _M + 14 + 18 * c
        body.append(f'<rect x="{_M + size + 10}" y="{y - 9}" width="10" height="10" fill="{colour}"/>')
        body.append(_text(_M + size + 24, y, label, "start"))
    ratio = grid["explained_variance_ratio"]
    body.append(_text(_M + size / 2, height - 12, f"PC1 ({100 * (ratio[0] or 0):.1f}% of variance)"))
    body.append(
        _text(
            14,
            _M + size / 2,
            f"PC2 ({100 * (ratio[1] or 0):.1f}% of variance)",
            extra=f' transform="rotate(-90 14 {_M + size / 2:.1f})"',
        )
    )
    body.append(_text(_M + size / 2, 20, f"{title}: rows per cell by cluster"))
    return _svg(body, title, width, height)


def _bars(values: list[float], labels: list[str], title: str, y_label: str, ymax: float) -> list[str]:
    plot_w, plot_h = _W - 2 * _M, _H - 2 * _M
    step = plot_w / max(len(values), 1)
    body = [
        f'<line x1="{_M}" y1="{_M + plot_h}" x2="{_M + plot_w}" y2="{_M + plot_h}" stroke="#333333"/>',
        f'<line x1="{_M}" y1="{_M}" x2="{_M}" y2="{_M + plot_h}" stroke="#333333"/>',
        _text(_M - 4, _M + 4, f"{ymax:g}", "end"),
        _text(_M - 4, _M + plot_h + 4, "0", "end"),
        _text(_W / 2, 20, title),
        _text(14, _H / 2, y_label, extra=f' transform="rotate(-90 14 {_H / 2:.1f})"'),
    ]
    for i, (value, label) in enumerate(zip(values, labels, strict=True)):
        h = plot_h * min(max(value or 0.0, 0.0) / ymax, 1.0) if ymax > 0 else 0.0
        x = _M + i * step
        body.append(
            f'<rect x="{x + step * 0.1:.2f}" y="{_M + plot_h - h:.2f}" width="{step * 0.8:.2f}" '
            f'height="{h:.2f}" fill="{PALETTE[0]}"/>'
        )
        if label:
            body.append(_text(x + step / 2, _M + plot_h + 14, label))
    return body


def pca_svg(result: dict) -> str:
    """Bar chart of each component's explained variance ratio, with the cumulative ratio as a line."""
    ratios = result["explained_variance_ratio"]
    body = _bars(ratios, result["components"], "PCA: explained variance", "share of variance", 1.0)
    plot_w, plot_h = _W - 2 * _M, _H - 2 * _M
    step = plot_w / max(len(ratios), 1)
    points = " ".join(
        f"{_M + (i + 0.5) * step:.2f},{_M + plot_h * (1 - min(c or 0.0, 1.0)):.2f}"
        for i, c in enumerate(result["cumulative"])
    )
    body.append(f'<polyline points="{points}" fill="none" stroke="{PALETTE[1]}" stroke-width="2"/>')
    body.append(_text(_W - _M, _M - 6, "line: cumulative", "end"))
    return _svg(body, "PCA explained variance")


def histogram_svg(result: dict) -> str:
    """Histogram of isolation-forest anomaly scores with the flagging threshold as a dashed line."""
    counts, edges = result["counts"], result["bins"]
    ymax = float(max(counts)) if counts and max(counts) > 0 else 1.0
    every = max(len(counts) // 6, 1)
    labels = [f"{edges[i]:.2f}" if i % every == 0 else "" for i in range(len(counts))]
    body = _bars([float(c) for c in counts], labels, "Isolation forest: anomaly scores", "rows", ymax)
    threshold, lo, hi = result["threshold"], edges[0], edges[-1]
    if threshold is not None and lo <= threshold <= hi:
        x = _M + (threshold - lo) / (hi - lo) * (_W - 2 * _M)
        body.append(
            f'<line x1="{x:.2f}" y1="{_M}" x2="{x:.2f}" y2="{_H - _M}" stroke="{PALETTE[3]}" '
            f'stroke-dasharray="4 3" stroke-width="2"/>'
        )
        share = 100 * (result["share_flagged"] or 0)
        body.append(_text(x + 4, _M + 12, f"threshold: {share:.1f}% flagged", "start"))
    return _svg(body, "Isolation forest anomaly scores")
