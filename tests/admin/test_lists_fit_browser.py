"""Every list and add form of the admin fits a 1366 px screen. Over the demo data, a superuser (who
sees every column and every utility's rows) opens each changelist and each add form in Chromium;
none may be wider than the window, nor hold a table or form that scrolls sideways."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.urls import NoReverseMatch, reverse

from accounts.models import User
from tests.browser import PASSWORD, needs_browser, overflows, screenshot, staff_login

pytestmark = [pytest.mark.django_db(transaction=True), needs_browser]

# Lists worth a look in the test's output: the ones staff live in.
SHOWN = {
    "accounts_consumeraccount",
    "meters_meter",
    "outages_outage",
    "servicerequests_servicerequest",
    "billing_topup",
    "notifications_notification",
}


def list_and_add_urls() -> list[tuple[str, str]]:
    pages = []
    for model in admin.site._registry:
        name = f"{model._meta.app_label}_{model._meta.model_name}"
        for kind in ("changelist", "add"):
            try:
                pages.append((f"{name}_{kind}", reverse(f"admin:{name}_{kind}")))
            except NoReverseMatch:
                continue
    return pages


def test_every_list_and_add_form_fits_1366_px(browser_page, live_server):
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    superuser = User.objects.get(username="admin")
    superuser.set_password(PASSWORD)
    superuser.save()
    page = browser_page
    staff_login(page, live_server, superuser)

    too_wide, opened = {}, 0
    for name, url in list_and_add_urls():
        response = page.goto(f"{live_server.url}{url}")
        if response is None or response.status != 200:
            continue  # an add form the model has none of (read-only records)
        opened += 1
        found = overflows(page)
        if found:
            too_wide[url] = found
        if name.removesuffix("_changelist") in SHOWN and name.endswith("_changelist"):
            screenshot(page, f"list-{name.removesuffix('_changelist')}")

    assert opened > 40  # the walk reached the admin's pages
    assert too_wide == {}, "\n".join(f"{url}: {found}" for url, found in too_wide.items())
