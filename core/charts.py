"""Charts as server-rendered SVG: bars and lines with axes, tick labels, units and a title.

No script and nothing fetched from elsewhere: the admin runs in control rooms without internet,
and an SVG in the page prints and zooms like text. Every text put in a chart (title, labels, unit)
is escaped here, so callers may pass what staff or consumers typed.

    bar_chart(title="Load, last 7 days", unit="kWh", labels=["Mon 23", …], values=[812.4, …])
    line_chart(title="Hourly energy", unit="kWh", values=[0.4, None, …], ticks=[(0, "Mon 23"), …])

A value of None is "no data": a bar is not drawn (its label says so), a line breaks there. It is
never drawn as zero, so a gap in the readings never looks like a house using nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

# Room around the plot for the title, the axis' tick labels and the unit.
_TOP, _RIGHT, _BOTTOM, _LEFT = 34, 14, 40, 64
_FONT = 'font-family="system-ui, sans-serif"'
BAR_COLOUR = "#417690"  # the admin's own blue
PARTIAL_COLOUR = "#9cbdd0"


@dataclass(frozen=True)
class Axis:
    """A value axis from 0 to `top` in `step`s."""

    step: float
    top: float

    @property
    def ticks(self) -> list[float]:
        count = round(self.top / self.step)
        return [self.step * n for n in range(count + 1)]


def axis_for(highest: float, *, ticks: int = 5) -> Axis:
    """A value axis from 0 that holds `highest` in about `ticks` round steps (1, 2, 2.5 or 5
    times a power of ten), so tick labels read 0, 250, 500 … and never 0, 237.4, 474.8."""
    if not highest or highest <= 0 or not math.isfinite(highest):
        return Axis(step=1.0, top=float(ticks))
    rough = highest / ticks
    magnitude = 10 ** math.floor(math.log10(rough))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude * ticks >= highest)
    return Axis(step=step, top=step * math.ceil(highest / step - 1e-9))


def decimals_for(step: float) -> int:
    """The fewest decimals (up to 3) that write `step` exactly: 250 → 0, 2.5 → 1, 0.25 → 2."""
    return next((d for d in range(4) if abs(round(step, d) - step) < 1e-9), 3)


def number_text(value: float, *, step: float = 1.0) -> str:
    """A tick or value label: thousands grouped, with the decimals its axis' step needs."""
    return f"{value:,.{decimals_for(abs(step) or 1.0)}f}"


def _c(coordinate: float) -> str:
    """A coordinate to a tenth of a pixel (format_html escapes its arguments into text first)."""
    return f"{coordinate:.1f}"


def _svg(*, width: int, height: int, title: str, body: str, description: str = "") -> SafeString:
    desc = format_html("<desc>{}</desc>", description) if description else ""
    return format_html(
        '<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" '
        'viewBox="0 0 {} {}" role="img" aria-label="{}" style="max-width:100%;height:auto">'
        "<title>{}</title>{}{}</svg>",
        width,
        height,
        width,
        height,
        title,
        title,
        desc,
        mark_safe(body),  # noqa: S308 - every part below is built with format_html
    )


def _value_axis(axis: Axis, *, width: int, height: int, unit: str) -> str:
    """Grid lines and tick labels of the value axis, the axis lines, the unit above the ticks."""
    plot_h = height - _TOP - _BOTTOM
    parts = []
    for tick in axis.ticks:
        y = _TOP + plot_h - tick / axis.top * plot_h
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#e3e3e3"/>'
                '<text x="{}" y="{}" font-size="11" text-anchor="end" fill="#444" {}>{}</text>',
                _LEFT,
                width - _RIGHT,
                _c(y),
                _c(y),
                _LEFT - 6,
                _c(y + 4),
                mark_safe(_FONT),  # noqa: S308 - a constant
                number_text(tick, step=axis.step),
            )
        )
    parts.append(
        format_html(
            '<line class="axis" x1="{}" x2="{}" y1="{}" y2="{}" stroke="#666"/>'
            '<line class="axis" x1="{}" x2="{}" y1="{}" y2="{}" stroke="#666"/>'
            '<text class="unit" x="{}" y="{}" font-size="11" fill="#444" {}>{}</text>',
            _LEFT,
            _LEFT,
            _TOP,
            _TOP + plot_h,
            _LEFT,
            width - _RIGHT,
            _TOP + plot_h,
            _TOP + plot_h,
            4,
            _TOP - 8,
            mark_safe(_FONT),  # noqa: S308 - a constant
            unit,
        )
    )
    return "".join(parts)


def _title(title: str) -> str:
    return format_html(
        '<text x="{}" y="16" font-size="13" font-weight="600" fill="#222" {}>{}</text>',
        _LEFT,
        mark_safe(_FONT),  # noqa: S308 - a constant
        title,
    )


def bar_chart(
    *,
    title: str,
    unit: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    value_labels: Sequence[str] | None = None,
    partial: Sequence[bool] | None = None,
    description: str = "",
    width: int = 480,
    height: int = 240,
    no_data: str = "no data",
) -> SafeString:
    """Vertical bars, one per label, on a value axis from 0 in `unit`. `value_labels` are put
    above the bars (default: the value with the axis' decimals); a `partial` bar (today so far)
    is drawn lighter."""
    if len(labels) != len(values):
        raise ValueError("one label per value")
    known = [v for v in values if v is not None]
    axis = axis_for(max(known, default=0))
    plot_w, plot_h = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM
    slot = plot_w / max(len(values), 1)
    bar_w = slot * 0.64
    parts = [_title(title), _value_axis(axis, width=width, height=height, unit=unit)]
    for n, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = _LEFT + n * slot + (slot - bar_w) / 2
        centre = _LEFT + n * slot + slot / 2
        if value is None:
            above, bar = no_data, ""
            top = _TOP + plot_h
        else:
            h = max(0.0, value) / axis.top * plot_h
            top = _TOP + plot_h - h
            above = value_labels[n] if value_labels else number_text(value, step=axis.step / 10)
            colour = PARTIAL_COLOUR if partial and partial[n] else BAR_COLOUR
            bar = format_html(
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}">'
                "<title>{}: {} {}</title></rect>",
                _c(x),
                _c(top),
                _c(bar_w),
                _c(h),
                colour,
                label,
                above,
                unit,
            )
        parts.append(bar)
        parts.append(
            format_html(
                '<text class="value" x="{}" y="{}" font-size="10" text-anchor="middle" '
                'fill="#333" {}>{}</text>'
                '<text class="tick" x="{}" y="{}" font-size="11" text-anchor="middle" '
                'fill="#444" {}>{}</text>',
                _c(centre),
                _c(top - 4),
                mark_safe(_FONT),  # noqa: S308 - a constant
                above,
                _c(centre),
                _TOP + plot_h + 16,
                mark_safe(_FONT),  # noqa: S308 - a constant
                label,
            )
        )
    return _svg(
        width=width, height=height, title=title, body="".join(parts), description=description
    )


def line_chart(
    *,
    title: str,
    unit: str,
    values: Sequence[float | None],
    ticks: Sequence[tuple[int, str]],
    description: str = "",
    width: int = 840,
    height: int = 220,
) -> SafeString:
    """A line over equally spaced points on a value axis from 0 in `unit`. `ticks` are (index,
    label) pairs marked on the time axis (local midnights, say). The line breaks at a None."""
    known = [v for v in values if v is not None]
    axis = axis_for(max(known, default=0))
    plot_w, plot_h = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM
    span = max(len(values) - 1, 1)

    def x_of(index: int) -> float:
        return _LEFT + index / span * plot_w

    parts = [_title(title), _value_axis(axis, width=width, height=height, unit=unit)]
    for index, label in ticks:
        x = x_of(index)
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#666"/>'
                '<text class="tick" x="{}" y="{}" font-size="11" fill="#444" {}>{}</text>',
                _c(x),
                _c(x),
                _TOP + plot_h,
                _TOP + plot_h + 5,
                _c(x + 3),
                _TOP + plot_h + 17,
                mark_safe(_FONT),  # noqa: S308 - a constant
                label,
            )
        )
    runs: list[list[str]] = [[]]
    for index, value in enumerate(values):
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        y = _TOP + plot_h - max(0.0, value) / axis.top * plot_h
        runs[-1].append(f"{x_of(index):.1f},{y:.1f}")
    for run in runs:
        if len(run) == 1:
            x, y = run[0].split(",")
            parts.append(
                format_html('<circle cx="{}" cy="{}" r="1.5" fill="{}"/>', x, y, BAR_COLOUR)
            )
        elif run:
            parts.append(
                format_html(
                    '<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>',
                    BAR_COLOUR,
                    " ".join(run),
                )
            )
    if not known:
        parts.append(
            format_html(
                '<text x="{}" y="{}" font-size="12" text-anchor="middle" fill="#666">{}</text>',
                _LEFT + plot_w / 2,
                _TOP + plot_h / 2,
                "no data",
            )
        )
    return _svg(
        width=width, height=height, title=title, body="".join(parts), description=description
    )
