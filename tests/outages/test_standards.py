"""The guaranteed-standards engine against the acceptance numbers (DOMAIN.md §3, Saudi table)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.models import LedgerEntry, RelayCommand
from notifications.models import Notification
from outages import services, standards
from outages.models import Compensation, Standard
from tests.outages.factories import (
    OutageFactory,
    consumer_on,
    outage_publish_delivered,
    outage_run,
    saudi,
    transformer_of,
)

pytestmark = pytest.mark.django_db

# Thursday 2026-12-03 09:00 Riyadh (UTC+3).
THURSDAY_9 = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)


def _planned(transformer, *, start=THURSDAY_9, hours=4):
    return OutageFactory(
        utility=transformer.feeder.area.utility,
        planned_start=start,
        planned_end=start + timedelta(hours=hours),
        transformers=[transformer],
    )


def _compensations(standard):
    return list(
        Compensation.objects.filter(standard=standard).order_by(
            "account_id", "outage__actual_start", "id"
        )
    )


def test_a_notice_published_47_hours_ahead_is_compensated():
    transformer = transformer_of(saudi())
    meter, _ = consumer_on(transformer)
    outage = _planned(transformer)

    outage_publish_delivered(outage, confirm_late=True, now=THURSDAY_9 - timedelta(hours=47))
    services.outage_start(outage_id=outage.pk, at=THURSDAY_9, now=THURSDAY_9)

    [compensation] = _compensations(Standard.NOTICE)
    assert compensation.account == meter.account
    assert compensation.amount == Decimal("100.00")
    assert compensation.currency == "SAR"
    assert compensation.status == Compensation.Status.PENDING
    assert "47 h 00 min ahead" in compensation.reason


def test_a_notice_published_49_hours_ahead_is_not_compensated():
    transformer = transformer_of(saudi())
    consumer_on(transformer)
    outage = _planned(transformer)

    outage_publish_delivered(outage, now=THURSDAY_9 - timedelta(hours=49))
    services.outage_start(outage_id=outage.pk, at=THURSDAY_9, now=THURSDAY_9)
    services.outage_restore(
        outage_id=outage.pk, at=THURSDAY_9 + timedelta(hours=4), now=THURSDAY_9 + timedelta(hours=4)
    )

    assert Compensation.objects.count() == 0


def test_an_outage_that_starts_early_measures_the_notice_to_its_real_start():
    transformer = transformer_of(saudi())
    consumer_on(transformer)
    outage = _planned(transformer)
    outage_publish_delivered(outage, now=THURSDAY_9 - timedelta(hours=49))
    early = THURSDAY_9 - timedelta(hours=2)

    services.outage_start(outage_id=outage.pk, at=early, now=early)

    assert [c.amount for c in _compensations(Standard.NOTICE)] == [Decimal("100.00")]


def test_a_9_hour_20_minute_restoration_is_200_plus_4_times_50():
    transformer = transformer_of(saudi())
    meter, _ = consumer_on(transformer)

    outage = outage_run(transformer, start=THURSDAY_9, duration=timedelta(hours=9, minutes=20))

    [compensation] = _compensations(Standard.RESTORATION)
    assert compensation.amount == Decimal("400.00")  # 200 + 4 × 50
    assert compensation.account == meter.account
    assert compensation.outage == outage
    assert compensation.details["hours"] == 4
    assert compensation.failure_at == THURSDAY_9 + timedelta(hours=6)


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (timedelta(hours=6), None),
        (timedelta(hours=6, minutes=1), Decimal("250.00")),
        (timedelta(hours=7), Decimal("250.00")),
        (timedelta(hours=7, seconds=1), Decimal("300.00")),
    ],
)
def test_each_started_hour_beyond_six_adds_50(duration, expected):
    transformer = transformer_of(saudi())
    consumer_on(transformer)

    outage_run(transformer, start=THURSDAY_9, duration=duration)

    assert [c.amount for c in _compensations(Standard.RESTORATION)] == (
        [expected] if expected else []
    )


def test_the_third_long_outage_of_a_year_is_400_and_the_fourth_50_more():
    transformer = transformer_of(saudi())
    meter, _ = consumer_on(transformer)
    other_transformer = transformer_of(meter.utility)
    neighbour, _ = consumer_on(other_transformer)
    two_hours = timedelta(hours=2)
    # Not counted: the previous local year (23:30 on 31 December in Riyadh), and one of 1 h 59.
    outage_run(transformer, start=datetime(2026, 12, 31, 20, 30, tzinfo=UTC), duration=two_hours)
    outage_run(
        transformer,
        start=datetime(2027, 1, 10, 6, tzinfo=UTC),
        duration=timedelta(hours=1, minutes=59),
    )
    outage_run(transformer, start=datetime(2027, 2, 1, 6, tzinfo=UTC), duration=two_hours)
    outage_run(transformer, start=datetime(2027, 3, 1, 6, tzinfo=UTC), duration=timedelta(hours=3))
    assert _compensations(Standard.REPEATED) == []

    third = outage_run(transformer, start=datetime(2027, 4, 1, 6, tzinfo=UTC), duration=two_hours)
    # The neighbour shares only this outage: it is their first.
    outage_run(other_transformer, start=datetime(2027, 4, 1, 6, tzinfo=UTC), duration=two_hours)
    fourth = outage_run(transformer, start=datetime(2027, 5, 1, 6, tzinfo=UTC), duration=two_hours)

    rows = _compensations(Standard.REPEATED)
    assert [(c.account, c.outage, c.amount) for c in rows] == [
        (meter.account, third, Decimal("400.00")),
        (meter.account, fourth, Decimal("50.00")),
    ]
    assert not Compensation.objects.filter(account=neighbour.account).exists()


def test_restoration_and_repeated_are_both_owed():
    transformer = transformer_of(saudi())
    consumer_on(transformer)
    for month in (1, 2):
        outage_run(
            transformer, start=datetime(2027, month, 5, 6, tzinfo=UTC), duration=timedelta(hours=2)
        )

    outage_run(transformer, start=datetime(2027, 3, 5, 6, tzinfo=UTC), duration=timedelta(hours=7))

    assert sorted((c.standard, c.amount) for c in Compensation.objects.all()) == [
        (Standard.REPEATED, Decimal("400.00")),
        (Standard.RESTORATION, Decimal("250.00")),
    ]


def test_the_engine_run_twice_records_nothing_twice():
    transformer = transformer_of(saudi())
    consumer_on(transformer)
    outage = outage_run(transformer, start=THURSDAY_9, duration=timedelta(hours=8))

    again = standards.standards_evaluate_outage(outage=outage)

    assert again == []
    assert Compensation.objects.count() == 1


def test_a_utility_without_a_policy_compensates_nothing():
    transformer = transformer_of(saudi(policy=False))
    consumer_on(transformer)

    outage_run(transformer, start=THURSDAY_9, duration=timedelta(hours=12))

    assert Compensation.objects.count() == 0


def _reconnect(meter, *, paid, done):
    return RelayCommand.objects.create(
        meter=meter,
        account=meter.account,
        action=RelayCommand.Action.RECONNECT,
        reason="payment",
        status=RelayCommand.Status.DONE,
        not_before=paid,
        payment_notified_at=paid,
        completed_at=done,
    )


def test_a_reconnection_3_hours_10_after_payment_is_100_plus_2_times_100():
    transformer = transformer_of(saudi())
    meter, _ = consumer_on(transformer)
    paid = THURSDAY_9
    late = _reconnect(meter, paid=paid, done=paid + timedelta(hours=3, minutes=10))
    in_time = _reconnect(consumer_on(transformer)[0], paid=paid, done=paid + timedelta(hours=2))

    owing = standards.reconnections_evaluate(now=paid + timedelta(hours=4))
    standards.reconnections_evaluate(now=paid + timedelta(hours=5))

    assert owing == 1
    [compensation] = Compensation.objects.all()
    assert compensation.standard == Standard.RECONNECTION
    assert compensation.relay_command_id == late.pk
    assert compensation.amount == Decimal("300.00")
    assert not Compensation.objects.filter(relay_command=in_time).exists()


def test_a_wrongful_disconnection_is_500_and_orders_reconnection():
    transformer = transformer_of(saudi())
    meter, _ = consumer_on(transformer)
    disconnect = RelayCommand.objects.create(
        meter=meter,
        account=meter.account,
        action=RelayCommand.Action.DISCONNECT,
        reason="non_payment",
        status=RelayCommand.Status.DONE,
        not_before=THURSDAY_9,
        completed_at=THURSDAY_9,
    )

    compensation, reconnect = standards.wrongful_disconnection_record(
        command_id=disconnect.pk, actor=None, note="Disconnected on a Friday."
    )

    assert compensation.amount == Decimal("500.00")
    assert compensation.standard == Standard.WRONGFUL_DISCONNECTION
    assert reconnect.action == RelayCommand.Action.RECONNECT
    assert reconnect.status == RelayCommand.Status.WAITING
    assert reconnect.reason == "wrongful_disconnection"
    with pytest.raises(Exception, match="already marked wrongful"):
        standards.wrongful_disconnection_record(command_id=disconnect.pk, actor=None)
    assert Compensation.objects.count() == 1
    assert RelayCommand.objects.filter(action="reconnect").count() == 1


def test_compensation_is_credited_after_the_exemption_window_and_the_consumer_told_why():
    transformer = transformer_of(saudi())
    meter, (person,) = consumer_on(transformer)
    outage_run(transformer, start=THURSDAY_9, duration=timedelta(hours=9, minutes=20))
    [compensation] = Compensation.objects.all()

    assert (
        standards.compensations_pay_due(now=compensation.exemption_deadline - timedelta(minutes=1))
        == 0
    )
    paid = standards.compensations_pay_due(now=compensation.exemption_deadline)
    standards.compensations_pay_due(now=compensation.exemption_deadline + timedelta(hours=1))

    assert paid == 1
    compensation.refresh_from_db()
    assert compensation.status == Compensation.Status.CREDITED
    assert compensation.credited_at <= compensation.pay_by
    [entry] = LedgerEntry.objects.filter(account=meter.account)
    assert (entry.kind, entry.amount, entry.key) == (
        LedgerEntry.Kind.COMPENSATION,
        Decimal("400.000"),
        f"compensation:{compensation.pk}",
    )
    [alert] = Notification.objects.filter(user=person, category="compensation_credited")
    assert "400" in alert.body and meter.account.consumer_id in alert.body
    assert "longer than 6 hours" in alert.body


def test_an_approved_exemption_cancels_the_compensation():
    transformer = transformer_of(saudi())
    _meter, _ = consumer_on(transformer)
    consumer_on(transformer)
    outage = outage_run(transformer, start=THURSDAY_9, duration=timedelta(hours=9))
    assert Compensation.objects.count() == 2

    exemption = standards.exemption_file(
        standard=Standard.RESTORATION,
        event_key=f"outage:{outage.pk}",
        justification="A sandstorm brought down the 33 kV line feeding the substation.",
        actor=None,
        now=THURSDAY_9 + timedelta(days=2),
    )
    # While it is pending nothing is paid, even after the window closes.
    assert standards.compensations_pay_due(now=exemption.deadline + timedelta(hours=1)) == 0
    _, cancelled = standards.exemption_decide(exemption_id=exemption.pk, approve=True, actor=None)
    standards.compensations_pay_due(now=exemption.deadline + timedelta(days=10))

    assert cancelled == 2
    assert set(Compensation.objects.values_list("status", flat=True)) == {"cancelled"}
    assert not LedgerEntry.objects.exists()
    assert not Notification.objects.filter(category="compensation_credited").exists()


def test_a_rejected_exemption_lets_the_compensation_be_paid():
    transformer = transformer_of(saudi())
    consumer_on(transformer)
    outage = outage_run(transformer, start=THURSDAY_9, duration=timedelta(hours=9))
    exemption = standards.exemption_file(
        standard=Standard.RESTORATION,
        event_key=f"outage:{outage.pk}",
        justification="Crew delayed by traffic on the ring road for hours.",
        actor=None,
        now=THURSDAY_9 + timedelta(days=1),
    )

    standards.exemption_decide(
        exemption_id=exemption.pk, approve=False, actor=None, note="Not force majeure."
    )
    standards.compensations_pay_due(now=exemption.deadline)

    assert list(Compensation.objects.values_list("status", flat=True)) == ["credited"]


def test_an_undecided_exemption_does_not_hold_payment_past_the_month():
    transformer = transformer_of(saudi())
    consumer_on(transformer)
    outage = outage_run(transformer, start=THURSDAY_9, duration=timedelta(hours=9))
    standards.exemption_file(
        standard=Standard.RESTORATION,
        event_key=f"outage:{outage.pk}",
        justification="A sandstorm brought down the 33 kV line feeding the substation.",
        actor=None,
        now=THURSDAY_9 + timedelta(days=1),
    )
    [compensation] = Compensation.objects.all()

    standards.compensations_pay_due(now=compensation.pay_by - timedelta(days=2))
    assert Compensation.objects.get().status == "pending"
    standards.compensations_pay_due(now=compensation.pay_by - timedelta(hours=12))
    assert Compensation.objects.get().status == "credited"


def test_an_exemption_after_its_deadline_is_refused():
    transformer = transformer_of(saudi())
    consumer_on(transformer)
    outage = outage_run(transformer, start=THURSDAY_9, duration=timedelta(hours=9))
    [compensation] = Compensation.objects.all()

    with pytest.raises(Exception, match="deadline for an exemption passed") as refused:
        standards.exemption_file(
            standard=Standard.RESTORATION,
            event_key=f"outage:{outage.pk}",
            justification="A sandstorm brought down the 33 kV line feeding the substation.",
            actor=None,
            now=compensation.exemption_deadline + timedelta(seconds=1),
        )

    assert refused.value.code == "exemption_deadline_passed"
    assert not compensation.utility.outages.filter(exemptions__isnull=False).exists()


def test_the_exemption_deadline_is_10_saudi_working_days():
    transformer = transformer_of(saudi())
    consumer_on(transformer)
    # Restoration failure at 15:00 Riyadh on Thursday 3 December 2026; Friday and Saturday are the
    # weekend: ten working days later is Thursday 17 December, so the deadline is its end.
    outage_run(transformer, start=THURSDAY_9, duration=timedelta(hours=9))
    [compensation] = Compensation.objects.all()

    assert compensation.exemption_deadline == datetime(2026, 12, 17, 21, 0, tzinfo=UTC)
    assert compensation.pay_by == compensation.failure_at + timedelta(days=30)


def test_compensation_goes_to_whoever_held_the_meter_when_the_outage_began():
    """Published to one tenant; a new tenant moved in before it began, lived through it, is owed."""
    from billing import moves

    transformer = transformer_of(saudi())
    meter, _ = consumer_on(transformer)
    old_account = meter.account
    start = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)  # a Thursday, 09:00 in Riyadh
    outage = _planned(transformer, start=start, hours=9)
    services.outage_publish(outage_id=outage.pk, now=start - timedelta(days=3))
    moves.move_out(account=old_account, at=start - timedelta(days=1))
    new_account = moves.move_in(
        meter=meter,
        consumer_id="SA-NEW-1",
        registered_mobile="+966501234567",
        name="New tenant",
        at=start - timedelta(days=1),
    ).account
    services.outage_start(outage_id=outage.pk, at=start, now=start)
    services.outage_restore(
        outage_id=outage.pk, at=start + timedelta(hours=9), now=start + timedelta(hours=9)
    )

    [compensation] = _compensations(Standard.RESTORATION)
    assert compensation.account == new_account and compensation.amount == Decimal("350.00")
    assert not Compensation.objects.filter(account=old_account).exists()
