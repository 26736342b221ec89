"""Pushes travel through the real firebase-admin client to a fake FCM HTTP v1 server."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from notifications import tasks
from notifications.models import Device, Notification
from notifications.services import alert_create
from tests.accounts.factories import UserFactory
from tests.notifications.factories import DeviceFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
RESTORED = {"area": "Salmiya, block 4", "restored_at": NOW, "outage_id": 41}


def alert(user, *, key="outage:41:restored", category="outage_restored", context=RESTORED, capture):
    with capture(execute=True):
        notification, _ = alert_create(
            user=user, category=category, dedupe_key=key, context=context
        )
    notification.refresh_from_db()
    return notification


def test_an_alert_reaches_every_device_of_the_user(fcm_server, django_capture_on_commit_callbacks):
    user = UserFactory()
    phone, tablet = DeviceFactory(user=user), DeviceFactory(user=user, platform="ios")
    DeviceFactory()  # someone else's phone

    notification = alert(user, capture=django_capture_on_commit_callbacks)

    assert notification.push_status == "sent"
    assert sorted(m["token"] for m in fcm_server.accepted) == sorted([phone.token, tablet.token])
    message = fcm_server.messages_to(phone.token)[0]
    assert message["notification"] == {"title": "Power is back", "body": notification.body}
    assert message["data"] == {
        "type": "outage_restored",
        "deep_link": "smartmeter://outages/41",
        "outage_id": "41",
        "notification_id": str(notification.pk),
    }
    assert message["android"]["priority"] == "normal"
    assert message["android"]["collapse_key"] == f"n{notification.pk}"
    assert message["apns"]["headers"]["apns-priority"] == "5"


def test_urgent_alerts_go_at_high_priority(fcm_server, django_capture_on_commit_callbacks):
    device = DeviceFactory()
    alert(
        device.user,
        category="outage_unplanned",
        key="outage:42:started",
        context={"area": "Salmiya", "outage_id": 42},
        capture=django_capture_on_commit_callbacks,
    )
    message = fcm_server.messages_to(device.token)[0]
    assert message["android"]["priority"] == "high"
    assert message["android"]["ttl"] == "7200s"
    assert message["apns"]["headers"]["apns-priority"] == "10"


def test_an_unregistered_token_is_deleted(fcm_server, django_capture_on_commit_callbacks):
    user = UserFactory()
    dead, alive = DeviceFactory(user=user), DeviceFactory(user=user)
    fcm_server.unregistered.add(dead.token)

    notification = alert(user, capture=django_capture_on_commit_callbacks)

    assert list(Device.objects.values_list("pk", flat=True)) == [alive.pk]
    assert notification.push_status == "sent"
    assert [m["token"] for m in fcm_server.accepted] == [alive.token]


def test_an_invalid_token_is_deleted(fcm_server, django_capture_on_commit_callbacks):
    device = DeviceFactory()
    fcm_server.invalid.add(device.token)

    notification = alert(device.user, capture=django_capture_on_commit_callbacks)

    assert not Device.objects.exists()
    assert notification.push_status == "no_device"
    assert fcm_server.refused == [(400, device.token)]


def test_a_429_is_retried_after_its_retry_after(fcm_server, django_capture_on_commit_callbacks):
    device = DeviceFactory()
    fcm_server.fail_next(429, retry_after=30)

    with time_machine.travel(NOW, tick=False) as clock:
        notification = alert(device.user, capture=django_capture_on_commit_callbacks)
        assert notification.push_status == "pending"
        assert notification.next_attempt_at == NOW + timedelta(seconds=30)
        assert fcm_server.accepted == []

        clock.move_to(NOW + timedelta(seconds=29))
        tasks.push_batch([notification.pk])  # a task that runs early sends nothing
        assert fcm_server.accepted == [] and fcm_server.requests == 1

        clock.move_to(NOW + timedelta(seconds=31))
        tasks.push_batch([notification.pk])

    assert [m["token"] for m in fcm_server.accepted] == [device.token]
    notification.refresh_from_db()
    assert notification.push_status == "sent" and notification.push_attempts == 2


def test_a_503_without_retry_after_backs_off(fcm_server, django_capture_on_commit_callbacks):
    device = DeviceFactory()
    fcm_server.fail_next(503, times=2)

    with time_machine.travel(NOW, tick=False) as clock:
        notification = alert(device.user, capture=django_capture_on_commit_callbacks)
        assert notification.next_attempt_at == NOW + timedelta(seconds=5)
        clock.move_to(NOW + timedelta(seconds=6))
        tasks.push_batch([notification.pk])
        notification.refresh_from_db()
        assert notification.next_attempt_at == NOW + timedelta(seconds=6 + 10)
        clock.move_to(NOW + timedelta(seconds=17))
        tasks.push_batch([notification.pk])

    notification.refresh_from_db()
    assert notification.push_status == "sent"
    assert fcm_server.requests == 3 and len(fcm_server.accepted) == 1


def test_a_retry_after_a_partial_failure_skips_devices_already_reached(
    fcm_server, django_capture_on_commit_callbacks
):
    user = UserFactory()
    reached, busy = DeviceFactory(user=user), DeviceFactory(user=user)
    fcm_server.fail_next(503, retry_after=1, target=busy.token)

    with time_machine.travel(NOW, tick=False) as clock:
        notification = alert(user, capture=django_capture_on_commit_callbacks)
        clock.move_to(NOW + timedelta(seconds=2))
        tasks.push_batch([notification.pk])

    assert sorted(m["token"] for m in fcm_server.accepted) == sorted([reached.token, busy.token])
    assert fcm_server.duplicates == 0


def test_a_device_that_registered_its_installation_id_is_addressed_by_it(
    fcm_server, django_capture_on_commit_callbacks
):
    device = DeviceFactory(fid="fid-cXk2")
    alert(device.user, capture=django_capture_on_commit_callbacks)
    assert fcm_server.accepted[0]["fid"] == "fid-cXk2" and "token" not in fcm_server.accepted[0]


def test_sending_by_token_raises_no_deprecation_warning(
    fcm_server, django_capture_on_commit_callbacks
):
    device = DeviceFactory()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        alert(device.user, capture=django_capture_on_commit_callbacks)
    assert fcm_server.messages_to(device.token)
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)]


def test_without_credentials_pushes_are_logged_not_sent(
    settings, caplog, django_capture_on_commit_callbacks
):
    settings.FIREBASE_CREDENTIALS_FILE = settings.FCM_ACCESS_TOKEN = ""
    device = DeviceFactory()
    with caplog.at_level("INFO", logger="notifications.push"):
        notification = alert(device.user, capture=django_capture_on_commit_callbacks)
    assert notification.push_status == "sent"
    assert f"device {device.pk}: Power is back" in caplog.text


def test_a_task_delivered_twice_sends_once(fcm_server, django_capture_on_commit_callbacks):
    device = DeviceFactory()
    notification = alert(device.user, capture=django_capture_on_commit_callbacks)

    tasks.push_batch([notification.pk])

    assert len(fcm_server.messages_to(device.token)) == 1
    assert Notification.objects.get().push_attempts == 1
