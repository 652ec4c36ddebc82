"""Bar charts drawn on the server as inline SVG for the auditor's home: no JavaScript chart library.

Accessible on its own (role="img", a <title>, a <desc> stating every bar's count, a <title> per bar); every text
that goes into it is escaped. Labels and counts only: the access log holds no clinical value.
"""

from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH = 640
BAR_HEIGHT, GAP, LABEL_WIDTH, TOP = 22, 6, 230, 8


def bars_svg(items: Sequence[tuple[str, int]], *, chart_id: str, title: str, unit: str = "event") -> SafeString:
    """Horizontal bars, one per (label, count), longest to scale; empty when there is nothing to draw."""
    if not items:
        return mark_safe("")
    peak = max(count for _label, count in items) or 1
    plot = WIDTH - LABEL_WIDTH - 60
    height = TOP * 2 + len(items) * (BAR_HEIGHT + GAP)

    def plural(count: int) -> str:
        return unit if count == 1 else f"{unit}s"

    bars = format_html_join(
        "",
        '<g class="row"><text class="label" x="{}" y="{}" text-anchor="end" dominant-baseline="middle">{}</text>'
        '<rect class="bar" x="{}" y="{}" width="{}" height="{}"><title>{}: {} {}</title></rect>'
        '<text class="count" x="{}" y="{}" dominant-baseline="middle">{}</text></g>',
        (
            (
                LABEL_WIDTH - 8,
                TOP + index * (BAR_HEIGHT + GAP) + BAR_HEIGHT / 2,
                label,
                LABEL_WIDTH,
                TOP + index * (BAR_HEIGHT + GAP),
                f"{max(1.0, count / peak * plot) if count else 0:.1f}",
                BAR_HEIGHT,
                label,
                count,
                plural(count),
                LABEL_WIDTH + (count / peak * plot) + 6,
                TOP + index * (BAR_HEIGHT + GAP) + BAR_HEIGHT / 2,
                count,
            )
            for index, (label, count) in enumerate(items)
        ),
    )
    description = "; ".join(f"{label}: {count} {plural(count)}" for label, count in items)
    return format_html(
        '<svg class="bars" id="{}" viewBox="0 0 {} {}" role="img" aria-labelledby="{}-title {}-desc">'
        '<title id="{}-title">{}</title><desc id="{}-desc">{}</desc>{}</svg>',
        chart_id,
        WIDTH,
        height,
        chart_id,
        chart_id,
        chart_id,
        title,
        chart_id,
        description,
        bars,
    )
