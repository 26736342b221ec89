"""Publish, reschedule, cancel, start and restore: notices go to every affected consumer once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from accounts.models import AccountLink
from core.errors import DomainError
from notifications.models import Fanout, Notification
from outages import services
from outages.models import AffectedMeter, Outage, OutageEvent
from tests.accounts.factories import AccountLinkFactory, UserFactory
from tests.meters.factories import MeterFactory
from tests.outages.factories import OutageFactory, consumer_on, saudi, transformer_of

pytestmark = pytest.mark.django_db

START = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)  # Thursday 09:00 in Riyadh
EARLY = START - timedelta(days=4)


@pytest.fixture
def grid():
    transformer = transformer_of(saudi())
    meter_a, (alice, bob) = consumer_on(transformer, users=2)
    meter_b, (carol,) = consumer_on(transformer, language="ar")
    # Alice holds a second account on the same transformer: still one notice for her.
    meter_c = MeterFactory(utility=meter_a.utility, transformer=transformer)
    AccountLinkFactory(account=meter_c.account, user=alice)
    # Not in scope: another transformer; and an unlinked former holder.
    outsider, _ = consumer_on(transformer_of(meter_a.utility))
    AccountLink.objects.create(
        user=UserFactory(), account=meter_b.account, verified_mobile="x", unlinked_at=EARLY
    )
    return {
        "transformer": transformer,
        "users": {alice, bob, carol},
        "meters": {meter_a, meter_b, meter_c},
        "outsider": outsider,
    }


def _outage(grid, **kw):
    kw.setdefault("planned_start", START)
    kw.setdefault("planned_end", START + timedelta(hours=4))
    return OutageFactory(
        utility=grid["transformer"].feeder.area.utility, transformers=[grid["transformer"]], **kw
    )


def _recipients(category):
    return sorted(Notification.objects.filter(category=category).values_list("user_id", flat=True))


def _ids(users):
    return sorted(u.pk for u in users)


def test_every_affected_consumer_gets_each_notice_once(grid):
    outage = _outage(grid)

    services.outage_publish(outage_id=outage.pk, now=EARLY)
    with pytest.raises(DomainError):
        services.outage_publish(outage_id=outage.pk, now=EARLY)
    services.outage_reschedule(
        outage_id=outage.pk,
        planned_start=START + timedelta(hours=1),
        planned_end=START + timedelta(hours=5),
        now=EARLY + timedelta(hours=1),
    )
    services.outage_reminders_send(now=START - timedelta(hours=12))
    services.outage_reminders_send(now=START - timedelta(hours=11))
    services.outage_start(
        outage_id=outage.pk, at=START + timedelta(hours=1), now=START + timedelta(hours=1)
    )
    services.outage_restore(
        outage_id=outage.pk, at=START + timedelta(hours=4), now=START + timedelta(hours=4)
    )

    everyone = _ids(grid["users"])
    for category in ("outage_planned", "outage_rescheduled", "outage_reminder", "outage_restored"):
        assert _recipients(category) == everyone, category
    assert Notification.objects.count() == 4 * len(everyone)
    assert set(AffectedMeter.objects.values_list("meter_id", flat=True)) == {
        m.pk for m in grid["meters"]
    }


def test_the_notice_says_where_and_when_in_local_time(grid):
    outage = _outage(grid)

    services.outage_publish(outage_id=outage.pk, now=EARLY)

    alice_notice = Notification.objects.filter(category="outage_planned", language="en").first()
    assert "9:00" in alice_notice.body and "1:00" in alice_notice.body
    # The place as consumers know it (the area here: the grid has no locality words), never the
    # transformer's name or code.
    assert grid["transformer"].feeder.area.name in alice_notice.body
    assert grid["transformer"].name not in alice_notice.body
    arabic = Notification.objects.get(category="outage_planned", language="ar")
    assert "ستنقطع الكهرباء" in arabic.body
    assert Fanout.objects.get().dedupe_key == f"outage:{outage.pk}:published:v1"


def test_publishing_late_needs_confirmation_and_is_recorded(grid):
    outage = _outage(grid)

    with pytest.raises(DomainError) as refused:
        services.outage_publish(outage_id=outage.pk, now=START - timedelta(hours=47))
    assert refused.value.code == "late_notice_unconfirmed"
    assert "48 hours" in refused.value.message
    outage.refresh_from_db()
    assert outage.status == Outage.Status.DRAFT and not Notification.objects.exists()
    assert not AffectedMeter.objects.exists()

    services.outage_publish(outage_id=outage.pk, confirm_late=True, now=START - timedelta(hours=47))
    outage.refresh_from_db()
    assert outage.late_notice and outage.status == Outage.Status.PUBLISHED
    assert list(outage.events.values_list("action", flat=True)) == [
        "published",
        "late_notice_confirmed",
    ]


def test_an_unplanned_outage_is_in_progress_and_notified_at_once_with_its_estimate(grid):
    now = datetime(2026, 11, 22, 10, tzinfo=UTC)
    outage = _outage(
        grid,
        kind=Outage.Kind.UNPLANNED,
        planned_start=now - timedelta(minutes=20),
        planned_end=now + timedelta(hours=3),
    )

    services.outage_publish(outage_id=outage.pk, now=now)

    outage.refresh_from_db()
    assert outage.status == Outage.Status.IN_PROGRESS
    assert outage.actual_start == now - timedelta(minutes=20)
    assert _recipients("outage_unplanned_eta") == _ids(grid["users"])
    english = Notification.objects.filter(language="en").first()
    assert "expect supply back by" in english.body and "4:00" in english.body


def test_cancelling_a_published_outage_tells_everyone(grid):
    outage = _outage(grid)
    services.outage_publish(outage_id=outage.pk, now=EARLY)

    services.outage_cancel(outage_id=outage.pk, note="Crew needed elsewhere")

    assert _recipients("outage_cancelled") == _ids(grid["users"])
    assert Outage.objects.get().status == Outage.Status.CANCELLED


def test_cancelling_a_draft_tells_nobody(grid):
    outage = _outage(grid)
    services.outage_cancel(outage_id=outage.pk)
    assert not Notification.objects.exists()


@pytest.mark.parametrize(
    ("step", "code"),
    [
        (lambda o: services.outage_publish(outage_id=o.pk, now=EARLY), "not_a_draft"),
        (lambda o: services.outage_start(outage_id=o.pk, now=START), "not_startable"),
        (lambda o: services.outage_cancel(outage_id=o.pk), "not_cancellable"),
        (
            lambda o: services.outage_reschedule(
                outage_id=o.pk,
                planned_start=START,
                planned_end=START + timedelta(hours=1),
                now=EARLY,
            ),
            "not_reschedulable",
        ),
    ],
)
def test_a_cancelled_outage_refuses_every_step(grid, step, code):
    outage = _outage(grid)
    services.outage_publish(outage_id=outage.pk, now=EARLY)
    services.outage_cancel(outage_id=outage.pk)
    before = Notification.objects.count()

    with pytest.raises(DomainError) as refused:
        step(outage)

    assert refused.value.code == code
    assert Notification.objects.count() == before
    assert Outage.objects.get().status == Outage.Status.CANCELLED


def test_restoring_twice_is_refused_and_notifies_once(grid):
    outage = _outage(grid)
    services.outage_publish(outage_id=outage.pk, now=EARLY)
    services.outage_start(outage_id=outage.pk, at=START, now=START)
    end = START + timedelta(hours=3)
    services.outage_restore(outage_id=outage.pk, at=end, now=end)

    with pytest.raises(DomainError) as refused:
        services.outage_restore(
            outage_id=outage.pk, at=end + timedelta(hours=1), now=end + timedelta(hours=1)
        )

    assert refused.value.code == "already_restored"
    assert Outage.objects.get().actual_end == end
    assert OutageEvent.objects.filter(action="restored").count() == 1
    assert _recipients("outage_restored") == _ids(grid["users"])


def test_an_end_before_the_start_is_refused(grid):
    outage = _outage(grid)
    with pytest.raises(DomainError) as refused:
        services.outage_reschedule(
            outage_id=outage.pk,
            planned_start=START,
            planned_end=START - timedelta(hours=1),
            now=EARLY,
        )
    assert refused.value.code in ("end_before_start", "not_reschedulable")
    with pytest.raises(DomainError) as refused:
        services.outage_schedule_check(kind="planned", planned_start=START, planned_end=START)
    assert refused.value.code == "end_before_start"


def test_a_restoration_before_the_start_is_refused(grid):
    outage = _outage(grid)
    services.outage_publish(outage_id=outage.pk, now=EARLY)
    services.outage_start(outage_id=outage.pk, at=START, now=START)

    with pytest.raises(DomainError) as refused:
        services.outage_restore(outage_id=outage.pk, at=START - timedelta(minutes=1), now=START)

    assert refused.value.code == "end_before_start"
    assert Outage.objects.get().status == Outage.Status.IN_PROGRESS
    assert not Notification.objects.filter(category="outage_restored").exists()


def test_a_scope_with_no_meters_is_refused(grid):
    empty = transformer_of(grid["transformer"].feeder.area.utility)
    outage = OutageFactory(
        utility=empty.feeder.area.utility,
        planned_start=START,
        planned_end=START + timedelta(hours=2),
        transformers=[empty],
    )

    with pytest.raises(DomainError) as refused:
        services.outage_publish(outage_id=outage.pk, now=EARLY)

    assert refused.value.code == "empty_scope"
    outage.refresh_from_db()
    assert outage.status == Outage.Status.DRAFT and outage.version == 0
    assert not Notification.objects.exists() and not OutageEvent.objects.exists()


def test_a_planned_outage_in_the_past_cannot_be_published(grid):
    outage = _outage(grid)
    with pytest.raises(DomainError) as refused:
        services.outage_publish(outage_id=outage.pk, now=START + timedelta(minutes=1))
    assert refused.value.code == "start_in_past"


def test_the_reminder_waits_for_the_evening_before_and_goes_once(grid):
    outage = _outage(grid)
    services.outage_publish(outage_id=outage.pk, now=EARLY)
    # 18:00 Riyadh on Wednesday 2 December is 15:00 UTC.
    evening = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)

    assert services.outage_reminders_send(now=evening - timedelta(minutes=1)) == 0
    assert services.outage_reminders_send(now=evening) == 1
    assert services.outage_reminders_send(now=evening + timedelta(minutes=5)) == 0
    assert _recipients("outage_reminder") == _ids(grid["users"])


def test_a_notice_given_after_the_reminder_time_is_not_reminded(grid):
    outage = _outage(grid)
    services.outage_publish(outage_id=outage.pk, confirm_late=True, now=START - timedelta(hours=10))

    assert services.outage_reminders_send(now=START - timedelta(hours=9)) == 0
