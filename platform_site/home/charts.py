"""Small charts drawn as SVG on the server: no JavaScript and no CDN needed to read them."""

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

COLORS = {
    "queued": "#8fb3f0",
    "running": "#2f6fde",
    "succeeded": "#1f9d55",
    "failed": "#cc3340",
    "cancelled": "#c47f00",
}


def stacked_bars_svg(
    *, labels: list[str], series: list[tuple[str, list[int]]], height: int = 180
) -> SafeString:
    """Stacked bars, one per label, one colour per series; the y axis is scaled to the tallest bar."""
    width, left, bottom, top = 720, 32, 22, 10
    n = max(len(labels), 1)
    totals = [sum(values[i] for _, values in series) for i in range(len(labels))]
    peak = max([*totals, 1])
    slot = (width - left) / n
    bar = max(slot * 0.7, 1)
    plot_h = height - bottom - top
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="jobs per hour by status">',
        f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width}" y2="{height - bottom}"/>',
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{peak}</text>',
        f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end">0</text>',
    ]
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bar) / 2
        y = height - bottom
        for name, values in series:
            h = values[i] / peak * plot_h
            if h > 0:
                y -= h
                color = COLORS.get(name, "#888")
                parts.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{color}">'
                    f"<title>{escape(label)} {escape(name)}: {values[i]}</title></rect>"
                )
        if i % max(n // 8, 1) == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - 6}" text-anchor="middle">{escape(label)}</text>'
            )
    parts.append("</svg>")
    legend = "".join(
        f'<span><i style="background:{COLORS.get(name, "#888")}"></i>{escape(name)}</span>'
        for name, _ in series
    )
    return mark_safe(f'{"".join(parts)}<div class="legend">{legend}</div>')  # noqa: S308  (every input escaped)
