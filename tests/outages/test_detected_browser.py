"""A planner in a real browser at 1366 px finds the outage the meters reported waiting for
confirmation, sets the restoration estimate in the utility's local time, and confirms it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import Notification
from outages.models import Outage
from tests.browser import assert_fits, needs_browser, screenshot, staff_login
from tests.outages.factories import saudi, staff_member, transformer_of
from tests.outages.test_detected_admin import detected_outage

pytestmark = [pytest.mark.django_db(transaction=True), needs_browser]


def test_a_planner_sets_the_estimate_and_confirms_a_detected_outage(live_server, browser_page):
    utility = saudi()
    outage = detected_outage([transformer_of(utility)], meters=3, silent=1)
    planner = staff_member(utility, "planner", first_name="Noura")
    page = browser_page
    zone = utility.zone
    estimate = (
        (timezone.now() + timedelta(hours=3)).astimezone(zone).replace(second=0, microsecond=0)
    )

    staff_login(page, live_server, planner, next_path="/admin/outages/outage/?detected=to_confirm")
    assert_fits(page)
    assert page.locator("#result_list tbody tr").count() == 1
    assert "Meters: to confirm" in page.locator("#result_list").inner_text()
    page.click(f"#result_list a:has-text('#{outage.pk}')")
    reports = page.locator("#meter-reports").inner_text()
    assert (
        reports == "4 meters: 3 reported their supply off, 0 back on, 3 still off; 1 sent no report"
    )
    screenshot(page, "detected-outage")
    assert_fits(page)

    page.click("#step-estimate")
    assert "Time zone: Asia/Riyadh" in page.locator("#step-form").inner_text()
    page.fill("#id_estimated_restoration_0", estimate.strftime("%Y-%m-%d"))
    page.fill("#id_estimated_restoration_1", estimate.strftime("%H:%M"))
    assert_fits(page)
    page.click("#step-submit")
    page.wait_for_load_state()
    assert (
        f"Estimate set to {estimate:%Y-%m-%d %H:%M} +03; consumers are told."
        in page.locator(".messagelist").inner_text()
    )

    page.click("#step-confirm")
    page.click("#step-submit")
    page.wait_for_load_state()
    assert "Confirmed: the outage stands as the meters reported it." in (
        page.locator(".messagelist").inner_text()
    )
    assert page.locator("#step-confirm").count() == 0
    screenshot(page, "detected-outage-confirmed")
    assert_fits(page)

    outage.refresh_from_db()
    assert (outage.planned_end, outage.version) == (estimate, 2)
    assert outage.confirmed_by == planner
    told = Notification.objects.filter(dedupe_key=f"outage:{outage.pk}:unplanned:v2")
    assert told.count() == 4  # one person on each of the four accounts
    assert Outage.objects.count() == 1
