"""After a charging pass only the accounts whose check could do something are checked: a city of
healthy balances costs nothing per account, and no crossing, re-arming or disconnection is missed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import RelayCommand
from billing.selectors import balance_checks_due
from billing.tasks import accounts_balance_changed
from notifications.models import BalanceAlertState, Notification, NotificationPreference
from tests.accounts.factories import AccountLinkFactory, ConsumerAccountFactory
from tests.billing.factories import ledger_credit, ledger_spend, policy
from tests.meters.factories import MeterFactory

pytestmark = pytest.mark.django_db


post = ledger_credit
spend = ledger_spend


def test_healthy_balances_are_not_checked_and_low_ones_are():
    healthy = AccountLinkFactory().account
    low = AccountLinkFactory(account=ConsumerAccountFactory(utility=healthy.utility)).account
    post(healthy, "50.000", "h")
    post(low, "1.500", "l")  # under the 2.000 KWD default level
    assert balance_checks_due(account_ids=[healthy.pk, low.pk]) == [low.pk]


def test_a_users_own_level_and_the_days_left_pace_count():
    account = AccountLinkFactory().account
    user = account.links.get().user
    post(account, "10.000", "t")
    assert balance_checks_due(account_ids=[account.pk]) == []
    NotificationPreference.objects.create(user=user, low_balance_amount=Decimal("12.000"))
    assert balance_checks_due(account_ids=[account.pk]) == [account.pk]
    NotificationPreference.objects.filter(user=user).update(low_balance_amount=Decimal("1.000"))
    spend(account, "3.000", "s")  # 7.000 left at 3.000 a day: near the 2-day level
    assert balance_checks_due(account_ids=[account.pk]) == [account.pk]


def test_an_alert_waiting_to_re_arm_is_checked_and_re_armed():
    account = AccountLinkFactory().account
    user = account.links.get().user
    post(account, "1.000", "t")
    accounts_balance_changed([account.pk])
    assert Notification.objects.filter(user=user, category="low_balance").count() == 1
    post(account, "40.000", "refund")  # a corrected reading refunded: well above the level now
    accounts_balance_changed([account.pk])
    state = BalanceAlertState.objects.get(user=user, account=account)
    assert state.low_armed is True


def test_an_account_past_its_emergency_credit_is_disconnected_even_with_nobody_linked():
    meter = MeterFactory()
    policy(meter.utility, emergency_credit=Decimal("1.000"))
    post(meter.account, "-1.500", "debt")
    assert balance_checks_due(account_ids=[meter.account_id]) == [meter.account_id]
    accounts_balance_changed([meter.account_id])
    assert RelayCommand.objects.get(meter=meter).action == "disconnect"


def test_a_healthy_check_costs_a_fixed_number_of_queries(django_assert_max_num_queries):
    accounts = [AccountLinkFactory().account for _ in range(5)]
    for n, account in enumerate(accounts):
        post(account, "90.000", f"t{n}")
    policy(accounts[0].utility)
    # Accounts, balances, alert states, links with preferences, spend, the utility's policy.
    with django_assert_max_num_queries(6):
        accounts_balance_changed([a.pk for a in accounts])
    assert not BalanceAlertState.objects.exists()
