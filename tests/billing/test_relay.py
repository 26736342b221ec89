"""Disconnection waits for friendly hours; a top-up reconnects at once, and the time is recorded."""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal

import pytest
import time_machine

from billing import relay
from billing.ledger import ledger_post
from billing.models import RelayCommand, TopUp
from billing.payments import topup_confirm
from tests.billing.factories import policy
from tests.meters.factories import MeterFactory


@pytest.fixture
def meter(db):
    return MeterFactory()  # Kuwait: weekend Friday and Saturday


def overdraw(account, amount="-0.500"):
    ledger_post(
        account=account,
        kind="energy_charge",
        amount=Decimal(amount),
        key=f"c{amount}",
        description="energy",
    )


@pytest.mark.parametrize(
    ("now_utc", "expected_local", "due_now"),
    [
        # Tuesday 2026-11-17 02:00 Kuwait (23:00 UTC Monday): waits for 08:00 the same morning.
        (datetime(2026, 11, 16, 23, 0, tzinfo=UTC), "2026-11-17T08:00:00+03:00", False),
        # Tuesday 10:00: allowed at once.
        (datetime(2026, 11, 17, 7, 0, tzinfo=UTC), "2026-11-17T10:00:00+03:00", True),
        # Tuesday 19:30: night, waits for Wednesday 08:00.
        (datetime(2026, 11, 17, 16, 30, tzinfo=UTC), "2026-11-18T08:00:00+03:00", False),
        # Thursday 20:00 before a Friday-Saturday weekend: Sunday 08:00.
        (datetime(2026, 11, 19, 17, 0, tzinfo=UTC), "2026-11-22T08:00:00+03:00", False),
        # Kuwait National Day, Wednesday 2026-02-25, 10:00, then Liberation Day the 26th: Sunday 1 March.
        (datetime(2026, 2, 25, 7, 0, tzinfo=UTC), "2026-03-01T08:00:00+03:00", False),
    ],
)
def test_a_disconnection_waits_for_an_allowed_time(meter, now_utc, expected_local, due_now):
    policy(meter.utility)
    overdraw(meter.account)

    commands = relay.disconnect_evaluate(account=meter.account, now=now_utc)

    assert len(commands) == 1
    assert commands[0].not_before.astimezone(meter.utility.zone).isoformat() == expected_local
    with time_machine.travel(now_utc):
        assert relay.relay_due(now=now_utc) == ([str(commands[0].pk)] if due_now else [])


def test_nothing_is_disconnected_while_emergency_credit_lasts(meter):
    policy(meter.utility, emergency_credit=Decimal("1.000"))
    overdraw(meter.account, "-0.500")
    assert relay.disconnect_evaluate(account=meter.account) == []
    overdraw(meter.account, "-0.600")
    assert len(relay.disconnect_evaluate(account=meter.account)) == 1


def test_a_due_disconnection_is_sent_and_the_meter_opens(meter):
    policy(
        meter.utility,
        friendly_night_start=time(23, 59),
        friendly_night_end=time(0, 0),
        no_disconnect_on_weekends=False,
        no_disconnect_on_holidays=False,
    )
    overdraw(meter.account)
    command = relay.disconnect_evaluate(account=meter.account)[0]

    done = relay.relay_dispatch(command_id=str(command.pk))

    assert done.status == "done" and done.completed_at
    meter.refresh_from_db()
    assert (meter.relay, meter.status) == ("open", "disconnected")
    assert relay.relay_dispatch(command_id=str(command.pk)) is None  # claimed once


def test_a_top_up_cancels_a_waiting_disconnection(meter, django_capture_on_commit_callbacks):
    policy(meter.utility)
    overdraw(meter.account)
    waiting = relay.disconnect_evaluate(
        account=meter.account, now=datetime(2026, 11, 16, 23, 0, tzinfo=UTC)
    )[0]
    topup = TopUp.objects.create(
        account=meter.account, amount=Decimal("5.000"), currency="KWD", channel="app"
    )
    with django_capture_on_commit_callbacks(execute=True):
        topup_confirm(topup=topup)
    waiting.refresh_from_db()
    assert waiting.status == "cancelled"
    assert not RelayCommand.objects.filter(action="reconnect").exists()  # it was never cut


def test_a_top_up_reconnects_at_once_and_records_the_time(
    meter, django_capture_on_commit_callbacks
):
    meter.relay, meter.status = "open", "disconnected"
    meter.save()
    overdraw(meter.account)
    paid_at = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)  # a Friday night: reconnection never waits
    topup = TopUp.objects.create(
        account=meter.account, amount=Decimal("5.000"), currency="KWD", channel="app"
    )

    with django_capture_on_commit_callbacks(execute=True):
        topup_confirm(topup=topup, paid_at=paid_at)

    command = RelayCommand.objects.get(action="reconnect")
    assert command.status == "done"
    assert command.payment_notified_at == paid_at
    assert command.completed_at is not None
    meter.refresh_from_db()
    assert (meter.relay, meter.status) == ("closed", "active")


def test_a_top_up_that_leaves_the_balance_below_zero_does_not_reconnect(
    meter, django_capture_on_commit_callbacks
):
    meter.relay, meter.status = "open", "disconnected"
    meter.save()
    overdraw(meter.account, "-3.000")
    topup = TopUp.objects.create(
        account=meter.account, amount=Decimal("1.000"), currency="KWD", channel="app"
    )
    with django_capture_on_commit_callbacks(execute=True):
        topup_confirm(topup=topup)
    assert not RelayCommand.objects.filter(action="reconnect").exists()


def test_a_head_end_outage_is_retried_later(meter, settings):
    settings.HEADEND_BACKEND = "http"
    settings.HEADEND_URL = "http://127.0.0.1:9/commands"  # nothing listens: a transient failure
    policy(
        meter.utility,
        friendly_night_start=time(23, 59),
        friendly_night_end=time(0, 0),
        no_disconnect_on_weekends=False,
        no_disconnect_on_holidays=False,
    )
    overdraw(meter.account)
    command = relay.disconnect_evaluate(account=meter.account)[0]

    assert relay.relay_dispatch(command_id=str(command.pk)) is None

    command.refresh_from_db()
    assert (
        command.status == "waiting"
        and command.attempts == 1
        and command.not_before > command.created_at
    )
    meter.refresh_from_db()
    assert meter.relay == "closed"
