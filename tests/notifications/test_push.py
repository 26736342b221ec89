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
from tests.fakes.fcm import FakeFcmServer
from tests.notifications.factories import DeviceFactory, NotificationFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
RESTORED = {"area": "Salmiya, block 4", "restored_at": NOW, "outage_id": 41}


@pytest.fixture
def fcm_server_h2(settings, monkeypatch):
    """The fake over TLS, offering HTTP/2 as FCM itself does; the client trusts its certificate."""
    server = FakeFcmServer(tls=True).start()
    monkeypatch.setenv("SSL_CERT_FILE", server.ca_file)
    settings.FIREBASE_CREDENTIALS_FILE = ""
    settings.FCM_ENDPOINT = server.endpoint
    settings.FCM_ACCESS_TOKEN = server.access_token
    settings.FCM_PROJECT_ID = "smartmeter-test"
    yield server
    server.stop()


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


def test_pushed_at_is_when_a_phone_first_took_the_alert(
    fcm_server, django_capture_on_commit_callbacks
):
    """Outage notices count from it (docs/outages.md): the first phone, not the last retry."""
    user = UserFactory()
    DeviceFactory(user=user)
    busy = DeviceFactory(user=user)
    fcm_server.fail_next(503, retry_after=1, target=busy.token)

    with time_machine.travel(NOW, tick=False) as clock:
        notification = alert(user, capture=django_capture_on_commit_callbacks)
        assert (notification.push_status, notification.pushed_at) == ("pending", NOW)
        clock.move_to(NOW + timedelta(seconds=2))
        tasks.push_batch([notification.pk])

    notification.refresh_from_db()
    assert (notification.push_status, notification.pushed_at) == ("sent", NOW)


def test_an_alert_no_phone_took_has_no_pushed_at(django_capture_on_commit_callbacks):
    notification = alert(UserFactory(), capture=django_capture_on_commit_callbacks)

    assert (notification.push_status, notification.pushed_at) == ("no_device", None)


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
    assert (notification.push_status, notification.pushed_at) == ("no_config", None)
    assert f"device {device.pk}: Power is back" in caplog.text


def test_a_task_delivered_twice_sends_once(fcm_server, django_capture_on_commit_callbacks):
    device = DeviceFactory()
    notification = alert(device.user, capture=django_capture_on_commit_callbacks)

    tasks.push_batch([notification.pk])

    assert len(fcm_server.messages_to(device.token)) == 1
    assert Notification.objects.get().push_attempts == 1


def test_a_500_is_retried_in_place(fcm_server, django_capture_on_commit_callbacks):
    device = DeviceFactory()
    fcm_server.fail_next(500)

    notification = alert(device.user, capture=django_capture_on_commit_callbacks)

    assert notification.push_status == "sent" and notification.push_attempts == 1
    assert fcm_server.requests == 2 and [m["token"] for m in fcm_server.accepted] == [device.token]


def test_a_500_that_persists_is_rescheduled(fcm_server, django_capture_on_commit_callbacks):
    device = DeviceFactory()
    fcm_server.fail_next(500, times=3)

    with time_machine.travel(NOW, tick=False):
        notification = alert(device.user, capture=django_capture_on_commit_callbacks)

    assert notification.push_status == "pending"
    assert notification.next_attempt_at == NOW + timedelta(seconds=5)
    assert fcm_server.requests == 3 and fcm_server.accepted == []
    assert Device.objects.filter(pk=device.pk).exists()


def test_no_more_than_fcm_max_concurrency_requests_are_in_flight(
    fcm_server, settings, django_capture_on_commit_callbacks
):
    settings.FCM_MAX_CONCURRENCY = 3
    fcm_server.delay_seconds = 0.02  # long enough for requests to overlap
    user = UserFactory()
    devices = DeviceFactory.create_batch(12, user=user)

    notification = alert(user, capture=django_capture_on_commit_callbacks)

    assert notification.push_status == "sent"
    assert sorted(m["token"] for m in fcm_server.accepted) == sorted(d.token for d in devices)
    assert 1 < fcm_server.max_in_flight <= 3


def test_a_payload_firebase_admin_refuses_fails_alone(fcm_server):
    bad, good = DeviceFactory(), DeviceFactory()
    # A data value that is not a string: firebase-admin refuses to encode the message, and with
    # it, the whole list it was given; the other alert must still go.
    broken = NotificationFactory(
        user=bad.user, push_status="pending", data={"type": "outage_restored", "outage_id": 41}
    )
    fine = NotificationFactory(user=good.user, push_status="pending")

    tasks.push_batch([broken.pk, fine.pk])

    assert [m["token"] for m in fcm_server.accepted] == [good.token]
    assert fcm_server.requests == 1
    assert Notification.objects.get(pk=fine.pk).push_status == "sent"
    assert Notification.objects.get(pk=broken.pk).push_status == "no_device"
    assert Device.objects.filter(pk=bad.pk).exists()  # our bug, not a dead token


def test_over_http2_the_pushes_share_one_connection(
    fcm_server_h2, settings, django_capture_on_commit_callbacks
):
    settings.FCM_MAX_CONCURRENCY = 4
    fcm_server_h2.delay_seconds = 0.02  # long enough for requests to overlap
    user = UserFactory()
    devices = DeviceFactory.create_batch(12, user=user)

    notification = alert(user, capture=django_capture_on_commit_callbacks)

    assert notification.push_status == "sent"
    assert sorted(m["token"] for m in fcm_server_h2.accepted) == sorted(d.token for d in devices)
    assert fcm_server_h2.protocols == {"h2": 1}
    assert 1 < fcm_server_h2.max_in_flight <= 4  # streams side by side on that connection


def test_over_http2_errors_are_classed_the_same(fcm_server_h2, django_capture_on_commit_callbacks):
    user = UserFactory()
    dead, busy, fine = DeviceFactory.create_batch(3, user=user)
    fcm_server_h2.unregistered.add(dead.token)
    fcm_server_h2.fail_next(429, retry_after=30, target=busy.token)

    with time_machine.travel(NOW, tick=False):
        notification = alert(user, capture=django_capture_on_commit_callbacks)

    assert notification.push_status == "pending"
    assert notification.next_attempt_at == NOW + timedelta(seconds=30)
    assert notification.devices_done == [fine.pk]
    assert sorted(Device.objects.values_list("pk", flat=True)) == sorted([busy.pk, fine.pk])
    assert fcm_server_h2.protocols == {"h2": 1}


def test_an_fcm_that_cannot_be_reached_leaves_the_alert_pending(
    fcm_server, django_capture_on_commit_callbacks
):
    device = DeviceFactory()
    fcm_server.stop()  # nothing listens on its port any more

    with time_machine.travel(NOW, tick=False):
        notification = alert(device.user, capture=django_capture_on_commit_callbacks)

    assert notification.push_status == "pending"
    assert notification.next_attempt_at == NOW + timedelta(seconds=5)
    assert Device.objects.filter(pk=device.pk).exists()
