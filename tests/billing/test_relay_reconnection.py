"""The 2-hour reconnection standard (DOMAIN.md §3: 100 SAR, plus 100 per further hour or part) is
measured from the payment to the confirmed reconnection, however many commands it took: a
reconnect refused and made again, one retried after head-end errors, one deferred because the
disconnect was still in flight when the payment came. Saudi Electricity, clock pinned."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection

from billing import relay
from billing.ledger import ledger_post
from billing.models import RelayCommand, TopUp
from billing.payments import topup_confirm
from outages import standards
from outages.models import Compensation, Standard
from tests.billing.relay_support import relay_beat_at
from tests.meters.factories import MeterFactory
from tests.outages.factories import saudi

RIYADH = ZoneInfo("Asia/Riyadh")


def riyadh(hour, minute=0, second=0) -> datetime:
    return datetime(2026, 12, 1, hour, minute, second, tzinfo=RIYADH)  # a Tuesday


def prepaid_meter():
    return MeterFactory(utility=saudi(), serial="SAM0000001")


def disconnected(meter):
    """Out of credit and disconnected at 10:00."""
    with time_machine.travel(riyadh(10), tick=False):
        ledger_post(
            account=meter.account,
            kind="energy_charge",
            amount=Decimal("-5.00"),
            key=f"energy:{meter.pk}",
            description="energy",
        )
        [command] = relay.disconnect_evaluate(account=meter.account)
        assert relay.relay_dispatch(command_id=str(command.pk)).status == "done"
    return command


def pay(account, amount="50.00"):
    topup = TopUp.objects.create(
        account=account, amount=Decimal(amount), currency="SAR", channel="app"
    )
    return topup_confirm(topup=topup).topup


def owed(now):
    standards.reconnections_evaluate(now=now)
    return list(Compensation.objects.filter(standard=Standard.RECONNECTION))


@pytest.mark.django_db
def test_a_reconnect_refused_and_made_again_is_measured_from_the_payment(
    head_end, django_capture_on_commit_callbacks
):
    meter = prepaid_meter()
    disconnected(meter)
    head_end.fail_next(400)  # the head-end refuses the first reconnect
    with (
        time_machine.travel(riyadh(11), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        pay(meter.account)
    [refused] = RelayCommand.objects.filter(action="reconnect")
    assert (refused.status, refused.payment_notified_at) == ("failed", riyadh(11))

    # The beat at 14:10 orders it again; it carries the payment's time.
    relay_beat_at(riyadh(14, 10), django_capture_on_commit_callbacks)

    again = RelayCommand.objects.filter(action="reconnect").exclude(pk=refused.pk).get()
    assert (again.status, again.payment_notified_at, again.completed_at) == (
        "done",
        riyadh(11),
        riyadh(14, 10),
    )
    [compensation] = owed(riyadh(14, 30))
    assert compensation.relay_command == again
    assert compensation.amount == Decimal("300.00")  # 3 h 10: 100 + 2 × 100
    assert compensation.details["payment_notified_at"] == "2026-12-01T11:00:00+03:00"


@pytest.mark.django_db
def test_a_reconnect_retried_after_head_end_errors_is_measured_from_the_payment(
    head_end, django_capture_on_commit_callbacks
):
    meter = prepaid_meter()
    disconnected(meter)
    head_end.fail_next(503, times=3)
    with (
        time_machine.travel(riyadh(11), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        pay(meter.account)
    for minute in (1, 6):  # retried at 11:01 and 11:06, refused again
        relay_beat_at(riyadh(11, minute), django_capture_on_commit_callbacks)

    relay_beat_at(riyadh(13, 30), django_capture_on_commit_callbacks)

    [reconnect] = RelayCommand.objects.filter(action="reconnect")
    assert (reconnect.status, reconnect.attempts) == ("done", 4)
    [compensation] = owed(riyadh(14))
    assert compensation.amount == Decimal("200.00")  # 2 h 30: 100 + 1 × 100


@pytest.mark.django_db(transaction=True)
def test_a_reconnect_deferred_behind_a_disconnect_in_flight_is_measured_from_the_payment(
    head_end, django_capture_on_commit_callbacks
):
    meter = prepaid_meter()
    with time_machine.travel(riyadh(10), tick=False):
        ledger_post(
            account=meter.account,
            kind="energy_charge",
            amount=Decimal("-5.00"),
            key="energy",
            description="energy",
        )
        [command] = relay.disconnect_evaluate(account=meter.account)

    with time_machine.travel(riyadh(10), tick=False) as clock:

        def payment_arrives(message):
            # While the head-end carries out the disconnect, the consumer's payment is notified.
            try:
                clock.shift(timedelta(seconds=2))
                pay(meter.account)
            finally:
                connection.close()

        head_end.during = payment_arrives
        done = relay.relay_dispatch(command_id=str(command.pk))

    assert done.status == "done"  # sent before the payment: not wrongful
    assert not Compensation.objects.exists()
    assert not RelayCommand.objects.filter(action="reconnect").exists()  # deferred

    # The workers are down until 12:30; the first beat finds the meter off and paid for.
    relay_beat_at(riyadh(12, 30), django_capture_on_commit_callbacks)

    [reconnect] = RelayCommand.objects.filter(action="reconnect")
    assert (reconnect.status, reconnect.payment_notified_at) == ("done", riyadh(10, 0, 2))
    [compensation] = owed(riyadh(13))
    assert compensation.amount == Decimal("200.00")  # 2 h 29 min 58 s: 100 + 1 × 100
    assert compensation.relay_command == reconnect


@pytest.mark.django_db
def test_a_payment_reconnect_recorded_without_its_payment_time_is_still_measured():
    """Reconnects made before they carried the payment time (and any made without it)."""
    meter = prepaid_meter()
    disconnected(meter)
    with time_machine.travel(riyadh(11), tick=False):
        pay(meter.account, "3.00")  # not enough: still in debt
    with time_machine.travel(riyadh(11, 30), tick=False):
        pay(meter.account, "10.00")  # 8.00: this one called for the reconnect
    reconnect = RelayCommand.objects.create(
        meter=meter,
        account=meter.account,
        action="reconnect",
        reason="payment",
        status="done",
        created_at=riyadh(13, 59),
        not_before=riyadh(13, 59),
        completed_at=riyadh(14),
    )

    [compensation] = owed(riyadh(15))

    assert compensation.relay_command == reconnect
    assert compensation.amount == Decimal("200.00")  # from 11:30: 2 h 30
    assert compensation.failure_at == riyadh(13, 30)


@pytest.mark.django_db
def test_a_reconnect_within_two_hours_of_the_payment_owes_nothing(
    head_end, django_capture_on_commit_callbacks
):
    meter = prepaid_meter()
    disconnected(meter)
    with (
        time_machine.travel(riyadh(11), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        pay(meter.account)

    [reconnect] = RelayCommand.objects.filter(action="reconnect")
    assert reconnect.status == "done" and owed(riyadh(14)) == []
