"""balance_alerts_evaluate, called as billing will call it after each charge and top-up."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from notifications.models import Notification
from notifications.services import balance_alerts_evaluate
from tests.accounts.factories import AccountLinkFactory, ConsumerAccountFactory, UserFactory
from tests.notifications.factories import DeviceFactory, PreferenceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def evaluate(django_capture_on_commit_callbacks):
    def run(account, balance, days_left=None, disconnect_at=None):
        with django_capture_on_commit_callbacks(execute=True):
            created = balance_alerts_evaluate(
                account=account,
                balance=Decimal(balance),
                days_left=None if days_left is None else Decimal(days_left),
                disconnect_at=disconnect_at,
            )
        return [n.category for n in created]

    return run


@pytest.fixture
def link():
    return AccountLinkFactory(user=UserFactory(language="en"))


def test_one_low_balance_alert_per_crossing_rearmed_by_a_top_up(evaluate, link, fcm_server):
    DeviceFactory(user=link.user)
    account = link.account  # Kuwait: default alert level 2.000 KWD

    assert evaluate(account, "5.000") == []
    assert evaluate(account, "1.900") == ["low_balance"]
    assert evaluate(account, "1.500") == []  # still below: no second alert
    assert evaluate(account, "1.500") == []  # the same charge evaluated twice
    assert evaluate(account, "10.000") == []  # a top-up re-arms
    assert evaluate(account, "2.000") == ["low_balance"]

    bodies = list(Notification.objects.order_by("id").values_list("body", flat=True))
    assert bodies[0] == (
        f"The balance on account {account.consumer_id} is down to KWD 1.900, below your alert "
        "level of KWD 2.000. Top up soon to keep the power on."
    )
    assert len(fcm_server.accepted) == 2


def test_it_uses_the_users_own_threshold(evaluate, link):
    PreferenceFactory(user=link.user, low_balance_amount=Decimal("5.000"))
    assert evaluate(link.account, "4.500") == ["low_balance"]


def test_zero_balance_alerts_once_and_supersedes_the_low_alert(evaluate, link, sms_outbox):
    assert evaluate(link.account, "0.000") == ["zero_balance"]
    assert evaluate(link.account, "-0.250") == []
    assert evaluate(link.account, "0.500") == []  # a small top-up: still low, no new low alert
    assert evaluate(link.account, "-0.100") == ["zero_balance"]
    # Urgent, and this user has no device: it also went by SMS.
    assert [m.to for m in sms_outbox] == [link.user.phone, link.user.phone]


def test_the_predictive_alert_says_about_how_many_days(evaluate, link):
    assert evaluate(link.account, "8.000", days_left="5.2") == []
    assert evaluate(link.account, "6.000", days_left="1.6") == ["balance_days_left"]
    assert evaluate(link.account, "5.000", days_left="1.2") == []
    notification = Notification.objects.get()
    assert notification.title == "About 2 days of power left"


def test_the_predictive_alert_in_arabic_uses_the_dual(evaluate):
    link = AccountLinkFactory(user=UserFactory(language="ar"))
    evaluate(link.account, "6.000", days_left="2")
    assert Notification.objects.get().title == "رصيدك يكفي يومين تقريبًا"


def test_the_disconnection_alert_names_when_once_per_date(evaluate):
    link = AccountLinkFactory(user=UserFactory(language="hi"))
    when = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # 09:00 in Kuwait

    assert sorted(evaluate(link.account, "1.000", disconnect_at=when)) == [
        "disconnection_pending",
        "low_balance",
    ]
    assert evaluate(link.account, "1.000", disconnect_at=when) == []
    notification = Notification.objects.get(category="disconnection_pending")
    assert "बुध, 25 नवंबर, 9:00 am" in notification.body
    later = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    assert evaluate(link.account, "1.000", disconnect_at=later) == ["disconnection_pending"]


def test_every_linked_user_is_alerted_but_not_unlinked_ones(evaluate):
    account = ConsumerAccountFactory()
    owner, tenant = AccountLinkFactory(account=account), AccountLinkFactory(account=account)
    gone = AccountLinkFactory(account=account, unlinked_at=datetime(2026, 1, 1, tzinfo=UTC))

    evaluate(account, "1.000")

    assert set(Notification.objects.values_list("user_id", flat=True)) == {
        owner.user_id,
        tenant.user_id,
    }
    assert not Notification.objects.filter(user=gone.user).exists()
