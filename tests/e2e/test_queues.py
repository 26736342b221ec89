"""Queues by urgency: every task has a queue, and a real worker takes a sign-in code's SMS ahead of
a fan-out's backlog of push tasks (the broker of the run: Redis, or the filesystem by default)."""

from __future__ import annotations

import os
import time

import pytest
import requests
from django.db import transaction

from config.celery import ROUTES, queue_name, queues_by_priority
from config.celery import app as celery_app
from notifications.models import Device, Notification
from notifications.services import fanout_create
from notifications.tasks import send_sms
from tests.accounts.factories import UserFactory, UtilityFactory
from tests.e2e.celery_worker import database_url, worker_process
from tests.notifications.factories import DeviceFactory

BACKLOG = 1400


def test_every_task_of_the_project_has_a_queue_of_its_own():
    celery_app.loader.import_default_modules()
    # Celery's own, and tasks a test defines for itself ("tests.…"), are not the project's.
    ours = {name for name in celery_app.tasks if not name.startswith(("celery.", "tests."))}

    assert ours, "no task was found"
    # A new task must be given a queue (config/celery.py: ROUTES), not land in one by default.
    assert sorted(ours - ROUTES.keys()) == []
    assert sorted(ROUTES.keys() - ours) == []  # and no route names a task that is gone


def test_tasks_are_published_to_their_queue_and_workers_take_the_urgent_first(settings):
    base = settings.CELERY_TASK_DEFAULT_QUEUE
    route = celery_app.amqp.router.route

    assert route({}, "notifications.tasks.send_code_sms")["queue"].name == f"{base}.codes"
    assert route({}, "billing.tasks.relay_dispatch")["queue"].name == f"{base}.payments"
    assert route({}, "notifications.tasks.push_alert")["queue"].name == f"{base}.alerts"
    assert route({}, "notifications.tasks.push_batch")["queue"].name == f"{base}.bulk"
    assert queues_by_priority() == [
        f"{base}.codes",
        f"{base}.payments",
        f"{base}.alerts",
        base,
        f"{base}.bulk",
    ]
    assert queue_name("") == base
    # On Redis the worker asks for the queues in that order, and Redis answers from the first.
    assert celery_app.conf.broker_transport_options["queue_order_strategy"] == "priority"


def test_a_sign_in_code_is_published_to_the_codes_queue(
    db, settings, client, django_capture_on_commit_callbacks
):
    """Routes name tasks; this says the sign-in path sends its code with the task routed there."""
    from celery.signals import before_task_publish

    base = settings.CELERY_TASK_DEFAULT_QUEUE
    celery_app.conf.task_always_eager = False
    published: list[tuple[str, str]] = []

    def record(sender=None, routing_key=None, **kwargs):
        published.append((sender, routing_key))

    before_task_publish.connect(record)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            started = client.post(
                "/api/v1/auth/code/", {"phone": "+96560008888"}, content_type="application/json"
            )
    finally:
        before_task_publish.disconnect(record)
        _purge(queues_by_priority())

    assert started.status_code == 202, started.content
    assert published == [("notifications.tasks.send_code_sms", f"{base}.codes")]


@pytest.fixture
def busy_worker(sms_gateway, fcm_server, celery_eager, settings):
    """A real worker on every queue of the test's base queue; each push of the fan-out one task."""
    celery_app.conf.task_always_eager = False
    settings.SMS_BACKEND = "locmem"  # only the worker reaches the gateway
    fcm_server.delay_seconds = 0.005
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "SMS_BACKEND": "http",
        "SMS_HTTP_URL": sms_gateway.url,
        "SMS_HTTP_TOKEN": sms_gateway.token,
        "CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "FCM_ENDPOINT": fcm_server.endpoint,
        "FCM_ACCESS_TOKEN": fcm_server.access_token,
        "FCM_PROJECT_ID": "smartmeter-test",
        "NOTIFY_BATCH_SIZE": "1",
    }
    try:
        with worker_process(env=env, queue=settings.CELERY_TASK_DEFAULT_QUEUE) as process:
            yield process
    finally:
        _purge(queues_by_priority())  # the backlog left: no later run's worker may find it


def _purge(queues: list[str]) -> None:
    with celery_app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in queues:
            channel.queue_purge(queue)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_sign_in_code_is_not_sent_after_a_fanout_backlog(
    live_server, sms_gateway, fcm_server, busy_worker
):
    users = [UserFactory.build() for _ in range(BACKLOG)]
    users = type(users[0]).objects.bulk_create(users)
    Device.objects.bulk_create([DeviceFactory.build(user=user) for user in users])
    with transaction.atomic():  # on commit: one fan-out task, which queues a push task per alert
        fanout, _ = fanout_create(
            user_ids=[user.pk for user in users],
            category="outage_unplanned",
            dedupe_key="outage:77:started",
            context={"area": "Salmiya, block 4", "outage_id": 77},
            utility=UtilityFactory(),
        )
    fcm_server.wait_for(lambda f: len(f.accepted) >= 5, timeout=120)  # the backlog is being worked

    started = requests.post(
        f"{live_server.url}/api/v1/auth/code/", json={"phone": "+96560009999"}, timeout=10
    )
    assert started.status_code == 202
    deadline = time.monotonic() + 120
    while not sms_gateway.messages and time.monotonic() < deadline:
        time.sleep(0.01)
    pushed_before_the_code = len(fcm_server.accepted)
    waiting = Notification.objects.filter(fanout=fanout, push_status="pending").count()

    assert [m["to"] for m in sms_gateway.messages] == ["+96560009999"]
    # The code went while at least 90% of the fan-out's push tasks were still queued.
    assert pushed_before_the_code <= BACKLOG // 10, pushed_before_the_code
    assert waiting >= BACKLOG * 9 // 10, waiting


@pytest.mark.worker
def test_on_redis_a_worker_empties_the_urgent_queues_first(sms_gateway, celery_eager, settings):
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("strict priority is Redis's; RabbitMQ and the filesystem take turns")
    celery_app.conf.task_always_eager = False
    base = settings.CELERY_TASK_DEFAULT_QUEUE
    for kind in ("bulk", "alerts", "payments", "", "codes"):  # queued least urgent first
        for n in range(3):
            send_sms.apply_async(
                args=["+96560001111", f"{kind or 'unrouted'} {n}"], queue=queue_name(kind)
            )
    env = {
        **os.environ,
        "SMS_BACKEND": "http",
        "SMS_HTTP_URL": sms_gateway.url,
        "SMS_HTTP_TOKEN": sms_gateway.token,
        "CELERY_QUEUE": base,
    }
    try:
        with worker_process(env=env, queue=base):
            sent = sms_gateway.wait_for(15, timeout=60)
    finally:
        _purge(queues_by_priority())

    assert [m["text"] for m in sent] == [
        f"{kind} {n}"
        for kind in ("codes", "payments", "alerts", "unrouted", "bulk")
        for n in range(3)
    ]
