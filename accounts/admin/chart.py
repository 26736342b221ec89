"""A bar chart as inline SVG, with both axes, their units and a label on every bar: the account
page's daily use. Plain SVG (no script, no library), so it prints and needs no network.

Stand-in until core/charts.py (being written for the console's dashboard) exists: the account page
should then draw with it, and this module goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from django.utils.html import escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 44


@dataclass(frozen=True)
class Bar:
    label: str  # under the bar, e.g. "Tue 01"
    value: Decimal | None  # None: no reading that day (drawn as a gap, said in the title)
    title: str  # the bar's tooltip: the exact figure with its unit


def _nice_top(largest: Decimal) -> Decimal:
    """A round top for the value axis: 1, 2 or 5 times a power of ten, at or above `largest`."""
    if largest <= 0:
        return Decimal(1)
    exponent = largest.adjusted()
    for step in (1, 2, 5, 10):
        top = Decimal(step).scaleb(exponent)
        if top >= largest:
            return top
    return Decimal(10).scaleb(exponent)  # pragma: no cover - 10 always suffices


def bar_chart_svg(*, bars: list[Bar], unit: str, caption: str) -> str:
    """The chart as an <svg> element: a value axis in `unit` with five ticks, one bar per entry."""
    values = [bar.value for bar in bars if bar.value is not None]
    top = _nice_top(max(values, default=Decimal(0)))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" style="max-width:{WIDTH}px" role="img" aria-label="{escape(caption)}" '
        'class="usage-chart" font-family="sans-serif" font-size="11">',
        f"<title>{escape(caption)}</title>",
    ]
    for n in range(6):
        tick = top * n / 5
        y = TOP + plot_h - plot_h * n / 5
        text = f"{tick.quantize(Decimal('0.1'), rounding=ROUND_CEILING).normalize():f}"
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#444">{text}</text>'
        )
    parts.append(
        f'<text transform="translate(14,{TOP + plot_h / 2:.0f}) rotate(-90)" text-anchor="middle" '
        f'fill="#222">{escape(unit)}</text>'
    )
    slot = plot_w / max(len(bars), 1)
    for i, bar in enumerate(bars):
        x = LEFT + i * slot
        if bar.value is not None and bar.value > 0:
            h = float(plot_h * bar.value / top)
            parts.append(
                f'<rect x="{x + slot * 0.15:.1f}" y="{TOP + plot_h - h:.1f}" '
                f'width="{slot * 0.7:.1f}" height="{h:.1f}" fill="#417690">'
                f"<title>{escape(bar.title)}</title></rect>"
            )
        elif bar.value is None:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{TOP + plot_h - 4}" text-anchor="middle" '
                f'fill="#999"><title>{escape(bar.title)}</title>–</text>'
            )
        parts.append(
            f'<text x="{x + slot / 2:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" '
            f'fill="#444">{escape(bar.label)}</text>'
        )
    parts.append(
        f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#222"/>'
        f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" '
        'stroke="#222"/>'
        f'<text x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 6}" text-anchor="middle" fill="#222">'
        f"{escape(caption)}</text>"
    )
    parts.append("</svg>")
    return "".join(parts)
