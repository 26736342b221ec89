"""A worker killed (SIGKILL) in the middle of a fan-out to a few thousand devices: what FCM takes
twice is bounded by what that worker had out (FCM_MAX_CONCURRENCY messages), not by what it had
claimed; the inbox holds each alert once and every phone shows it once."""

from __future__ import annotations

import signal

import pytest
from django.db import transaction

from accounts.models import User
from notifications.models import Device, Notification
from notifications.services import fanout_create
from tests.accounts.factories import UserFactory, UtilityFactory
from tests.notifications.factories import DeviceFactory
from tests.notifications.test_worker_recovery import (  # noqa: F401  (workers is a fixture)
    CONCURRENCY,
    _wait,
    workers,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

USERS = 1500


def test_a_worker_killed_mid_fanout_sends_again_only_what_it_had_out(
    fcm_server,
    workers,  # noqa: F811
):
    # FCM answers at once: a worker that wrote results down slowly would have many answered
    # messages unrecorded when it dies, each sent again.
    fcm_server.delay_seconds = 0.001
    users = User.objects.bulk_create(
        [UserFactory.build(language=("en", "ar", "hi")[n % 3]) for n in range(USERS)]
    )
    devices = Device.objects.bulk_create(
        [DeviceFactory.build(user=user) for user in users]
        + [DeviceFactory.build(user=user) for user in users[::3]]
    )
    tokens = {device.token for device in devices}
    with transaction.atomic():
        fanout, _ = fanout_create(
            user_ids=[user.pk for user in users],
            category="outage_unplanned",
            dedupe_key="outage:43:started",
            context={"area": "Salmiya, block 4", "outage_id": 43},
            utility=UtilityFactory(),
        )

    first = workers(beat=False)
    fcm_server.wait_for(lambda f: len(f.accepted) >= len(tokens) // 3, timeout=120)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert len(fcm_server.accepted) < len(tokens), "the worker finished before it was killed"

    workers(beat=True)  # its sweeper takes the dead worker's claims back once their lease ends
    fcm_server.wait_for(lambda f: tokens <= f.displayed.keys(), timeout=180)
    _wait(
        lambda: (
            not Notification.objects.filter(
                fanout=fanout, push_status__in=["pending", "sending"]
            ).exists()
        ),
        timeout=60,
        what="every alert to be finished",
    )

    inbox = Notification.objects.filter(dedupe_key="outage:43:started")
    assert inbox.count() == USERS
    assert inbox.values("user").distinct().count() == USERS
    assert inbox.filter(push_status="sent").count() == USERS
    assert {token: len(shown) for token, shown in fcm_server.displayed.items()} == {
        token: 1 for token in tokens
    }
    # FCM took len(tokens) + duplicates messages: the duplicates are the killed worker's messages
    # out without their results written, FCM_MAX_CONCURRENCY at most.
    assert len(fcm_server.accepted) - len(tokens) == fcm_server.duplicates
    assert fcm_server.duplicates <= CONCURRENCY
