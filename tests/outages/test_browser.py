"""The outage desk in a real browser at 1366 px: a planner picks a feeder in the grid tree, previews
the notice consumers will read (the place in their words, no equipment code), publishes it
(confirming a late notice), marks it started and restored."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import AuditEntry
from notifications.models import Notification
from outages.models import Compensation, Outage
from tests.accounts.factories import UtilityFactory
from tests.browser import assert_fits, needs_browser, screenshot, staff_login
from tests.outages.factories import (
    FeederFactory,
    TransformerFactory,
    consumer_on,
    saudi,
    staff_member,
)

pytestmark = [pytest.mark.django_db(transaction=True), needs_browser]


def test_a_planner_picks_a_feeder_in_the_tree_and_runs_the_outage(live_server, browser_page):
    utility = saudi()
    feeder = FeederFactory(
        area__utility=utility,
        area__name="Al Olaya",
        name="Feeder 7",
        code="F07",
        locality="Al Olaya, block 3",
        streets="streets 1–12",
    )
    first = TransformerFactory(feeder=feeder, name="Transformer 1", code="T0001")
    second = TransformerFactory(feeder=feeder, name="Transformer 2", code="T0002")
    for transformer in (first, first, second):
        consumer_on(transformer)
    # Another area of the utility, not chosen; another utility's grid, never offered.
    consumer_on(TransformerFactory(feeder__area__utility=utility, feeder__area__name="Al Malqa"))
    foreign = TransformerFactory(
        feeder__area__utility=UtilityFactory(name="Kuwait MEW"), feeder__area__name="Salmiya"
    )
    planner = staff_member(utility, "planner", first_name="Noura")
    page = browser_page
    zone = utility.zone
    # Tomorrow 09:00–13:00 local: less than the 48 hours' notice the utility promises.
    tomorrow = (timezone.now().astimezone(zone) + timedelta(days=1)).date()

    staff_login(page, live_server, planner, next_path="/admin/outages/outage/")
    assert_fits(page)
    page.click(".object-tools a.addlink")
    page.fill("#id_reason", "Feeder maintenance")
    page.fill("#id_planned_start_0", tomorrow.isoformat())
    page.fill("#id_planned_start_1", "09:00")
    page.fill("#id_planned_end_0", tomorrow.isoformat())
    page.fill("#id_planned_end_1", "13:00")

    tree = page.locator("#grid-tree")
    assert "Al Malqa" in tree.inner_text() and "Salmiya" not in tree.inner_text()
    assert tree.locator(f"input[name=feeders][value='{foreign.feeder.pk}']").count() == 0
    # The filter box finds the feeder by its locality and opens its branch.
    page.fill("#grid-tree-filter", "block 3")
    feeder_summary = page.locator(f"#grid-feeder-{feeder.pk} > details > summary")
    assert "Al Olaya, block 3: streets 1–12" in feeder_summary.inner_text()
    assert "3 accounts · 3 meters" in feeder_summary.inner_text()
    feeder_box = feeder_summary.locator("input[name=feeders]")
    assert tree.locator("summary:visible", has_text="Al Malqa").count() == 0
    feeder_box.check()
    assert page.locator("#grid-tree-total").inner_text() == "Ticked: 3 accounts · 3 meters"
    # Its transformers are covered by it: shown ticked, locked, not posted on their own.
    for transformer in (first, second):
        box = tree.locator(f"input[name=transformers][value='{transformer.pk}']")
        assert box.is_checked() and box.is_disabled()
    screenshot(page, "outage-form")
    assert_fits(page)
    page.click("input[name=_continue]")

    summary = page.locator("#affected-summary")
    assert summary.inner_text() == "3 meters, 3 consumer accounts, 3 people to notify"
    assert "Asia/Riyadh" in page.locator("#local-zone").inner_text()
    assert page.locator("#consumer-place-en").inner_text() == "Al Olaya, block 3: streets 1–12"
    outage = Outage.objects.get()
    assert list(outage.feeders.all()) == [feeder] and not outage.transformers.exists()

    page.click("#step-publish")
    assert page.locator("#affected-count").inner_text() == (
        "3 meters, 3 consumer accounts, 3 people to notify"
    )
    assert page.locator("#affected-meters tbody tr").count() == 3
    assert "09:00 +03" in page.locator("#outage-when").inner_text()
    assert "less than the 48 hours" in page.locator("#late-notice").inner_text()
    english = page.locator("#consumer-notice-en .consumer-notice-body").inner_text()
    assert english.startswith("Power will be off in Al Olaya, block 3: streets 1–12 from ")
    arabic = page.locator("#consumer-notice-ar .consumer-notice-body").inner_text()
    assert arabic.startswith("ستنقطع الكهرباء في Al Olaya, block 3: streets 1–12 من ")
    for notice in (english, arabic):
        for code in ("F07", "T0001", "Transformer", "Feeder"):
            assert code not in notice
    page.check("#id_confirm_late")
    screenshot(page, "outage-planning")
    assert_fits(page)
    page.click("#step-submit")
    page.get_by_text("Published. 3 meters affected; notices are on their way.").wait_for()
    # Shown in Riyadh time with its zone, not UTC (06:00).
    assert "09:00 +03 →" in page.locator(".field-local_times").inner_text()
    assert "Published" in page.locator(".field-status_badge").inner_text()
    assert "F07" in page.locator(".field-scope_text").inner_text()  # staff see the equipment
    assert_fits(page)

    two_hours_ago = timezone.now().astimezone(zone) - timedelta(hours=2)
    page.click("#step-start")
    page.fill("#id_at_0", two_hours_ago.date().isoformat())
    page.fill("#id_at_1", two_hours_ago.strftime("%H:%M"))
    page.click("#step-submit")
    page.get_by_text("Marked started.").wait_for()

    page.click("#step-restore")
    assert_fits(page)
    page.click("#step-submit")
    page.get_by_text("Marked restored; consumers are told power is back.").wait_for()
    assert "Restored" in page.locator(".field-status_badge").inner_text()
    assert page.locator("#step-restore").count() == 0

    outage.refresh_from_db()
    assert outage.status == Outage.Status.RESTORED and outage.late_notice
    assert outage.created_by == planner
    assert list(outage.events.values_list("action", flat=True)) == [
        "created",
        "published",
        "late_notice_confirmed",
        "started",
        "restored",
    ]
    for category in ("outage_planned", "outage_restored"):
        assert Notification.objects.filter(category=category).count() == 3
    body = Notification.objects.filter(category="outage_planned", language="en").first().body
    assert "Al Olaya, block 3: streets 1–12" in body and "F07" not in body
    assert Compensation.objects.filter(standard="notice").count() == 3
    assert set(AuditEntry.objects.values_list("action", flat=True)) >= {
        "add",
        "outage:publish",
        "outage:start",
        "outage:restore",
    }
    page.goto(f"{live_server.url}/admin/outages/outage/")
    assert "+03" in page.locator("#result_list").inner_text()
    screenshot(page, "outage-list")
    assert_fits(page)
