"""Friendly hours and the account's state are checked when a disconnect is sent, on every path:
the first send, a retry after a head-end error, a backlog after a worker outage, a dead worker's
command. Saudi Electricity (Asia/Riyadh, weekend Friday and Saturday), clock pinned; the
default billing policy forbids disconnection from 18:00 to 08:00, at weekends and on holidays."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from billing import relay
from billing.ledger import ledger_post
from billing.models import RelayCommand, TopUp
from billing.payments import topup_confirm
from outages.models import Compensation
from tests.billing.factories import policy
from tests.billing.relay_support import disconnect_ordered, relay_beat_at
from tests.meters.factories import MeterFactory
from tests.outages.factories import saudi

RIYADH = ZoneInfo("Asia/Riyadh")


def riyadh(month, day, hour, minute=0, second=0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=RIYADH)


# Tuesday 1 December 2026; Wednesday the 2nd, Thursday the 3rd.
TUESDAY_10 = riyadh(12, 1, 10)
WEDNESDAY_8 = riyadh(12, 2, 8)
THURSDAY_8 = riyadh(12, 3, 8)


@pytest.fixture
def meter(db):
    return MeterFactory(utility=saudi(), serial="SAM0000001")


def dispatch_at(command, at):
    with time_machine.travel(at, tick=False):
        return relay.relay_dispatch(command_id=str(command.pk))


def pay(account, amount, *, at, paid_at=None):
    with time_machine.travel(at, tick=False):
        topup = TopUp.objects.create(
            account=account, amount=Decimal(amount), currency="SAR", channel="app"
        )
        return topup_confirm(topup=topup, paid_at=paid_at).topup


@pytest.mark.parametrize(
    ("send_at", "waits_until"),
    [
        (riyadh(12, 1, 17, 59), None),
        # The head-end may act on a command until its timeouts run out (20 s): 18:00:05.
        (riyadh(12, 1, 17, 59, 45), WEDNESDAY_8),
        (riyadh(12, 1, 18, 0), WEDNESDAY_8),
        (riyadh(12, 2, 7, 59), WEDNESDAY_8),
        (WEDNESDAY_8, None),
        # Thursday evening: Friday and Saturday are the weekend.
        (riyadh(12, 3, 18, 0), riyadh(12, 6, 8)),
    ],
)
def test_friendly_hours_are_checked_at_the_moment_of_sending(meter, head_end, send_at, waits_until):
    command = disconnect_ordered(
        meter, TUESDAY_10
    )  # due at once; the worker only gets to it at `send_at`

    done = dispatch_at(command, send_at)

    command.refresh_from_db()
    meter.refresh_from_db()
    if waits_until is None:
        assert done.status == "done" and done.sent_at == send_at
        assert [m["at"] for m in head_end.commands("disconnect")] == [send_at]
        assert meter.relay == "open"
    else:
        assert done is None
        assert (command.status, command.not_before, command.sent_at) == (
            "waiting",
            waits_until,
            None,
        )
        assert "outside the allowed hours" in command.error
        assert head_end.received == [] and meter.relay == "closed"


def test_a_retry_after_a_503_at_1759_waits_for_the_next_morning(meter, head_end):
    command = disconnect_ordered(meter, TUESDAY_10)
    head_end.fail_next(503)

    assert dispatch_at(command, riyadh(12, 1, 17, 59)) is None

    command.refresh_from_db()
    # 17:59 + 60 s is night: the retry is due at Wednesday 08:00, not 18:00:05.
    assert (command.status, command.attempts, command.not_before) == ("waiting", 1, WEDNESDAY_8)
    with time_machine.travel(riyadh(12, 1, 18, 0, 5), tick=False):
        assert relay.relay_due() == []
        # Even a retry scheduled by the old rule, due at 18:00:00, is held when a worker takes it.
        RelayCommand.objects.filter(pk=command.pk).update(not_before=riyadh(12, 1, 18))
        assert relay.relay_dispatch(command_id=str(command.pk)) is None
    command.refresh_from_db()
    assert command.not_before == WEDNESDAY_8
    assert head_end.received == [] and len(head_end.refused) == 1

    done = dispatch_at(command, WEDNESDAY_8)

    assert done.status == "done" and done.attempts == 2
    assert [m["at"] for m in head_end.commands("disconnect")] == [WEDNESDAY_8]
    assert not Compensation.objects.exists()


def test_a_backlog_after_a_worker_outage_goes_the_next_allowed_morning(
    meter, head_end, django_capture_on_commit_callbacks
):
    command = disconnect_ordered(
        meter, riyadh(12, 1, 19)
    )  # Tuesday 19:00: waits for Wednesday 08:00
    assert command.not_before == WEDNESDAY_8

    # The workers are down from Wednesday 07:00 until 19:30; the first beat finds it due.
    assert relay_beat_at(riyadh(12, 2, 19, 30), django_capture_on_commit_callbacks) == 1

    command.refresh_from_db()
    assert (command.status, command.not_before) == ("waiting", THURSDAY_8)
    assert head_end.received == []
    assert relay_beat_at(riyadh(12, 2, 19, 31), django_capture_on_commit_callbacks) == 0

    assert relay_beat_at(THURSDAY_8, django_capture_on_commit_callbacks) == 1

    command.refresh_from_db()
    assert command.status == "done" and command.sent_at == THURSDAY_8
    assert [m["at"] for m in head_end.commands()] == [THURSDAY_8]


def test_a_dead_workers_disconnect_recovered_at_1810_waits_for_the_morning(
    meter, head_end, django_capture_on_commit_callbacks
):
    command = disconnect_ordered(meter, TUESDAY_10)
    # A worker claimed it at 17:55 and died before the head-end answered.
    RelayCommand.objects.filter(pk=command.pk).update(status="sent", sent_at=riyadh(12, 1, 17, 55))

    assert relay_beat_at(riyadh(12, 1, 18, 10), django_capture_on_commit_callbacks) == 1

    command.refresh_from_db()
    assert (command.status, command.not_before) == ("waiting", WEDNESDAY_8)
    assert head_end.received == []
    assert not Compensation.objects.exists()  # sent at 17:55, if at all: allowed

    relay_beat_at(WEDNESDAY_8, django_capture_on_commit_callbacks)

    command.refresh_from_db()
    assert command.status == "done"
    assert [m["at"] for m in head_end.commands()] == [WEDNESDAY_8]


def test_no_disconnection_on_saudi_national_day(meter, head_end):
    # Due Tuesday 22 September 2026 at 17:00; the worker gets to it on Wednesday the 23rd,
    # National Day, at 10:00: it waits for Thursday 08:00.
    command = disconnect_ordered(meter, riyadh(9, 22, 17))

    assert dispatch_at(command, riyadh(9, 23, 10)) is None

    command.refresh_from_db()
    assert (command.status, command.not_before) == ("waiting", riyadh(9, 24, 8))
    assert head_end.received == []


def test_a_disconnect_whose_account_is_out_of_debt_when_due_is_cancelled(meter, head_end):
    command = disconnect_ordered(meter, riyadh(12, 1, 19))  # waits for Wednesday 08:00
    with time_machine.travel(riyadh(12, 1, 21), tick=False):
        ledger_post(
            account=meter.account,
            kind="adjustment",
            amount=Decimal("20.00"),
            key="staff-correction",
            description="Meter read wrongly",
        )

    assert dispatch_at(command, WEDNESDAY_8) is None

    command.refresh_from_db()
    assert command.status == "cancelled" and "the account was not in debt" in command.error
    assert head_end.received == []
    assert not RelayCommand.objects.filter(action="reconnect").exists()  # never went out


def test_a_top_up_while_it_waits_for_the_morning_cancels_it(meter, head_end):
    command = disconnect_ordered(meter, riyadh(12, 1, 19))
    pay(meter.account, "20.00", at=riyadh(12, 1, 22))

    assert dispatch_at(command, WEDNESDAY_8) is None

    command.refresh_from_db()
    assert command.status == "cancelled"
    assert head_end.received == []


def test_a_part_payment_that_leaves_the_account_in_debt_does_not_stop_it(meter, head_end):
    command = disconnect_ordered(meter, riyadh(12, 1, 19))  # -5.00
    pay(meter.account, "2.00", at=riyadh(12, 1, 22))  # -3.00

    done = dispatch_at(command, WEDNESDAY_8)

    assert done.status == "done"
    assert not Compensation.objects.exists()


def test_an_order_overtaken_by_a_payment_is_made_afresh_if_in_debt_again(meter, head_end):
    # Five riyals of emergency credit: an order at -6.00; a payment of 3.00 lifts the balance to
    # -3.00, above the disconnection level, and then the account uses -2.50 more.
    policy(meter.utility, emergency_credit=Decimal("5.00"))
    command = disconnect_ordered(meter, TUESDAY_10, owed="-6.00")
    pay(meter.account, "3.00", at=riyadh(12, 1, 11))
    with time_machine.travel(riyadh(12, 1, 12), tick=False):
        ledger_post(
            account=meter.account,
            kind="energy_charge",
            amount=Decimal("-2.50"),
            key="energy:later",
            description="energy",
        )

    assert dispatch_at(command, riyadh(12, 1, 12, 5)) is None

    command.refresh_from_db()
    assert command.status == "cancelled" and "had paid since" in command.error
    [fresh] = RelayCommand.objects.filter(action="disconnect", status="waiting")
    assert fresh.created_at == riyadh(12, 1, 12, 5) and fresh.not_before == riyadh(12, 1, 12, 5)
    done = dispatch_at(fresh, riyadh(12, 1, 12, 6))
    assert done.status == "done" and len(head_end.commands("disconnect")) == 1


def test_a_dead_workers_disconnect_is_not_sent_again_after_a_payment(
    meter, head_end, django_capture_on_commit_callbacks
):
    command = disconnect_ordered(meter, TUESDAY_10)
    RelayCommand.objects.filter(pk=command.pk).update(status="sent", sent_at=riyadh(12, 1, 10, 1))
    paid_at = riyadh(12, 1, 10, 5)
    pay(meter.account, "20.00", at=paid_at)  # its reconnect waits: a command is pending
    assert not RelayCommand.objects.filter(action="reconnect").exists()

    relay_beat_at(riyadh(12, 1, 10, 12), django_capture_on_commit_callbacks)

    command.refresh_from_db()
    assert command.status == "cancelled"
    # The worker may have sent it before dying: the meter is reconnected, from the payment.
    [reconnect] = RelayCommand.objects.filter(action="reconnect")
    assert (reconnect.status, reconnect.payment_notified_at) == ("done", paid_at)
    assert head_end.commands("disconnect") == [] and len(head_end.commands("reconnect")) == 1
    assert not Compensation.objects.exists()  # the payment came after it went out


def test_a_dead_workers_disconnect_of_a_meter_that_changed_hands_is_cancelled(
    meter, head_end, django_capture_on_commit_callbacks
):
    from billing import moves

    old_account = meter.account
    command = disconnect_ordered(meter, TUESDAY_10)
    RelayCommand.objects.filter(pk=command.pk).update(status="sent", sent_at=riyadh(12, 1, 10, 1))
    with time_machine.travel(riyadh(12, 1, 11, 30), tick=False):
        moves.move_out(
            account=old_account,
            at=riyadh(12, 1, 11),
            choice=moves.MoveOutChoice(debt="write_off", reason="Tenant left the country"),
        )
        new_account = moves.move_in(
            meter=meter,
            consumer_id="SA-NEW-1",
            registered_mobile="+966501234567",
            name="New tenant",
            at=riyadh(12, 1, 11, 15),
        ).account

    relay_beat_at(riyadh(12, 1, 11, 45), django_capture_on_commit_callbacks)

    command.refresh_from_db()
    assert command.status == "cancelled" and "not the indebted account's" in command.error
    assert head_end.commands("disconnect") == []
    [reconnect] = RelayCommand.objects.filter(action="reconnect")
    assert reconnect.account == new_account and reconnect.status == "done"
    assert not Compensation.objects.exists()  # when it went out, the meter was still theirs


def test_a_top_up_after_a_send_that_failed_reconnects_to_be_sure(
    meter, head_end, django_capture_on_commit_callbacks
):
    command = disconnect_ordered(meter, TUESDAY_10)
    head_end.fail_next(503)
    dispatch_at(command, TUESDAY_10)  # may or may not have been carried out
    paid_at = riyadh(12, 1, 10, 3)

    with (
        time_machine.travel(paid_at, tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        pay(meter.account, "20.00", at=paid_at)

    command.refresh_from_db()
    assert command.status == "cancelled"
    [reconnect] = RelayCommand.objects.filter(action="reconnect")
    assert (reconnect.status, reconnect.payment_notified_at) == ("done", paid_at)
    assert head_end.commands("disconnect") == []


@pytest.mark.parametrize("kind", ["holiday", "no_disconnection"])
def test_a_day_staff_added_to_the_calendar_holds_a_backlogged_disconnect(meter, head_end, kind):
    """Ordered Tuesday; staff then declare Wednesday a day off (or an emergency no-disconnection
    day); the worker reaches the command Wednesday 09:00: it waits for Thursday 08:00."""
    from accounts.models import UtilityCalendarDay

    command = disconnect_ordered(meter, TUESDAY_10)
    UtilityCalendarDay.objects.create(
        utility=meter.utility, day=WEDNESDAY_8.date(), kind=kind, name="Declared by staff"
    )

    done = dispatch_at(command, riyadh(12, 2, 9))

    command.refresh_from_db()
    assert done is None
    assert (command.status, command.not_before) == ("waiting", THURSDAY_8)
    assert head_end.received == []
    assert dispatch_at(command, THURSDAY_8).status == "done"
