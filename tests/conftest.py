from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from config.celery import app as celery_app
from notifications import sms
from tests.fakes.sms_gateway import FakeSmsGateway

CODE = re.compile(r"\b(\d{6})\b")


@pytest.fixture(autouse=True)
def celery_eager():
    """Tasks run in-process unless a test starts a real worker (those turn this off)."""
    from celery.result import _set_task_join_will_block

    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    # Celery keeps "inside a task, never join a result" in one process-wide flag that each eager
    # call sets and restores; eager tasks run from two threads at once (the concurrency tests,
    # a fake head-end's thread) can leave it set, and a later test's `.delay().get()` then fails.
    _set_task_join_will_block(False)
    yield
    celery_app.conf.task_always_eager = False
    _set_task_join_will_block(False)


@pytest.fixture(autouse=True)
def fresh_tariff_cache():
    """Tariffs are cached per process for a minute; each test starts from its own database."""
    from billing import tariffs

    tariffs._CACHE.clear()


@pytest.fixture(autouse=True)
def dashboard_reads_fresh(settings):
    """The dashboard keeps its load chart in the cache for minutes; tests change readings between
    reads (tests/console/test_dashboard.py tests the cache itself)."""
    settings.CONSOLE_LOAD_CACHE_SECONDS = 0


@pytest.fixture(autouse=True)
def sms_outbox(settings):
    settings.SMS_BACKEND = "locmem"
    sms.outbox.clear()
    yield sms.outbox
    sms.outbox.clear()


@pytest.fixture
def sms_gateway(settings):
    gateway = FakeSmsGateway().start()
    settings.SMS_BACKEND = "http"
    settings.SMS_HTTP_URL = gateway.url
    settings.SMS_HTTP_TOKEN = gateway.token
    yield gateway
    gateway.stop()


def last_code(outbox, to: str | None = None) -> str:
    """The code in the newest SMS (to `to`, if given)."""
    for message in reversed(outbox):
        if to is None or message.to == to:
            return CODE.search(message.body).group(1)
    raise AssertionError(f"no SMS to {to}")


class Api:
    """An API client whose requests run their on-commit work, as a real request's would."""

    def __init__(self, capture, user=None) -> None:
        self.client = APIClient()
        self._capture = capture
        self.responses = []
        if user is not None:
            self.as_user(user)

    def as_user(self, user) -> Api:
        from accounts.services import tokens_issue

        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_issue(user=user).access}")
        return self

    def _call(self, method: str, path: str, data=None, **extra):
        with self._capture(execute=True):
            response = getattr(self.client, method)(path, data=data, format="json", **extra)
        self.responses.append(response)
        return response

    def get(self, path, data=None, **extra):
        with self._capture(execute=True):
            response = self.client.get(path, data=data, **extra)
        self.responses.append(response)
        return response

    def post(self, path, data=None, **extra):
        return self._call("post", path, data, **extra)

    def patch(self, path, data=None, **extra):
        return self._call("patch", path, data, **extra)

    def delete(self, path, **extra):
        return self._call("delete", path, None, **extra)


@pytest.fixture
def api(django_capture_on_commit_callbacks, db):
    return Api(django_capture_on_commit_callbacks)


@pytest.fixture
def make_api(django_capture_on_commit_callbacks, db):
    return lambda user=None: Api(django_capture_on_commit_callbacks, user)


@pytest.fixture
def head_end(settings):
    """A head-end's command API on 127.0.0.1 (tests/fakes/headend.py), billing.headend pointed at it."""
    from tests.fakes.headend import head_end_started

    fake = head_end_started(settings)
    yield fake
    fake.stop()


@pytest.fixture
def fcm_server(settings):
    """A fake FCM HTTP v1 server; the real firebase-admin client is pointed at it."""
    from tests.fakes.fcm import FakeFcmServer

    server = FakeFcmServer().start()
    settings.FIREBASE_CREDENTIALS_FILE = ""
    settings.FCM_ENDPOINT = server.endpoint
    settings.FCM_ACCESS_TOKEN = server.access_token
    settings.FCM_PROJECT_ID = "smartmeter-test"
    yield server
    server.stop()


# The staff console's browser walks share one Chromium page fixture (tests/browser.py).
from tests.browser import browser_page  # noqa: E402, F401
