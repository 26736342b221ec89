"""Chromium, driven by Playwright, for the staff console's walks.

`browser_page` opens a 1366 x 900 page (the narrowest screen a control room or counter uses);
`staff_login` signs a staff member in; `screenshot` saves the page into the test's output
(`BROWSER_SCREENSHOTS`, else screenshots/ under `VAR_DIR`, else under var/); `assert_fits` fails when the page, or any list or
form in it, is wider than the window.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
WIDTH = 1366
PASSWORD = "correct horse battery staple"

# CI installs Chromium and sets REQUIRE_BROWSER, so there a browser test can never skip silently.
needs_browser = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("REQUIRE_BROWSER"),
    reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)",
)


@pytest.fixture
def browser_page(monkeypatch):
    import kombu.pools
    from django.db import connections
    from playwright.sync_api import sync_playwright

    from config.celery import app as celery_app

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
        page = browser.new_page(viewport={"width": WIDTH, "height": 900})
        page.set_default_timeout(15000)
        yield page
        # Queries made while Playwright's loop runs get a connection of their own (Django keys
        # connections by context there); close it, or the test database cannot be dropped.
        connections.close_all()
        browser.close()


def staff_login(page, live_server, user, *, next_path: str = "/admin/") -> None:
    """Sign `user` (whose password is PASSWORD) in through the admin's login form."""
    page.goto(f"{live_server.url}/admin/login/?next={next_path}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_load_state()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot as <name>.png in the test's output and return its path."""
    folder = Path(
        os.environ.get("BROWSER_SCREENSHOTS")
        or Path(os.environ.get("VAR_DIR") or "var") / "screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# Elements wider than the window (or than their own visible box, for a list or form that scrolls
# inside itself): what staff would have to scroll sideways to read.
_OVERFLOWS = """() => {
  const width = document.documentElement.clientWidth;
  const found = [];
  if (document.documentElement.scrollWidth > width) {
    found.push(`page ${document.documentElement.scrollWidth}px > ${width}px`);
  }
  for (const el of document.querySelectorAll('#content table, #content form, #changelist, .results, fieldset, .module')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0) continue;
    if (box.right > width + 1 || el.scrollWidth > el.clientWidth + 1) {
      const name = el.id ? `#${el.id}` : el.className ? `.${String(el.className).split(' ')[0]}` : el.tagName;
      found.push(`${el.tagName.toLowerCase()} ${name}: right ${Math.round(box.right)}px, scroll ${el.scrollWidth}px > ${el.clientWidth}px`);
    }
  }
  return found;
}"""


def overflows(page) -> list[str]:
    return page.evaluate(_OVERFLOWS)


def assert_fits(page) -> None:
    found = overflows(page)
    assert not found, f"{page.url} is wider than the {WIDTH} px window: {found}"
