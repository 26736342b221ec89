"""Reconnection on part payment (India: reconnected once 50 % of the dues are paid): the unpaid
balance is rescheduled as debt and the payment reconnects as any payment does; where the policy is
empty, only a balance above zero reconnects, as before. Madhya Pradesh's discom, clock pinned."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from billing import relay
from billing.models import LedgerEntry, RelayCommand
from billing.selectors import ledger_check
from notifications.models import Notification
from tests.billing.factories_affordability import (
    arrears,
    balance_of,
    charge,
    india_household,
    top_up,
)

IST = ZoneInfo("Asia/Kolkata")
INDIA_RULE = {"reconnect_min_payment_percent": Decimal(50), "debt_recovery_percent": Decimal(25)}


def ist(hour, minute=0) -> datetime:
    return datetime(2026, 11, 10, hour, minute, tzinfo=IST)  # a Tuesday


def cut_off(meter):
    """400.00 below zero with 600.00 of arrears (dues 1,000.00), disconnected at 10:00."""
    arrears(meter.account, "600.00")
    with time_machine.travel(ist(10), tick=False):
        charge(meter.account, "400.00", key="energy")
        [command] = relay.disconnect_evaluate(account=meter.account)
        assert relay.relay_dispatch(command_id=str(command.pk)).status == "done"
    meter.refresh_from_db()
    assert meter.relay == "open"


@pytest.mark.django_db
def test_half_the_dues_paid_reconnects_and_the_rest_becomes_debt(make_api, head_end):
    link, meter = india_household(**INDIA_RULE)
    cut_off(meter)
    with time_machine.travel(ist(11), tick=False):
        topup = top_up(make_api(link.user), link.account, "500.00", key="p-1")

    # The 400.00 below zero is rescheduled; the top-up then repays its 25 % share of the debt.
    entries = list(
        LedgerEntry.objects.filter(account=link.account, key__endswith=str(topup.pk))
        .order_by("id")
        .values_list("kind", "amount", "key")
    )
    assert entries == [
        ("topup", Decimal("500.00"), f"topup:{topup.pk}"),
        ("debt_reschedule", Decimal("400.00"), f"reschedule:{topup.pk}"),
        ("debt_recovery", Decimal("-125.00"), f"debt:{topup.pk}"),
    ]
    assert balance_of(link.account) == (Decimal("375.00"), Decimal("875.00"))
    reconnect = RelayCommand.objects.get(action="reconnect")
    assert (reconnect.status, reconnect.reason, reconnect.payment_notified_at) == (
        "done",
        "payment",
        ist(11),
    )
    meter.refresh_from_db()
    assert meter.relay == "closed"
    # The top-up's own alert says where the balance stands; nothing new is needed.
    [alert] = Notification.objects.filter(user=link.user, category="topup_received")
    assert "375" in alert.body
    assert ledger_check() == []


@pytest.mark.django_db
def test_without_the_policy_a_part_payment_does_not_reconnect(make_api, head_end):
    link, meter = india_household(reconnect_min_payment_percent=None)
    cut_off(meter)
    with time_machine.travel(ist(11), tick=False):
        top_up(make_api(link.user), link.account, "500.00", key="p-1")

    assert not LedgerEntry.objects.filter(kind="debt_reschedule").exists()
    # 100.00 above zero, then the 25 % share of the top-up (125.00) for arrears: below zero.
    assert balance_of(link.account) == (Decimal("-25.00"), Decimal("475.00"))
    assert not RelayCommand.objects.filter(action="reconnect").exists()
    meter.refresh_from_db()
    assert meter.relay == "open"
    assert ledger_check() == []


@pytest.mark.django_db
def test_less_than_the_share_of_the_dues_is_not_enough(make_api, head_end):
    link, meter = india_household(**INDIA_RULE)
    cut_off(meter)
    with time_machine.travel(ist(11), tick=False):
        top_up(make_api(link.user), link.account, "499.99", key="p-1")

    assert not LedgerEntry.objects.filter(kind="debt_reschedule").exists()
    assert not RelayCommand.objects.filter(action="reconnect").exists()
    assert ledger_check() == []


@pytest.mark.django_db
def test_paying_all_the_dues_reschedules_nothing(make_api, head_end):
    link, meter = india_household(**INDIA_RULE)
    cut_off(meter)
    with time_machine.travel(ist(11), tick=False):
        top_up(make_api(link.user), link.account, "1000.00", key="p-1")

    assert not LedgerEntry.objects.filter(kind="debt_reschedule").exists()
    assert balance_of(link.account) == (Decimal("350.00"), Decimal("350.00"))
    assert RelayCommand.objects.get(action="reconnect").status == "done"
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_part_payment_cancels_a_disconnection_still_waiting(make_api):
    link, _meter = india_household(**INDIA_RULE)
    arrears(link.account, "600.00")
    with time_machine.travel(ist(19), tick=False):  # the evening: it waits for the morning
        charge(link.account, "400.00", key="energy")
        [command] = relay.disconnect_evaluate(account=link.account)
        top_up(make_api(link.user), link.account, "500.00", key="p-1")

    command.refresh_from_db()
    assert command.status == "cancelled"
    assert balance_of(link.account) == (Decimal("375.00"), Decimal("875.00"))
    assert ledger_check() == []


@pytest.mark.django_db
def test_an_account_not_cut_off_is_left_as_it_is(make_api):
    """Below zero within an automatic allowance, nobody is cut: the rule has nothing to undo."""
    link, _meter = india_household(**INDIA_RULE, emergency_credit=Decimal("500.00"))
    arrears(link.account, "600.00")
    with time_machine.travel(ist(11), tick=False):
        charge(link.account, "400.00", key="energy")
        top_up(make_api(link.user), link.account, "500.00", key="p-1")

    assert not LedgerEntry.objects.filter(kind="debt_reschedule").exists()
    assert balance_of(link.account) == (Decimal("-25.00"), Decimal("475.00"))
