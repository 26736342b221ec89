"""core.charts: SVG charts staff can read: a titled, labelled image with a value axis from 0 in
round steps, tick labels, the unit, and every text escaped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from core.charts import axis_for, bar_chart, line_chart, number_text

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output: it must be well-formed XML


def texts(root: ET.Element, cls: str | None = None) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text") if cls is None or t.get("class") == cls]


@pytest.mark.parametrize(
    ("highest", "step", "top"),
    [
        (812.4, 200, 1000),
        (0.37, 0.1, 0.4),
        (5, 1, 5),
        (9_870_000, 2_000_000, 10_000_000),
        (0, 1, 5),
    ],
)
def test_the_value_axis_runs_from_zero_in_round_steps(highest, step, top):
    axis = axis_for(highest)
    assert (axis.step, axis.top) == (pytest.approx(step), pytest.approx(top))
    assert axis.ticks[0] == 0 and axis.ticks[-1] == pytest.approx(top)


def test_tick_labels_group_thousands_and_keep_the_steps_decimals():
    assert number_text(1_250_000, step=250_000) == "1,250,000"
    assert number_text(0.5, step=0.25) == "0.50"
    assert number_text(2.5, step=2.5) == "2.5"


def test_a_bar_chart_has_a_title_axes_ticks_and_its_unit():
    root = parse(
        bar_chart(
            title="Load, last 7 days",
            unit="kWh",
            labels=["Mon 16", "Tue 17", "Wed 18"],
            values=[812.4, None, 300],
        )
    )
    assert root.get("role") == "img" and root.get("aria-label") == "Load, last 7 days"
    assert root.find(f"{SVG}title").text == "Load, last 7 days"
    assert len([line for line in root.iter(f"{SVG}line") if line.get("class") == "axis"]) == 2
    labels = texts(root)
    assert [t for t in labels if re.fullmatch(r"[\d,]+", t)][:6] == [
        "0",
        "200",
        "400",
        "600",
        "800",
        "1,000",
    ]
    assert texts(root, "unit") == ["kWh"]
    assert texts(root, "tick") == ["Mon 16", "Tue 17", "Wed 18"]
    # Two bars: a day without data is said, never drawn as zero.
    assert len(list(root.iter(f"{SVG}rect"))) == 2
    assert "no data" in texts(root, "value")


def test_bar_heights_are_proportional_to_the_values():
    root = parse(bar_chart(title="t", unit="u", labels=["a", "b"], values=[100, 50]))
    heights = [float(r.get("height")) for r in root.iter(f"{SVG}rect")]
    assert heights[0] == pytest.approx(2 * heights[1], rel=0.01)


def test_every_text_is_escaped():
    evil = '<script>alert("x")</script> & "quotes"'
    svg = bar_chart(title=evil, unit=evil, labels=[evil], values=[1], value_labels=[evil])
    assert "<script>" not in svg
    root = parse(svg)  # still well-formed
    assert root.get("aria-label") == evil
    assert evil in texts(root, "unit") and evil in texts(root, "tick")
    svg = line_chart(title=evil, unit=evil, values=[1, 2], ticks=[(0, evil)], description=evil)
    assert "<script>" not in svg
    assert parse(svg).find(f"{SVG}desc").text == evil


def test_a_line_chart_breaks_at_a_gap_and_marks_its_ticks():
    root = parse(
        line_chart(
            title="Hourly energy",
            unit="kWh per hour",
            values=[1, 2, None, None, 3, 4],
            ticks=[(0, "Mon 16"), (4, "Tue 17")],
        )
    )
    assert len(list(root.iter(f"{SVG}polyline"))) == 2
    assert texts(root, "tick") == ["Mon 16", "Tue 17"]
    assert texts(root, "unit") == ["kWh per hour"]


def test_a_chart_without_any_data_says_so():
    root = parse(line_chart(title="t", unit="kWh", values=[None, None], ticks=[]))
    assert "no data" in texts(root)
    assert not list(root.iter(f"{SVG}polyline"))
