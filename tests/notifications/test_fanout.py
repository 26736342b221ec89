from __future__ import annotations

import pytest

from accounts.models import User
from notifications import selectors
from notifications.models import Device, Fanout, Notification
from notifications.services import fanout_create
from tests.accounts.factories import UserFactory, UtilityFactory
from tests.notifications.factories import DeviceFactory

pytestmark = pytest.mark.django_db
CONTEXT = {"area": "Salmiya, block 4", "outage_id": 41}
TITLES = {
    "en": "Power outage in your area",
    "ar": "انقطاع الكهرباء في منطقتك",
    "hi": "आपके क्षेत्र में बिजली गुल है",
}


def test_an_outage_notice_reaches_every_device_once_in_each_language(
    fcm_server, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFY_BATCH_SIZE = 7  # several batches
    users = [UserFactory(language=("en", "ar", "hi")[n % 3]) for n in range(24)]
    devices = [DeviceFactory(user=u) for u in users] + [DeviceFactory(user=u) for u in users[::2]]
    UserFactory()  # not in the audience

    with django_capture_on_commit_callbacks(execute=True):
        fanout, created = fanout_create(
            user_ids=User.objects.filter(pk__in=[u.pk for u in users]).values_list("pk", flat=True),
            category="outage_unplanned",
            dedupe_key="outage:41:started",
            context=CONTEXT,
            utility=UtilityFactory(),
        )

    assert created and fanout.audience_size == 24
    assert sorted(m["token"] for m in fcm_server.accepted) == sorted(d.token for d in devices)
    assert fcm_server.duplicates == 0
    for device in devices:
        message = fcm_server.messages_to(device.token)[0]
        assert message["notification"]["title"] == TITLES[device.user.language]
    assert Notification.objects.filter(fanout=fanout, push_status="sent").count() == 24
    progress = selectors.fanout_progress(fanout=fanout)
    assert progress["done"] and progress["sent"] == 24 and progress["pending"] == 0


def test_a_batch_longer_than_a_page_reaches_every_device_once(
    fcm_server, settings, django_capture_on_commit_callbacks
):
    # One push task for the whole audience: its rows are read in pages (delivery.PAGE_ROWS), and
    # small chunks overlap, one travelling while the one before is written down.
    settings.NOTIFY_BATCH_SIZE = 500
    settings.FCM_MAX_CONCURRENCY = 4
    users = UserFactory.create_batch(230)
    devices = [DeviceFactory(user=u) for u in users] + [DeviceFactory(user=u) for u in users[::5]]
    fcm_server.unregistered.add(devices[151].token)  # found dead on a later page

    with django_capture_on_commit_callbacks(execute=True):
        fanout, _ = fanout_create(
            user_ids=[u.pk for u in users],
            category="outage_unplanned",
            dedupe_key="outage:41:started",
            context=CONTEXT,
            utility=UtilityFactory(),
        )

    alive = [d for d in devices if d.token != devices[151].token]
    assert sorted(m["token"] for m in fcm_server.accepted) == sorted(d.token for d in alive)
    assert fcm_server.duplicates == 0
    assert not Device.objects.filter(pk=devices[151].pk).exists()
    statuses = Notification.objects.filter(fanout=fanout).values_list("push_status", flat=True)
    assert sorted(set(statuses)) == ["no_device", "sent"]
    assert list(statuses).count("no_device") == 1  # the user whose only phone was dead


def test_publishing_twice_adds_nothing(fcm_server, django_capture_on_commit_callbacks):
    device = DeviceFactory()
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            fanout_create(
                user_ids=[device.user_id, 10**9],  # an unknown id is skipped
                category="outage_unplanned",
                dedupe_key="outage:41:started",
                context=CONTEXT,
                utility=UtilityFactory(),
            )
    assert Fanout.objects.count() == 1 and Notification.objects.count() == 1
    assert len(fcm_server.accepted) == 1


def test_a_user_already_alerted_under_the_key_is_not_pushed_again(
    fcm_server, django_capture_on_commit_callbacks
):
    from notifications.services import alert_create

    device = DeviceFactory()
    with django_capture_on_commit_callbacks(execute=True):
        alert_create(
            user=device.user,
            category="outage_unplanned",
            dedupe_key="outage:41:started",
            context=CONTEXT,
            utility=UtilityFactory(),
        )
        fanout_create(
            user_ids=[device.user_id],
            category="outage_unplanned",
            dedupe_key="outage:41:started",
            context=CONTEXT,
            utility=UtilityFactory(),
        )
    assert Notification.objects.count() == 1 and len(fcm_server.accepted) == 1


def test_staff_see_the_progress_in_the_admin(admin_client, django_capture_on_commit_callbacks):
    users = UserFactory.create_batch(3)
    with django_capture_on_commit_callbacks(execute=False):
        fanout, _ = fanout_create(
            user_ids=[u.pk for u in users],
            category="outage_planned",
            dedupe_key="outage:41:planned",
            context={**CONTEXT, "start": "09:00", "end": "12:00"},
            utility=UtilityFactory(),
        )
    response = admin_client.get(f"/admin/notifications/fanout/{fanout.pk}/change/")
    assert response.status_code == 200
    assert "in progress: 0 sent, 3 waiting" in response.content.decode()
