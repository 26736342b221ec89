"""In Chromium at 1366 px: a staff member opens the dashboard, reads figures that agree with the
database, and a click on one opens its list showing that many rows; neither page is wider than
the window."""

from __future__ import annotations

import re

import pytest
import time_machine

from tests.browser import assert_fits, needs_browser, screenshot, staff_login
from tests.console.scenario import NOW, staff_of, two_utilities

pytestmark = [pytest.mark.django_db(transaction=True), needs_browser]


def test_a_staff_member_reads_the_dashboard_and_opens_a_figures_list(browser_page, live_server):
    page = browser_page
    with time_machine.travel(NOW, tick=True):
        kuwait, _ = two_utilities()
        staff_login(page, live_server, staff_of(kuwait.utility))

        section = page.locator('section[data-utility="kw-mew"]')
        section.wait_for()
        assert page.locator("section.console-utility").count() == 1  # their utility only
        shown = {}
        for figure in section.locator("[data-figure]").all():
            number = figure.locator(".console-number").inner_text()
            shown[figure.get_attribute("data-figure")] = int(number.replace(",", ""))
        for name, count in kuwait.figures.items():
            if name in shown:
                assert shown[name] == count, name
        assert len(shown) == 12  # 11, and the outages detected from meters (issue 17)
        assert section.locator("svg[aria-label='Load, last 7 days']").is_visible()
        assert section.locator("svg[aria-label='Top-ups by channel, last 30 days']").is_visible()
        assert_fits(page)
        screenshot(page, "dashboard")

        section.locator('[data-figure="meters_not_reporting"] a.console-number').click()
        page.wait_for_load_state()
        assert "/admin/meters/meter/" in page.url
        paginator = page.locator("#changelist .paginator").inner_text()
        assert re.match(r"\s*2 meters\b", paginator), paginator
        assert page.locator("#result_list tbody tr").count() == 2
        assert_fits(page)
        screenshot(page, "dashboard-meters-not-reporting")
