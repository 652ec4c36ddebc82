"""Charts drawn on the server as inline SVG: no JavaScript chart library, nothing loaded from elsewhere.

The SVG is accessible on its own: role="img", a <title> and a <desc> that states every bar's count, and
a <title> per bar (shown on hover). Every text that goes into it is escaped.
"""

from collections.abc import Sequence
from typing import Any

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 52, 20, 24, 56


def number(value: float) -> str:
    """Axis numbers: short, without trailing zeros."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.2f}".rstrip("0").rstrip(".")


def histogram_svg(
    bins: Sequence[dict[str, Any]],
    *,
    chart_id: str,
    title: str,
    x_label: str,
    threshold: float | None = None,
    threshold_label: str = "",
) -> SafeString:
    """A histogram of `bins` ({"from", "to", "count"}), with an optional dashed threshold line."""
    if not bins:
        return mark_safe("")
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    low, high = float(bins[0]["from"]), float(bins[-1]["to"])
    span = (high - low) or 1.0
    peak = max(int(b["count"]) for b in bins) or 1
    total = sum(int(b["count"]) for b in bins)

    def x_at(value: float) -> float:
        return LEFT + (value - low) / span * plot_width

    def y_at(count: float) -> float:
        return TOP + plot_height - count / peak * plot_height

    parts: list[str] = []
    # Grid and y-axis ticks: 0, half, peak.
    for count in sorted({0, peak // 2, peak}):
        y = y_at(count)
        parts.append(
            format_html(
                '<line class="grid" x1="{}" y1="{}" x2="{}" y2="{}"/>'
                '<text class="tick" x="{}" y="{}" text-anchor="end" dominant-baseline="middle">{}</text>',
                LEFT,
                f"{y:.1f}",
                WIDTH - RIGHT,
                f"{y:.1f}",
                LEFT - 6,
                f"{y:.1f}",
                count,
            )
        )
    step = max(1, len(bins) // 5)
    for index, bin_ in enumerate(bins):
        start, end, count = float(bin_["from"]), float(bin_["to"]), int(bin_["count"])
        x0, x1 = x_at(start), x_at(end)
        parts.append(
            format_html(
                '<rect class="bar" x="{}" y="{}" width="{}" height="{}"><title>{} to {}: {} record{}</title></rect>',
                f"{x0 + 1:.1f}",
                f"{y_at(count):.1f}",
                f"{max(0.0, x1 - x0 - 2):.1f}",
                f"{TOP + plot_height - y_at(count):.1f}",
                number(start),
                number(end),
                count,
                "" if count == 1 else "s",
            )
        )
        if index % step == 0:
            parts.append(_x_tick(x0, number(start), TOP + plot_height))
    parts.append(_x_tick(x_at(high), number(high), TOP + plot_height))
    if threshold is not None and low <= threshold <= high:
        x = x_at(threshold)
        parts.append(
            format_html(
                '<line class="threshold" x1="{}" y1="{}" x2="{}" y2="{}"/>'
                '<text class="tick" x="{}" y="{}" text-anchor="start">{}</text>',
                f"{x:.1f}",
                TOP,
                f"{x:.1f}",
                TOP + plot_height,
                f"{x + 4:.1f}",
                TOP + 10,
                threshold_label,
            )
        )
    description = (
        f"Histogram of {total} score{'' if total == 1 else 's'} from {number(low)} to {number(high)} "
        f"in {len(bins)} bins. "
        + "; ".join(f"{number(float(b['from']))} to {number(float(b['to']))}: {int(b['count'])}" for b in bins)
        + "."
    )
    return format_html(
        '<svg class="chart" id="{id}" viewBox="0 0 {w} {h}" width="100%" role="img" '
        'aria-labelledby="{id}-title {id}-desc" xmlns="http://www.w3.org/2000/svg" '
        'preserveAspectRatio="xMidYMid meet">'
        '<title id="{id}-title">{title}</title><desc id="{id}-desc">{desc}</desc>'
        '<line class="axis" x1="{left}" y1="{base}" x2="{right}" y2="{base}"/>'
        "{parts}"
        '<text class="label" x="{mid}" y="{label_y}" text-anchor="middle">{x_label}</text>'
        "</svg>",
        id=chart_id,
        w=WIDTH,
        h=HEIGHT,
        title=title,
        desc=description,
        left=LEFT,
        right=WIDTH - RIGHT,
        base=TOP + plot_height,
        parts=mark_safe("".join(parts)),  # noqa: S308 (each part built with format_html)
        mid=LEFT + plot_width / 2,
        label_y=HEIGHT - 12,
        x_label=x_label,
    )


def _x_tick(x: float, text: str, base: float) -> str:
    return format_html(
        '<line class="axis" x1="{}" y1="{}" x2="{}" y2="{}"/><text class="tick" x="{}" y="{}" '
        'text-anchor="middle">{}</text>',
        f"{x:.1f}",
        base,
        f"{x:.1f}",
        f"{base + 5:.1f}",
        f"{x:.1f}",
        f"{base + 20:.1f}",
        text,
    )
