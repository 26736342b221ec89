"""Outages detected from the meters: the head-end's power-failure and power-restored events, sent
over HTTP, become one outage per tripped feeder with the right meters; it closes when the last
meter is back, whatever order they come back in; a meter alone is a fault at that consumer."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from meters.models import SupplyPeriod
from notifications.models import Notification
from outages import services
from outages.detection import outages_detect
from outages.models import AffectedMeter, DetectionPolicy, Outage, OutageEvent, OutageNotice
from tests.meters.factories import MeterFactory, head_end_token
from tests.outages.factories import (
    FeederFactory,
    OutageFactory,
    TransformerFactory,
    consumer_on,
    saudi,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # 12:00 in Riyadh
TRIP = NOW - timedelta(minutes=10)


@pytest.fixture
def grid():
    """A Saudi utility: feeder F (3 transformers × 4 meters, people in the app on most) and feeder
    G (1 transformer × 4 meters) in the same area."""
    utility = saudi()
    feeder = FeederFactory(area__utility=utility, locality="Al Olaya, block 3")
    other = FeederFactory(area=feeder.area)
    meters = []
    for _ in range(3):
        transformer = TransformerFactory(feeder=feeder)
        for i in range(4):
            if i == 3:  # nobody in the app: told by SMS to the registered mobile
                meter = MeterFactory(utility=utility, transformer=transformer)
            else:
                meter, _ = consumer_on(transformer, language="ar" if i else "en")
            meters.append(meter)
    spared_transformer = TransformerFactory(feeder=other)
    spared = [consumer_on(spared_transformer)[0] for _ in range(4)]
    return {"utility": utility, "feeder": feeder, "meters": meters, "spared": spared}


@pytest.fixture
def head_end(api, grid):
    api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {head_end_token(grid['utility'])}")
    return api


def _send(head_end, events, *, at=NOW):
    with time_machine.travel(at, tick=False):
        response = head_end.post("/api/v1/headend/events/", {"events": events})
    assert response.status_code == 200, response.json()
    return response.json()


def _event(meter, kind, at, **extra):
    return {"meter": meter.serial, "kind": kind, "occurred_at": at.isoformat(), **extra}


def _trip(head_end, meters, *, at=TRIP, batches=3, sent=None):
    """Every meter's last gasp within a few seconds, sent in `batches` bursts."""
    events = [_event(m, "power_off", at + timedelta(seconds=i % 20)) for i, m in enumerate(meters)]
    size = -(-len(events) // batches)
    for start in range(0, len(events), size):
        _send(
            head_end, events[start : start + size], at=sent or max(NOW, at + timedelta(minutes=1))
        )


def test_a_feeder_trip_becomes_one_outage_with_its_meters(head_end, grid, sms_outbox):
    _trip(head_end, grid["meters"])

    outage = Outage.objects.get()
    assert (outage.kind, outage.source, outage.status) == ("unplanned", "meters", "in_progress")
    assert list(outage.feeders.all()) == [grid["feeder"]]
    assert outage.actual_start == TRIP
    affected = AffectedMeter.objects.filter(outage=outage)
    assert {a.meter_id for a in affected} == {m.pk for m in grid["meters"]}
    assert all(a.period_id is not None for a in affected)
    assert not AffectedMeter.objects.filter(meter__in=grid["spared"]).exists()
    assert set(SupplyPeriod.objects.values_list("state", flat=True)) == {"outage"}
    # One notice per person: "there is a power outage …, expected back by …", in their language.
    notices = Notification.objects.filter(category="outage_unplanned_eta")
    assert notices.count() == notices.values("user_id").distinct().count() == 9
    arabic = notices.filter(user__language="ar").first()
    assert "انقطاع" in arabic.title
    # The three accounts with nobody in the app: an SMS to the registered mobile; the nine people
    # in the app have no phone that takes pushes here, so the urgent category texts them instead.
    assert OutageNotice.objects.filter(outage=outage, channel="sms", status="sent").count() == 3
    assert len(sms_outbox) == 3 + 9


def test_the_same_storm_sent_again_changes_nothing(head_end, grid, sms_outbox):
    _trip(head_end, grid["meters"])
    sent = (Notification.objects.count(), len(sms_outbox))
    _trip(head_end, grid["meters"], batches=1)

    assert Outage.objects.count() == 1
    assert SupplyPeriod.objects.count() == 12
    assert (Notification.objects.count(), len(sms_outbox)) == sent


def test_restorations_in_any_order_close_it_at_the_last_one(head_end, grid):
    _trip(head_end, grid["meters"])
    outage = Outage.objects.get()
    back = {m.pk: TRIP + timedelta(hours=1, minutes=i) for i, m in enumerate(grid["meters"])}
    order = list(grid["meters"])
    random.Random(17).shuffle(order)
    *first, last = order
    _send(head_end, [_event(m, "power_on", back[m.pk]) for m in first], at=NOW + timedelta(hours=2))
    outage.refresh_from_db()
    assert outage.status == "in_progress"

    _send(head_end, [_event(last, "power_on", back[last.pk])], at=NOW + timedelta(hours=2))
    outage.refresh_from_db()
    assert outage.status == "restored"
    assert outage.actual_end == max(back.values())
    assert Notification.objects.filter(category="outage_restored").count() == 9
    assert OutageEvent.objects.filter(outage=outage, action="restored").count() == 1


def test_one_meter_alone_is_a_fault_at_that_consumer(head_end, grid):
    lonely = grid["meters"][0]
    _send(head_end, [_event(lonely, "power_off", TRIP)], at=TRIP + timedelta(seconds=30))
    assert SupplyPeriod.objects.get().state == "new"  # its neighbours may not have spoken yet

    with time_machine.travel(NOW, tick=False):
        counts = outages_detect(utility_id=grid["utility"].pk, now=NOW)
    assert counts["single"] == 1
    assert SupplyPeriod.objects.get().state == "single"
    assert not Outage.objects.exists()


def test_two_transformers_out_is_one_outage_of_both_then_the_feeder(head_end, grid):
    meters = grid["meters"]
    _trip(head_end, meters[:4], batches=1)  # transformer 1
    outage = Outage.objects.get()
    assert outage.transformers.count() == 1 and not outage.feeders.exists()
    assert outage.affected.count() == 4

    _trip(head_end, meters[4:], at=TRIP + timedelta(minutes=3), batches=1)  # transformers 2, 3
    outage = Outage.objects.get()  # still one
    assert list(outage.feeders.all()) == [grid["feeder"]]
    assert not outage.transformers.exists()
    assert outage.affected.count() == 12
    assert outage.actual_start == TRIP
    assert OutageEvent.objects.filter(outage=outage, action="grown").count() == 1
    # The newcomers were told; those told already were not told again.
    assert Notification.objects.filter(category="outage_unplanned_eta").count() == 9


def test_a_failure_in_a_planned_outage_is_its_evidence_not_a_new_outage(head_end, grid):
    transformer = grid["meters"][0].transformer
    planned = OutageFactory(
        utility=grid["utility"],
        planned_start=NOW + timedelta(days=3),
        planned_end=NOW + timedelta(days=3, hours=4),
        transformers=[transformer],
    )
    with time_machine.travel(NOW, tick=False):
        services.outage_publish(outage_id=planned.pk, now=NOW)
    start = NOW + timedelta(days=3)
    with time_machine.travel(start, tick=False):
        services.outage_start(outage_id=planned.pk, at=start, now=start)
    _trip(head_end, grid["meters"][:4], at=start + timedelta(seconds=5), batches=1)

    assert Outage.objects.count() == 1
    linked = AffectedMeter.objects.filter(outage=planned, period__isnull=False)
    assert linked.count() == 4


def test_a_late_restore_of_a_restored_outage_is_linked_and_measured_again(head_end, grid):
    meters = grid["meters"]
    _trip(head_end, meters)
    _send(
        head_end,
        [_event(m, "power_on", TRIP + timedelta(hours=1)) for m in meters[:-1]],
        at=NOW + timedelta(hours=1),
    )
    # The last meter's restore was lost; staff restore the outage by hand.
    outage = Outage.objects.get()
    with time_machine.travel(NOW + timedelta(hours=2), tick=False):
        services.outage_restore(outage_id=outage.pk, at=TRIP + timedelta(hours=1, minutes=30))
    # Days later the head-end delivers it: the meter's own period closes.
    _send(
        head_end,
        [_event(meters[-1], "power_on", TRIP + timedelta(hours=7))],
        at=NOW + timedelta(days=2),
    )
    period = AffectedMeter.objects.get(outage=outage, meter=meters[-1]).period
    assert period.on_at == TRIP + timedelta(hours=7)
    assert period.state == "outage"


def test_detection_off_leaves_outages_to_staff(head_end, grid):
    DetectionPolicy.objects.create(utility=grid["utility"], enabled=False)
    _trip(head_end, grid["meters"])
    with time_machine.travel(NOW, tick=False):
        outages_detect(utility_id=grid["utility"].pk, now=NOW)
    assert not Outage.objects.exists()
    assert set(SupplyPeriod.objects.values_list("state", flat=True)) == {"single"}
