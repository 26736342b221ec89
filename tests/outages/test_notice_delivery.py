"""The planned-outage notice reaches every affected account, and the notice standard counts each
account's notice from when it reached that account (DOMAIN.md §3: 48 h ahead, or 100 SAR)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications import tasks as notification_tasks
from notifications.models import Notification
from outages import services
from outages.models import Compensation, OutageNotice, Standard
from tests.accounts.factories import AccountLinkFactory, UserFactory
from tests.meters.factories import MeterFactory
from tests.notifications.factories import DeviceFactory, PreferenceFactory
from tests.outages.factories import OutageFactory, consumer_on, saudi, transformer_of

pytestmark = pytest.mark.django_db

START = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)  # Thursday 09:00 in Riyadh
PUBLISH = START - timedelta(hours=72)
ARABIC_TITLE = "انقطاع مجدول للكهرباء"  # "Planned power cut", the Saudi utility's language


@pytest.fixture
def transformer():
    return transformer_of(saudi())


def _outage(transformer, start=START):
    return OutageFactory(
        utility=transformer.feeder.area.utility,
        planned_start=start,
        planned_end=start + timedelta(hours=4),
        transformers=[transformer],
    )


def _publish(outage, *, at, capture, **kwargs):
    with time_machine.travel(at, tick=False), capture(execute=True):
        return services.outage_publish(outage_id=outage.pk, now=at, **kwargs)


def _sweep(*, at, capture):
    with time_machine.travel(at, tick=False), capture(execute=True):
        return services.outage_notices_sweep()


def _notice(account):
    return OutageNotice.objects.get(account=account)


def _start(outage):
    services.outage_start(outage_id=outage.pk, at=START, now=START)


def _late_notice_accounts():
    return [c.account for c in Compensation.objects.filter(standard=Standard.NOTICE)]


def test_an_account_nobody_uses_the_app_for_gets_the_notice_by_sms(
    transformer, sms_outbox, django_capture_on_commit_callbacks
):
    no_app = MeterFactory(utility=transformer.feeder.area.utility, transformer=transformer).account

    outage = _publish(_outage(transformer), at=PUBLISH, capture=django_capture_on_commit_callbacks)

    [sms] = sms_outbox
    assert sms.to == no_app.registered_mobile
    assert sms.body.startswith(f"{ARABIC_TITLE}: ") and transformer.feeder.area.name in sms.body
    assert transformer.name not in sms.body and transformer.code not in sms.body
    notice = _notice(no_app)
    assert (notice.status, notice.channel, notice.sent_at) == ("sent", "sms", PUBLISH)
    assert notice.version == outage.version and notice.sms_to == no_app.registered_mobile
    _start(outage)
    assert _late_notice_accounts() == []


def test_an_app_user_whose_phone_took_the_push_gets_no_sms(
    transformer, fcm_server, sms_outbox, django_capture_on_commit_callbacks
):
    meter, (person,) = consumer_on(transformer)
    device = DeviceFactory(user=person)

    _publish(_outage(transformer), at=PUBLISH, capture=django_capture_on_commit_callbacks)

    assert [m["token"] for m in fcm_server.accepted] == [device.token]
    assert sms_outbox == []
    notice = _notice(meter.account)
    assert (notice.status, notice.channel, notice.sent_at) == ("sent", "push", PUBLISH)


def test_an_app_user_without_a_device_gets_the_sms_and_the_notice_counts_from_it(
    transformer, sms_outbox, django_capture_on_commit_callbacks
):
    meter, (person,) = consumer_on(transformer)
    outage = _outage(transformer)
    # The broker was down when the outage was published: nothing was pushed or sent then. The
    # sweeper finds the notice an hour later; the SMS goes then, 71 h ahead.
    with time_machine.travel(PUBLISH, tick=False):
        services.outage_publish(outage_id=outage.pk, now=PUBLISH)
    later = PUBLISH + timedelta(hours=1)
    with time_machine.travel(later, tick=False), django_capture_on_commit_callbacks(execute=True):
        notification_tasks.sweep()

    _sweep(at=later, capture=django_capture_on_commit_callbacks)

    assert Notification.objects.get(user=person).push_status == "no_device"
    [sms] = sms_outbox
    assert sms.to == meter.account.registered_mobile  # the account's, not the app user's own
    notice = _notice(meter.account)
    assert (notice.channel, notice.sent_at) == ("sms", later)


def test_a_dead_token_falls_back_to_sms(
    transformer, fcm_server, sms_outbox, django_capture_on_commit_callbacks
):
    meter, (person,) = consumer_on(transformer)
    fcm_server.unregistered.add(DeviceFactory(user=person).token)

    _publish(_outage(transformer), at=PUBLISH, capture=django_capture_on_commit_callbacks)

    assert not person.devices.exists()
    assert [m.to for m in sms_outbox] == [meter.account.registered_mobile]
    assert _notice(meter.account).channel == "sms"


def test_a_push_fcm_keeps_refusing_falls_back_to_sms_once_its_last_attempt_failed(
    transformer, fcm_server, sms_outbox, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFY_MAX_PUSH_ATTEMPTS = 2
    meter, (person,) = consumer_on(transformer)
    DeviceFactory(user=person)
    fcm_server.fail_next(503, times=2)

    _publish(_outage(transformer), at=PUBLISH, capture=django_capture_on_commit_callbacks)
    # The push will be tried again in 5 s: the account waits for its outcome.
    assert _notice(meter.account).status == "waiting" and sms_outbox == []
    _sweep(at=PUBLISH + timedelta(seconds=1), capture=django_capture_on_commit_callbacks)
    assert sms_outbox == []

    retried = PUBLISH + timedelta(seconds=6)
    with time_machine.travel(retried, tick=False):
        notification_tasks.push_batch([Notification.objects.get(user=person).pk])
    _sweep(at=retried, capture=django_capture_on_commit_callbacks)

    assert Notification.objects.get(user=person).push_status == "failed"
    assert [m.to for m in sms_outbox] == [meter.account.registered_mobile]
    notice = _notice(meter.account)
    assert (notice.channel, notice.sent_at) == ("sms", retried)


def test_a_notice_that_reaches_an_account_late_compensates_that_account_alone(
    transformer, fcm_server, sms_outbox, django_capture_on_commit_callbacks
):
    # 49 h ahead, at 08:00 Tuesday in Riyadh. One account has nobody in the app: its SMS goes at
    # once. The other's holder sleeps until 10:00 (quiet hours): the push waits until then, 47 h
    # before the outage, and only that account is owed.
    published = START - timedelta(hours=49)
    on_time = MeterFactory(utility=transformer.feeder.area.utility, transformer=transformer)
    late, (sleeper,) = consumer_on(transformer)
    DeviceFactory(user=sleeper)
    PreferenceFactory(user=sleeper, quiet_start=time(1, 0), quiet_end=time(10, 0))
    outage = _publish(
        _outage(transformer), at=published, capture=django_capture_on_commit_callbacks
    )
    assert Notification.objects.get(user=sleeper).push_status == "held"

    woke = START - timedelta(hours=47)
    with time_machine.travel(woke, tick=False), django_capture_on_commit_callbacks(execute=True):
        notification_tasks.sweep()  # quiet hours are over: the push goes
    _sweep(at=woke, capture=django_capture_on_commit_callbacks)
    _start(outage)

    assert _notice(on_time.account).sent_at == published
    assert (_notice(late.account).channel, _notice(late.account).sent_at) == ("push", woke)
    [compensation] = Compensation.objects.filter(standard=Standard.NOTICE)
    assert compensation.account == late.account
    assert compensation.amount == Decimal("100.00")
    assert "47 h 00 min ahead" in compensation.reason
    assert compensation.details["channel"] == "push"
    assert [m.to for m in sms_outbox] == [on_time.account.registered_mobile]


def test_a_notice_that_never_arrived_before_the_start_is_compensated(
    transformer, sms_gateway, django_capture_on_commit_callbacks
):
    no_app = MeterFactory(utility=transformer.feeder.area.utility, transformer=transformer).account
    sms_gateway.fail_next(400)  # the gateway refuses it for good

    outage = _publish(_outage(transformer), at=PUBLISH, capture=django_capture_on_commit_callbacks)
    _start(outage)

    assert _notice(no_app).status == "failed"
    [compensation] = Compensation.objects.filter(standard=Standard.NOTICE)
    assert compensation.account == no_app
    assert "had not reached you" in compensation.reason


def test_a_busy_gateway_delays_the_sms_and_the_notice_counts_from_when_it_went(
    transformer, sms_gateway, django_capture_on_commit_callbacks
):
    no_app = MeterFactory(utility=transformer.feeder.area.utility, transformer=transformer).account
    sms_gateway.fail_next(503, headers={"Retry-After": "120"})
    published = START - timedelta(hours=48, minutes=1)

    outage = _publish(
        _outage(transformer), at=published, capture=django_capture_on_commit_callbacks
    )
    assert sms_gateway.messages == [] and _notice(no_app).status == "sms"
    # The sweeper takes it back once its retry was due and no task took it.
    _sweep(at=published + timedelta(minutes=8), capture=django_capture_on_commit_callbacks)
    _start(outage)

    assert [m["to"] for m in sms_gateway.messages] == [no_app.registered_mobile]
    assert _notice(no_app).sent_at == published + timedelta(minutes=8)
    [compensation] = Compensation.objects.filter(standard=Standard.NOTICE)
    assert compensation.account == no_app and "47 h 53 min ahead" in compensation.reason


def test_settling_and_sending_again_sends_nothing_twice(
    transformer, sms_outbox, django_capture_on_commit_callbacks
):
    no_app = MeterFactory(utility=transformer.feeder.area.utility, transformer=transformer).account
    _publish(_outage(transformer), at=PUBLISH, capture=django_capture_on_commit_callbacks)
    notice = _notice(no_app)

    later = PUBLISH + timedelta(hours=1)
    with time_machine.travel(later, tick=False), django_capture_on_commit_callbacks(execute=True):
        services.outage_notices_settle(outage_id=notice.outage_id)
        services.outage_notices_sms_send(notice_ids=[notice.pk])
    _sweep(at=later, capture=django_capture_on_commit_callbacks)

    assert len(sms_outbox) == 1
    assert _notice(no_app).sent_at == PUBLISH


def test_one_mobile_holding_several_accounts_gets_one_sms(
    transformer, sms_outbox, django_capture_on_commit_callbacks
):
    utility = transformer.feeder.area.utility
    first = MeterFactory(utility=utility, transformer=transformer).account
    second = MeterFactory(
        utility=utility,
        transformer=transformer,
        account__registered_mobile=first.registered_mobile,
    ).account

    _publish(_outage(transformer), at=PUBLISH, capture=django_capture_on_commit_callbacks)

    assert [m.to for m in sms_outbox] == [first.registered_mobile]
    assert {_notice(first).sent_at, _notice(second).sent_at} == {PUBLISH}


def test_a_reschedule_is_a_new_notice_and_the_old_one_is_not_sent(
    transformer, sms_outbox, django_capture_on_commit_callbacks
):
    no_app = MeterFactory(utility=transformer.feeder.area.utility, transformer=transformer).account
    outage = _outage(transformer)
    with time_machine.travel(PUBLISH, tick=False):
        services.outage_publish(outage_id=outage.pk, now=PUBLISH)  # its notice never went out
    moved = PUBLISH + timedelta(hours=30)
    with time_machine.travel(moved, tick=False), django_capture_on_commit_callbacks(execute=True):
        services.outage_reschedule(
            outage_id=outage.pk,
            planned_start=START + timedelta(hours=1),
            planned_end=START + timedelta(hours=5),
            now=moved,
            confirm_late=True,
        )
    _sweep(at=moved, capture=django_capture_on_commit_callbacks)

    assert dict(OutageNotice.objects.values_list("version", "status")) == {
        1: "dropped",
        2: "sent",
    }
    [sms] = sms_outbox
    assert sms.to == no_app.registered_mobile and "تغيّر موعد" in sms.body  # "moved"
    begun = START + timedelta(hours=1)
    services.outage_start(outage_id=outage.pk, at=begun, now=begun)
    [compensation] = Compensation.objects.filter(standard=Standard.NOTICE)
    assert "43 h 00 min ahead" in compensation.reason


def test_publishing_costs_the_same_queries_for_3_or_30_accounts(transformer):
    def publish_queries(accounts: int) -> int:
        other = transformer_of(transformer.feeder.area.utility)
        for _ in range(accounts):
            meter = MeterFactory(utility=other.feeder.area.utility, transformer=other)
            AccountLinkFactory(account=meter.account, user=UserFactory())
        outage = _outage(other)
        with CaptureQueriesContext(connection) as queries:
            services.outage_publish(outage_id=outage.pk, now=PUBLISH)
        assert OutageNotice.objects.filter(outage=outage).count() == accounts
        return len(queries)

    assert publish_queries(3) == publish_queries(30)


def _plan_nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL plan")
def test_the_sweeper_reads_only_unfinished_notices_through_their_partial_index():
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a test table is small: ask what it can
    waiting = (
        OutageNotice.objects.filter(status=OutageNotice.Status.WAITING)
        .values_list("outage_id", flat=True)
        .order_by()
        .distinct()
    )

    [plan] = json.loads(waiting.explain(format="json"))
    nodes = list(_plan_nodes(plan["Plan"]))

    assert any(n.get("Index Name") == "outage_notice_unfinished" for n in nodes), nodes
    assert not any(n["Node Type"] == "Seq Scan" for n in nodes), nodes
