"""The outage desk in a real browser: plan, preview, publish (confirming a late notice), start and
restore, as a planner of one utility does it."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import kombu.pools
import pytest
from django.db import connections
from django.utils import timezone

from config.celery import app as celery_app
from core.models import AuditEntry
from notifications.models import Notification
from outages.models import Compensation, Outage
from tests.outages.factories import consumer_on, saudi, staff_member, transformer_of

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.django_db(transaction=True),
    # CI installs Chromium and sets REQUIRE_BROWSER, so there the test can never skip silently.
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("REQUIRE_BROWSER"),
        reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)",
    ),
]
PASSWORD = "correct horse battery staple"


@pytest.fixture
def browser_page(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; Django's ORM would then refuse
    # synchronous queries from the test body without this.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    # Even an eager task takes a producer from the app's pool; the Redis-outage test in
    # tests/notifications/test_worker_recovery.py leaves that pool closed. Start a fresh one.
    kombu.pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(15000)
        yield page
        # Queries made while Playwright's loop runs get a connection of their own (Django keys
        # connections by context there); close it, or the test database cannot be dropped.
        connections.close_all()
        browser.close()


def test_a_planner_plans_previews_publishes_starts_and_restores(live_server, browser_page):
    utility = saudi()
    transformer = transformer_of(utility)
    for _ in range(3):
        consumer_on(transformer)
    transformer_of(utility)  # another transformer, not chosen
    planner = staff_member(utility, "planner", first_name="Noura")
    page = browser_page
    zone = utility.zone
    # Tomorrow 09:00–13:00 local: less than the 48 hours' notice the utility promises.
    tomorrow = (timezone.now().astimezone(zone) + timedelta(days=1)).date()

    page.goto(f"{live_server.url}/admin/login/?next=/admin/outages/outage/")
    page.fill("#id_username", planner.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/outages/outage/")

    page.click(".object-tools a.addlink")
    page.fill("#id_reason", "Transformer maintenance")
    page.fill("#id_planned_start_0", tomorrow.isoformat())
    page.fill("#id_planned_start_1", "09:00")
    page.fill("#id_planned_end_0", tomorrow.isoformat())
    page.fill("#id_planned_end_1", "13:00")
    page.select_option("#id_transformers_from", label=str(transformer))
    page.click("#id_transformers_add")
    page.click("input[name=_continue]")

    summary = page.locator("#affected-summary")
    assert summary.inner_text() == "3 meters, 3 consumer accounts, 3 people to notify"
    assert "Asia/Riyadh" in page.content()

    page.click("#step-publish")
    assert page.locator("#affected-count").inner_text() == (
        "3 meters, 3 consumer accounts, 3 people to notify"
    )
    assert page.locator("#affected-meters tbody tr").count() == 3
    assert "09:00" in page.locator("#outage-when").inner_text()
    assert "less than the 48 hours" in page.locator("#late-notice").inner_text()
    page.check("#id_confirm_late")
    if os.environ.get("OUTAGES_SCREENSHOT"):
        page.screenshot(path=os.environ["OUTAGES_SCREENSHOT"], full_page=True)
    page.click("#step-submit")
    page.get_by_text("Published. 3 meters affected; notices are on their way.").wait_for()
    # Shown in Riyadh time, not UTC (06:00).
    assert "9 a.m." in page.locator(".field-planned_start").inner_text()
    assert "09:00 →" in page.locator(".field-local_times").inner_text()
    assert "Published" in page.locator(".field-status_badge").inner_text()

    two_hours_ago = timezone.now().astimezone(zone) - timedelta(hours=2)
    page.click("#step-start")
    page.fill("#id_at_0", two_hours_ago.date().isoformat())
    page.fill("#id_at_1", two_hours_ago.strftime("%H:%M"))
    page.click("#step-submit")
    page.get_by_text("Marked started.").wait_for()

    page.click("#step-restore")
    page.click("#step-submit")
    page.get_by_text("Marked restored; consumers are told power is back.").wait_for()
    assert "Restored" in page.locator(".field-status_badge").inner_text()
    assert page.locator("#step-restore").count() == 0

    outage = Outage.objects.get()
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
    assert Compensation.objects.filter(standard="notice").count() == 3
    assert set(AuditEntry.objects.values_list("action", flat=True)) >= {
        "add",
        "outage:publish",
        "outage:start",
        "outage:restore",
    }
