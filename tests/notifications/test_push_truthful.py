"""A push this deployment could not send (no FCM credentials, the embedded default) is never
recorded or shown as sent: staff answer "did my phone get it?" from this state (issue 14)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from notifications.models import Notification
from notifications.services import alert_create
from outages import services as outage_services
from outages.models import OutageNotice
from tests.accounts.factories import UserFactory
from tests.notifications.factories import DeviceFactory
from tests.outages.factories import OutageFactory, consumer_on, saudi, transformer_of

pytestmark = pytest.mark.django_db
START = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)  # Thursday 09:00 in Riyadh
PUBLISH = START - timedelta(hours=72)


@pytest.fixture(autouse=True)
def no_fcm_credentials(settings):
    settings.FIREBASE_CREDENTIALS_FILE = settings.FCM_ACCESS_TOKEN = ""


def _alert(user, capture, *, category="outage_restored", key="outage:41:restored", context=None):
    context = context or {"area": "Salmiya, block 4", "restored_at": PUBLISH, "outage_id": 41}
    with capture(execute=True):
        notification, _ = alert_create(
            user=user, category=category, dedupe_key=key, context=context
        )
    notification.refresh_from_db()
    return notification


def test_a_push_logged_for_want_of_credentials_is_not_recorded_as_sent(
    caplog, django_capture_on_commit_callbacks
):
    device = DeviceFactory()
    with caplog.at_level("INFO", logger="notifications.push"):
        notification = _alert(device.user, django_capture_on_commit_callbacks)

    assert "Push not sent (no FCM credentials)" in caplog.text
    assert notification.push_status == Notification.PushStatus.NOT_CONFIGURED
    assert notification.pushed_at is None and notification.devices_done == []


def test_staff_see_the_push_as_not_sent_in_the_admin(
    admin_client, django_capture_on_commit_callbacks
):
    notification = _alert(DeviceFactory().user, django_capture_on_commit_callbacks)

    listing = admin_client.get("/admin/notifications/notification/").content.decode()
    detail = admin_client.get(
        f"/admin/notifications/notification/{notification.pk}/change/"
    ).content.decode()

    for page in (listing, detail):
        assert "Not sent: push not configured (no FCM credentials)" in page
        assert '<td class="field-push_status">Sent</td>' not in page
    filtered = admin_client.get("/admin/notifications/notification/?push_status__exact=sent")
    assert notification.title not in filtered.content.decode()


def test_an_urgent_alert_not_pushed_for_want_of_credentials_goes_by_sms(
    sms_outbox, django_capture_on_commit_callbacks
):
    device = DeviceFactory(user=UserFactory())
    notification = _alert(
        device.user,
        django_capture_on_commit_callbacks,
        category="outage_unplanned",
        key="outage:9:started",
        context={"area": "Salmiya", "outage_id": 9},
    )

    assert (notification.push_status, notification.sms_status) == ("no_config", "queued")
    assert [m.to for m in sms_outbox] == [device.user.phone]


def test_an_outage_notice_not_pushed_is_not_counted_as_delivered_by_push(
    sms_outbox, django_capture_on_commit_callbacks
):
    transformer = transformer_of(saudi())
    meter, (person,) = consumer_on(transformer)
    DeviceFactory(user=person)
    outage = OutageFactory(
        utility=transformer.feeder.area.utility,
        planned_start=START,
        planned_end=START + timedelta(hours=4),
        transformers=[transformer],
    )

    with time_machine.travel(PUBLISH, tick=False), django_capture_on_commit_callbacks(execute=True):
        outage_services.outage_publish(outage_id=outage.pk, now=PUBLISH)

    notice = OutageNotice.objects.get(account=meter.account)
    assert (notice.status, notice.channel) == ("sent", "sms")
    assert [m.to for m in sms_outbox] == [meter.account.registered_mobile]
