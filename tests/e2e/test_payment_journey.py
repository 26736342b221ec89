"""A top-up over real HTTP with a real Celery worker, the server at an address other than the
default: the payment page, the simulated gateway's webhook (sent by the worker) and the credit
all reach the server that made them, once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
import requests

from accounts.services import tokens_issue
from billing.models import LedgerEntry, SimulatedPayment
from config.celery import app as celery_app
from tests.accounts.factories import AccountLinkFactory
from tests.e2e.celery_worker import ROOT, database_url, worker_process

CSRF = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture
def worker(live_server, settings, celery_eager):
    """A real worker told the web's address, while its own PORT is another (honcho gives each
    process its own: the web's port plus 100 for the worker)."""
    celery_app.conf.task_always_eager = False
    settings.PUBLIC_BASE_URL = live_server.url
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "PUBLIC_BASE_URL": live_server.url,
        "PORT": "8230",
        "SMS_BACKEND": "console",
    }
    with worker_process(
        env=env, queue=settings.CELERY_TASK_DEFAULT_QUEUE, hostname="payments-test@%h"
    ) as process:
        yield process


def _wait_for(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_top_up_at_a_non_default_address_is_paid_and_credited_once(live_server, worker):
    link = AccountLinkFactory()
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {tokens_issue(user=link.user).access}"
    url = f"{live_server.url}/api/v1/accounts/{link.account_id}"

    started = api.post(
        f"{url}/topups/", json={"amount": "2.750"}, headers={"Idempotency-Key": "journey"}
    )
    assert started.status_code == 201, started.text
    payment_url = started.json()["payment_url"]
    assert payment_url.startswith(f"{live_server.url}/pay/simulated/")

    browser = requests.Session()
    page = browser.get(payment_url, timeout=10)
    assert page.status_code == 200 and b"2.750 KWD" in page.content
    paid = browser.post(
        payment_url,
        data={"csrfmiddlewaretoken": CSRF.search(page.content).group(1), "outcome": "pay"},
        timeout=10,
    )
    assert paid.status_code == 200 and b"Payment accepted" in paid.content

    topup_id = started.json()["topup"]["id"]
    done = _wait_for(
        lambda: (r := api.get(f"{url}/topups/{topup_id}/").json())["status"] == "succeeded" and r,
        timeout=60,
        what="the worker's webhook to credit the top-up",
    )
    assert done["receipt_number"] and done["paid_at"]
    assert api.get(f"{url}/balance/").json()["balance"] == "2.750"
    assert LedgerEntry.objects.filter(kind="topup").count() == 1
    assert SimulatedPayment.objects.get().delivered_at is not None

    retried = api.post(
        f"{url}/topups/", json={"amount": "2.750"}, headers={"Idempotency-Key": "journey"}
    ).json()
    assert retried["topup"]["status"] == "succeeded" and retried["payment_url"] is None
    assert worker.poll() is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PORT": "8123"}, "http://127.0.0.1:8123"),
        ({}, "http://127.0.0.1:8000"),
        (
            {"PORT": "8123", "PUBLIC_BASE_URL": "https://pay.example.com/"},
            "https://pay.example.com",
        ),
    ],
)
def test_the_public_address_follows_the_port_served_unless_given(env, expected):
    clean = {k: v for k, v in os.environ.items() if k not in ("PORT", "PUBLIC_BASE_URL")}
    output = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); "
            "from django.conf import settings; print(settings.PUBLIC_BASE_URL)",
        ],
        cwd=ROOT,
        env={**clean, **env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert output.stdout.strip() == expected
