"""The system finds wrongful disconnections itself (DOMAIN.md §3: prohibited times or cases, the
wrong meter: 500 SAR and service restored at once), without a complaint or staff marking them:
the meter is reconnected at once and the compensation recorded once per disconnect command, with
what was checked as its evidence. Saudi Electricity, Asia/Riyadh, clock pinned."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from billing import relay
from billing.ledger import ledger_post
from billing.models import RelayCommand, TopUp
from billing.payments import topup_confirm
from core.errors import Conflict
from outages import standards
from outages.models import Compensation, Standard
from tests.billing.relay_support import disconnect_ordered, relay_beat_at
from tests.meters.factories import MeterFactory
from tests.outages.factories import saudi

RIYADH = ZoneInfo("Asia/Riyadh")
TUESDAY_10 = datetime(2026, 12, 1, 10, tzinfo=RIYADH)


def riyadh(hour, minute=0, second=0, day=1) -> datetime:
    return datetime(2026, 12, day, hour, minute, second, tzinfo=RIYADH)


@pytest.fixture
def meter(db):
    return MeterFactory(utility=saudi(), serial="SAM0000001")


def claimed_by_a_worker_that_died(command, sent_at):
    """What a worker leaves when it dies between claiming a command and hearing back."""
    RelayCommand.objects.filter(pk=command.pk).update(status="sent", sent_at=sent_at)


def wrongful():
    return list(Compensation.objects.filter(standard=Standard.WRONGFUL_DISCONNECTION))


def test_a_disconnection_the_head_end_carried_out_after_1800_is_found_and_compensated(
    meter, head_end, django_capture_on_commit_callbacks
):
    command = disconnect_ordered(meter, TUESDAY_10)
    with time_machine.travel(riyadh(17, 59, 30), tick=False) as clock:
        # Sent at 17:59:30, allowed; the head-end takes 45 s to act on it: 18:00:15.
        head_end.during = lambda message: clock.shift(timedelta(seconds=45))
        with django_capture_on_commit_callbacks(execute=True):
            done = relay.relay_dispatch(command_id=str(command.pk))

    assert done.status == "done" and done.completed_at == riyadh(18, 0, 15)
    [compensation] = wrongful()
    assert (compensation.account, compensation.amount, compensation.currency) == (
        meter.account,
        Decimal("500.00"),
        "SAR",
    )
    assert compensation.relay_command_id == command.pk
    assert compensation.failure_at == riyadh(18, 0, 15)
    assert "outside the hours when disconnection is allowed" in compensation.reason
    evidence = compensation.details
    assert evidence["detected_by"] == "system" and evidence["grounds"] == ["forbidden_hours"]
    assert evidence["sent_at"] == "2026-12-01T17:59:30+03:00"
    assert evidence["carried_out_by"] == "2026-12-01T18:00:15+03:00"
    assert evidence["friendly_hours"]["allowed_from"] == "2026-12-02T08:00:00+03:00"
    assert evidence["balance"] == {
        "at": "2026-12-01T17:59:30+03:00",
        "amount": "-5.00",
        "disconnection_level": "0.00",
        "currency": "SAR",
        "ok": True,
    }
    # Reconnected at once, in the same night.
    [reconnect] = RelayCommand.objects.filter(action="reconnect")
    assert (reconnect.reason, reconnect.status) == ("wrongful_disconnection", "done")
    assert [m["command"] for m in head_end.received] == ["disconnect", "reconnect"]
    meter.refresh_from_db()
    assert meter.relay == "closed"

    # Once per command: the engine again, the beat again, and staff marking it by hand.
    assert standards.wrongful_disconnection_detect(command_id=command.pk)[0] == compensation
    relay_beat_at(riyadh(18, 30), django_capture_on_commit_callbacks)
    with pytest.raises(Conflict, match="already marked wrongful"):
        standards.wrongful_disconnection_record(command_id=command.pk, actor=None)
    assert len(wrongful()) == 1
    assert RelayCommand.objects.filter(action="reconnect").count() == 1


def test_a_payment_learned_late_that_came_before_the_send_makes_it_wrongful(
    meter, head_end, django_capture_on_commit_callbacks
):
    command = disconnect_ordered(meter, riyadh(9, 50))
    with time_machine.travel(riyadh(10), tick=False):
        topup = TopUp.objects.create(
            account=meter.account, amount=Decimal("20.00"), currency="SAR", channel="app"
        )
        done = relay.relay_dispatch(command_id=str(command.pk))
    assert done.status == "done" and not wrongful()

    # Reconciliation learns at 10:20 that the gateway took the money at 09:55.
    with (
        time_machine.travel(riyadh(10, 20), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        topup_confirm(topup=topup, paid_at=riyadh(9, 55))

    [compensation] = wrongful()
    assert compensation.amount == Decimal("500.00")
    assert compensation.details["grounds"] == ["paid_since_order"]
    assert compensation.details["payments_since_order"]["paid_at"] == ["2026-12-01T09:55:00+03:00"]
    [reconnect] = RelayCommand.objects.filter(action="reconnect")
    assert (reconnect.reason, reconnect.status) == ("wrongful_disconnection", "done")


def test_a_dead_workers_disconnect_sent_in_the_night_is_wrongful(
    meter, head_end, django_capture_on_commit_callbacks
):
    command = disconnect_ordered(meter, TUESDAY_10)
    # Claimed at 18:00:05 by a worker running code without the send-time check, which died.
    claimed_by_a_worker_that_died(command, riyadh(18, 0, 5))

    relay_beat_at(riyadh(18, 20), django_capture_on_commit_callbacks)

    command.refresh_from_db()
    assert command.status == "cancelled" and "wrongful" in command.error
    [compensation] = wrongful()
    assert compensation.details["grounds"] == ["forbidden_hours"]
    assert compensation.failure_at == riyadh(18, 0, 5)
    assert head_end.commands("disconnect") == []  # not sent again
    [reconnect] = RelayCommand.objects.filter(action="reconnect")
    assert reconnect.status == "done"


def test_a_disconnect_sent_while_the_account_was_in_credit_is_wrongful(
    meter, head_end, django_capture_on_commit_callbacks
):
    command = disconnect_ordered(meter, TUESDAY_10)
    with time_machine.travel(riyadh(10, 30), tick=False):
        ledger_post(
            account=meter.account,
            kind="adjustment",
            amount=Decimal("20.00"),
            key="staff-correction",
            description="Meter read wrongly",
        )
    claimed_by_a_worker_that_died(command, riyadh(11))

    relay_beat_at(riyadh(11, 15), django_capture_on_commit_callbacks)

    [compensation] = wrongful()
    assert compensation.details["grounds"] == ["not_in_debt"]
    assert compensation.details["balance"]["amount"] == "15.00"


def test_a_disconnect_of_a_meter_another_account_held_compensates_that_account(
    meter, head_end, django_capture_on_commit_callbacks
):
    from billing import moves

    command = disconnect_ordered(meter, TUESDAY_10)
    with time_machine.travel(riyadh(11, 30), tick=False):
        moves.move_out(
            account=meter.account,
            at=riyadh(11),
            choice=moves.MoveOutChoice(debt="write_off", reason="Tenant left the country"),
        )
        new_account = moves.move_in(
            meter=meter,
            consumer_id="SA-NEW-1",
            registered_mobile="+966501234567",
            name="New tenant",
            at=riyadh(11, 15),
        ).account
    # The old tenant's order went out at 11:20 (recovered and sent by code without the check).
    claimed_by_a_worker_that_died(command, riyadh(11, 20))

    relay_beat_at(riyadh(11, 40), django_capture_on_commit_callbacks)

    [compensation] = wrongful()
    assert compensation.account == new_account
    assert "meter_not_held" in compensation.details["grounds"]
    assert compensation.details["meter_holder"]["held_by"] == "SA-NEW-1"
    [reconnect] = RelayCommand.objects.filter(action="reconnect")
    assert reconnect.account == new_account and reconnect.status == "done"


def test_a_utility_without_standards_reconnects_but_records_nothing(
    head_end, db, django_capture_on_commit_callbacks
):
    meter = MeterFactory(utility=saudi(policy=False), serial="SAM0000002")
    command = disconnect_ordered(meter, TUESDAY_10)
    claimed_by_a_worker_that_died(command, riyadh(18, 0, 5))

    relay_beat_at(riyadh(18, 20), django_capture_on_commit_callbacks)

    assert not Compensation.objects.exists()
    [reconnect] = RelayCommand.objects.filter(action="reconnect")
    assert (reconnect.reason, reconnect.status) == ("wrongful_disconnection", "done")


def test_a_rightful_disconnection_is_not_compensated_and_staff_can_still_mark_one(meter, head_end):
    command = disconnect_ordered(meter, TUESDAY_10)

    with time_machine.travel(riyadh(10, 5), tick=False):
        done = relay.relay_dispatch(command_id=str(command.pk))

    assert done.status == "done" and not wrongful()
    assert standards.wrongful_disconnection_detect(command_id=command.pk) is None
    compensation, reconnect = standards.wrongful_disconnection_record(
        command_id=command.pk, actor=None, note="Customer had a medical exemption."
    )
    assert compensation.amount == Decimal("500.00") and reconnect.reason == "wrongful_disconnection"
