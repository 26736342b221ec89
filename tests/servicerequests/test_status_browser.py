"""A service request's status change as staff make it, in Chromium at 1366 px: find the request by
the caller's consumer ID, open it, change its status with a note, and read the new entry on the
timeline in the utility's time with its zone."""

from __future__ import annotations

import re

import pytest

from notifications.models import Notification
from servicerequests.models import RequestEvent, ServiceRequest
from tests.browser import PASSWORD, assert_fits, needs_browser, screenshot, staff_login
from tests.servicerequests.factories import ServiceRequestFactory, consumer, saudi, support_staff

pytestmark = [pytest.mark.django_db(transaction=True), needs_browser]


def test_staff_move_a_request_with_a_note_and_see_it_on_the_timeline(browser_page, live_server):
    utility = saudi()  # Asia/Riyadh: +03 all year
    user, account = consumer(utility)
    request = ServiceRequestFactory(account=account, description="No power since the storm.")
    staff = support_staff(utility, username="noura")
    staff.set_password(PASSWORD)
    staff.save()
    page = browser_page
    staff_login(page, live_server, staff, next_path="/admin/servicerequests/servicerequest/")

    # The queue, searched by the consumer ID the caller reads from the bill.
    page.fill("#searchbar", account.consumer_id)
    page.press("#searchbar", "Enter")
    page.wait_for_load_state()
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} \+03", rows.first.inner_text())
    assert_fits(page)

    rows.first.locator("th a").first.click()
    page.wait_for_load_state()
    page.get_by_role("link", name="Change status").click()
    page.wait_for_load_state()
    status = page.locator("select[name=status]")
    # Nothing is chosen for staff: the browser shows "— choose —", never a rejection.
    assert status.evaluate("select => select.options[select.selectedIndex].text") == "— choose —"
    status.select_option("under_review")
    page.fill("textarea[name=text]", "A technician is looking at your street's cable.")
    page.click("input[type=submit]")
    page.wait_for_load_state()

    # Back on the request: the status and the timeline's new line, in Riyadh time with its zone.
    assert "Change status: done." in page.locator(".messagelist").inner_text()
    timeline = page.locator(".inline-group", has_text="Timeline")
    entry = timeline.locator("tr", has_text="A technician is looking at your street's cable.")
    assert entry.count() == 1
    line = entry.inner_text()
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} \+03", line), line
    assert "Submitted → Under review" in line
    screenshot(page, "service-request")
    assert_fits(page)

    request.refresh_from_db()
    assert request.status == ServiceRequest.Status.UNDER_REVIEW
    event = RequestEvent.objects.get(request=request, kind="status")
    assert event.to_status == "under_review" and event.actor == staff
    assert event.text == "A technician is looking at your street's cable."
    assert Notification.objects.filter(user=user, category="service_request_update").exists()
