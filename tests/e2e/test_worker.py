"""The sign-in code really travels: API → broker (Redis, or the filesystem by default) → a Celery
worker process → the SMS gateway."""

from __future__ import annotations

import os

import pytest
import requests

from config.celery import app as celery_app
from tests.conftest import CODE
from tests.e2e.celery_worker import worker_process

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(sms_gateway, celery_eager, settings):
    celery_app.conf.task_always_eager = False
    # Only the worker may reach the gateway: were the task run in this process, the SMS would land
    # in the local outbox instead and the test would fail.
    settings.SMS_BACKEND = "locmem"
    env = {
        **os.environ,
        "SMS_BACKEND": "http",
        "SMS_HTTP_URL": sms_gateway.url,
        "SMS_HTTP_TOKEN": sms_gateway.token,
        "CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
    }
    with worker_process(env=env, queue=settings.CELERY_TASK_DEFAULT_QUEUE) as process:
        yield process


def test_a_sign_in_code_is_delivered_by_a_real_worker(live_server, sms_gateway, worker, sms_outbox):
    url = live_server.url + "/api/v1"

    start = requests.post(f"{url}/auth/code/", json={"phone": "+96560001111"}, timeout=10)
    assert start.status_code == 202

    message = sms_gateway.wait_for(1, timeout=60)[0]
    assert message["to"] == "+96560001111"
    assert sms_outbox == []
    done = requests.post(
        f"{url}/auth/token/",
        json={
            "challenge_id": start.json()["challenge_id"],
            "code": CODE.search(message["text"]).group(1),
        },
        timeout=10,
    )
    assert done.status_code == 200
    assert worker.poll() is None  # the worker is still up: it did the work, it did not crash
