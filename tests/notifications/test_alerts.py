"""Creating alerts: one per key, in the user's language, after commit; quiet hours; SMS fallback;
the sweeper."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import transaction

from core.errors import DomainError
from notifications import delivery, tasks
from notifications.models import Notification
from notifications.services import alert_create
from tests.accounts.factories import AccountLinkFactory, UserFactory, UtilityFactory
from tests.notifications.factories import DeviceFactory, PreferenceFactory

pytestmark = pytest.mark.django_db
# 23:30 in Kuwait (UTC+3).
NIGHT = datetime(2026, 11, 22, 20, 30, tzinfo=UTC)
PLANNED = {
    "area": "Salmiya, block 4",
    "start": datetime(2026, 11, 24, 6, 0, tzinfo=UTC),
    "end": datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
    "outage_id": 7,
}


def create(capture, **kwargs):
    kwargs.setdefault("category", "outage_planned")
    kwargs.setdefault("dedupe_key", "outage:7:planned")
    kwargs.setdefault("context", PLANNED)
    kwargs.setdefault("utility", UtilityFactory())
    with capture(execute=True):
        notification, created = alert_create(**kwargs)
    notification.refresh_from_db()
    return notification, created


def test_the_same_key_makes_one_alert_and_one_push(fcm_server, django_capture_on_commit_callbacks):
    device = DeviceFactory()
    first, created_first = create(django_capture_on_commit_callbacks, user=device.user)
    again, created_again = create(django_capture_on_commit_callbacks, user=device.user)

    assert (created_first, created_again) == (True, False)
    assert first.pk == again.pk and Notification.objects.count() == 1
    assert len(fcm_server.accepted) == 1


def test_a_rolled_back_event_sends_nothing(fcm_server, django_capture_on_commit_callbacks):
    device = DeviceFactory()
    utility = UtilityFactory()
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        alert_create(
            user=device.user,
            category="outage_planned",
            dedupe_key="k",
            context=PLANNED,
            utility=utility,
        )
        raise RuntimeError("the outage was not published after all")
    assert not Notification.objects.exists()
    assert fcm_server.requests == 0


@pytest.mark.parametrize(
    ("language", "title", "body"),
    [
        (
            "en",
            "Planned power cut",
            "Power will be off in Salmiya, block 4 from Tue, Nov 24, 9:00 AM +03 to Tue, Nov 24, "
            "12:00 PM +03 for maintenance.",
        ),
        (
            "ar",
            "انقطاع مجدول للكهرباء",
            "ستنقطع الكهرباء في Salmiya, block 4 من الثلاثاء، 24 نوفمبر، 9:00 ص \u2066+03\u2069 حتى "
            "الثلاثاء، 24 نوفمبر، 12:00 م \u2066+03\u2069 لأعمال الصيانة.",
        ),
        (
            "hi",
            "बिजली की निर्धारित कटौती",
            "रखरखाव के कारण Salmiya, block 4 में मंगल, 24 नवंबर, 9:00 am +03 से मंगल, 24 नवंबर, "
            "12:00 pm +03 तक बिजली बंद रहेगी।",
        ),
    ],
)
def test_each_user_gets_the_alert_in_their_own_language(
    fcm_server, django_capture_on_commit_callbacks, language, title, body
):
    device = DeviceFactory(user=UserFactory(language=language))
    notification, _ = create(django_capture_on_commit_callbacks, user=device.user)

    assert (notification.title, notification.body, notification.language) == (title, body, language)
    message = fcm_server.messages_to(device.token)[0]
    assert message["notification"] == {"title": title, "body": body}


def test_amounts_are_in_the_utilitys_currency_format(django_capture_on_commit_callbacks):
    kuwait = UtilityFactory()
    india = UtilityFactory(
        code="mp-cz",
        country="IN",
        timezone="Asia/Kolkata",
        currency="INR",
        currency_minor_unit=2,
        languages=["hi", "en"],
        default_language="hi",
    )
    context = {"amount": Decimal("1.5"), "balance": Decimal("3.25"), "consumer_id": "1002"}
    in_kuwait, _ = create(
        django_capture_on_commit_callbacks,
        user=UserFactory(language="ar"),
        category="topup_received",
        dedupe_key="t1",
        context={**context, "account_id": 1},
        utility=kuwait,
    )
    in_india, _ = create(
        django_capture_on_commit_callbacks,
        user=UserFactory(language="hi"),
        category="topup_received",
        dedupe_key="t2",
        context={**context, "amount": Decimal("100000"), "account_id": 2},
        utility=india,
    )
    assert in_kuwait.body == "تمت إضافة 1.500 د.ك. إلى حسابك رقم 1002. رصيدك الآن 3.250 د.ك.."
    assert "₹1,00,000.00" in in_india.body and "₹3.25" in in_india.body


def test_quiet_hours_hold_a_non_urgent_push_until_they_end(
    fcm_server, django_capture_on_commit_callbacks
):
    device = DeviceFactory()
    PreferenceFactory(user=device.user, quiet_start=time(22, 0), quiet_end=time(7, 0))

    with time_machine.travel(NIGHT, tick=False) as clock:
        held, _ = create(django_capture_on_commit_callbacks, user=device.user)
        assert held.push_status == "held"
        # 07:00 in Kuwait
        assert held.next_attempt_at == datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
        assert fcm_server.requests == 0
        assert held.title == "Planned power cut"  # the inbox has it already

        clock.move_to(datetime(2026, 11, 23, 3, 59, tzinfo=UTC))
        delivery.notifications_sweep()
        assert fcm_server.requests == 0

        clock.move_to(datetime(2026, 11, 23, 4, 0, tzinfo=UTC))
        tasks.sweep()

    assert [m["token"] for m in fcm_server.accepted] == [device.token]
    held.refresh_from_db()
    assert held.push_status == "sent"


def test_quiet_hours_let_an_urgent_push_through(fcm_server, django_capture_on_commit_callbacks):
    device = DeviceFactory()
    PreferenceFactory(user=device.user, quiet_start=time(22, 0), quiet_end=time(7, 0))

    with time_machine.travel(NIGHT, tick=False):
        urgent, _ = create(
            django_capture_on_commit_callbacks,
            user=device.user,
            category="outage_unplanned",
            dedupe_key="outage:8:started",
            context={"area": "Salmiya", "outage_id": 8},
        )

    assert urgent.push_status == "sent"
    assert [m["token"] for m in fcm_server.accepted] == [device.token]


def test_quiet_hours_use_the_zone_of_the_users_account_when_the_alert_has_no_utility(
    fcm_server, django_capture_on_commit_callbacks
):
    device = DeviceFactory()
    AccountLinkFactory(user=device.user)  # a Kuwaiti account
    PreferenceFactory(user=device.user, quiet_start=time(22, 0), quiet_end=time(7, 0))
    with time_machine.travel(NIGHT, tick=False):
        held, _ = create(
            django_capture_on_commit_callbacks,
            user=device.user,
            utility=None,
            category="outage_restored",
            context={"area": "Salmiya", "restored_at": NIGHT, "outage_id": 7},
        )
    assert held.push_status == "held"


def test_a_category_turned_off_is_kept_in_the_inbox_but_not_pushed(
    fcm_server, django_capture_on_commit_callbacks
):
    device = DeviceFactory()
    PreferenceFactory(user=device.user, disabled_categories=["outage_planned"])
    notification, _ = create(django_capture_on_commit_callbacks, user=device.user)
    assert notification.push_status == "off"
    assert fcm_server.requests == 0


def test_an_urgent_alert_goes_by_sms_to_a_user_without_devices(
    sms_outbox, django_capture_on_commit_callbacks
):
    user = UserFactory(language="ar")
    notification, _ = create(
        django_capture_on_commit_callbacks,
        user=user,
        category="outage_unplanned",
        dedupe_key="outage:9:started",
        context={"area": "السالمية", "outage_id": 9},
    )
    assert notification.push_status == "no_device" and notification.sms_status == "queued"
    assert [(m.to, m.body) for m in sms_outbox] == [
        (
            user.phone,
            "انقطاع الكهرباء في منطقتك: يوجد انقطاع في الكهرباء في السالمية. فرقنا تعمل على "
            "إصلاحه، وسنبلغك فور عودة التيار.",
        )
    ]


def test_an_urgent_alert_goes_by_sms_when_every_token_is_dead(
    fcm_server, sms_outbox, django_capture_on_commit_callbacks
):
    device = DeviceFactory()
    fcm_server.unregistered.add(device.token)
    create(
        django_capture_on_commit_callbacks,
        user=device.user,
        category="outage_unplanned",
        dedupe_key="outage:9:started",
        context={"area": "Salmiya", "outage_id": 9},
    )
    assert [m.to for m in sms_outbox] == [device.user.phone]


def test_a_non_urgent_alert_never_goes_by_sms(sms_outbox, django_capture_on_commit_callbacks):
    notification, _ = create(django_capture_on_commit_callbacks, user=UserFactory())
    assert notification.push_status == "no_device" and sms_outbox == []


def test_the_sweeper_sends_what_a_broker_outage_left_behind(
    fcm_server, settings, django_capture_on_commit_callbacks
):
    device = DeviceFactory()
    with time_machine.travel(NIGHT, tick=False) as clock:
        # Written, but its task never reached a worker (the broker was down at commit).
        with django_capture_on_commit_callbacks(execute=False):
            alert_create(
                user=device.user,
                category="outage_planned",
                dedupe_key="k",
                context=PLANNED,
                utility=UtilityFactory(),
            )
        clock.move_to(NIGHT + timedelta(seconds=settings.NOTIFY_SWEEP_GRACE_SECONDS - 1))
        assert delivery.notifications_sweep()["queued"] == 0
        clock.move_to(NIGHT + timedelta(seconds=settings.NOTIFY_SWEEP_GRACE_SECONDS + 1))
        assert delivery.notifications_sweep()["queued"] == 1

    assert [m["token"] for m in fcm_server.accepted] == [device.token]


def test_the_sweeper_takes_back_the_claims_of_a_dead_worker(
    fcm_server, settings, django_capture_on_commit_callbacks
):
    device = DeviceFactory()
    with time_machine.travel(NIGHT, tick=False) as clock:
        with django_capture_on_commit_callbacks(execute=False):
            notification, _ = alert_create(
                user=device.user,
                category="outage_planned",
                dedupe_key="k",
                context=PLANNED,
                utility=UtilityFactory(),
            )
        # A worker claimed it, then died before sending.
        Notification.objects.filter(pk=notification.pk).update(
            push_status="sending", claim="00000000-0000-0000-0000-000000000001", claimed_at=NIGHT
        )
        clock.move_to(NIGHT + timedelta(seconds=settings.NOTIFY_CLAIM_LEASE_SECONDS - 1))
        assert delivery.notifications_sweep()["reclaimed"] == 0
        clock.move_to(NIGHT + timedelta(seconds=settings.NOTIFY_CLAIM_LEASE_SECONDS + 1))
        assert delivery.notifications_sweep()["reclaimed"] == 1

    notification.refresh_from_db()
    assert notification.push_status == "sent"
    assert [m["token"] for m in fcm_server.accepted] == [device.token]


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"category": "horoscope"}, "unknown_category"),
        ({"context": {"area": "Salmiya"}}, "alert_context_incomplete"),
        ({"dedupe_key": ""}, "invalid_dedupe_key"),
    ],
)
def test_it_refuses_bad_alerts(kwargs, code, django_capture_on_commit_callbacks):
    with pytest.raises(DomainError) as caught:
        create(django_capture_on_commit_callbacks, user=UserFactory(), **kwargs)
    assert caught.value.code == code
    assert not Notification.objects.exists()
