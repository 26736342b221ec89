"""The run-out forecast knows the calendar: a balance running out on a Thursday evening in Kuwait
is cut on the first allowed morning after the weekend and any holiday, and the consumer is told
what to top up by then."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine

from accounts.models import AccountLink, UtilityCalendarDay
from billing.models import EmergencyCredit, LedgerEntry, RelayCommand
from billing.tasks import accounts_balance_changed
from notifications.models import Notification
from tests.accounts.factories import (
    AccountLinkFactory,
    ConsumerAccountFactory,
    UserFactory,
    UtilityFactory,
)
from tests.billing.factories import policy
from tests.billing.factories_forecast import INDIA_MP, balance_left, daily_spend
from tests.meters.factories import EGYPT, MeterFactory
from tests.outages.factories import staff_member

pytestmark = pytest.mark.django_db

THURSDAY = date(2026, 11, 26)
THURSDAY_10_KUWAIT = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)  # 10:00 +03
MONDAY = date(2026, 11, 23)
MONDAY_10_INDIA = datetime(2026, 11, 23, 4, 30, tzinfo=UTC)  # 10:00 +05:30


def forecast_url(account) -> str:
    return f"/api/v1/accounts/{account.pk}/forecast/"


@pytest.fixture
def kuwait():
    """Friday and Saturday off, no disconnection 18:00-08:00, no automatic allowance; a household
    spending 2.400 KWD a day (0.100 an hour) with 1.000 left at 10:00 on Thursday: it runs out
    at 20:00, in the friendly night before the weekend."""
    link = AccountLinkFactory()
    account = link.account
    policy(account.utility, emergency_credit=Decimal(0))
    spent = daily_spend(account, before=THURSDAY, amount="2.400")
    balance_left(account, spent=spent, left="1.000")
    return link


def test_a_thursday_evening_run_out_is_cut_on_monday_after_the_weekend_and_a_holiday(
    make_api, kuwait
):
    account = kuwait.account
    UtilityCalendarDay.objects.create(
        utility=account.utility, day=date(2026, 11, 29), name="Day of mourning"
    )
    before = LedgerEntry.objects.count()

    with time_machine.travel(THURSDAY_10_KUWAIT, tick=False):
        api = make_api(kuwait.user)
        response = api.get(forecast_url(account))
        balance = api.get(f"/api/v1/accounts/{account.pk}/balance/").json()

    assert response.status_code == 200
    body = response.json()
    assert body["timezone"] == "Asia/Kuwait" and body["currency"] == "KWD"
    assert body["as_of"] == "2026-11-26T10:00:00+03:00"
    assert body["balance"] == "1.000" and body["disconnection_level"] == "0.000"
    assert body["weekday_daily_spend"] == body["weekend_daily_spend"] == "2.400"
    assert body["credit_runs_out_at"] == "2026-11-26T20:00:00+03:00"
    assert body["credit_exhausted_at"] == "2026-11-26T20:00:00+03:00"
    # Thursday night, Friday and Saturday (the weekend), Sunday (staff's holiday): Monday 08:00.
    assert body["disconnect_earliest"] == "2026-11-30T08:00:00+03:00"
    assert body["top_up_by"] == body["disconnect_earliest"]
    assert body["reasons"] == ["friendly_hours", "weekend", "holiday"]
    assert body["holidays"] == [{"date": "2026-11-29", "name": "Day of mourning"}]
    assert body["friendly_credit"] == "8.400"  # 84 hours at 0.100, lent by friendly hours
    # From now to Monday 08:00 and 7 days more: (10 + 84 + 168) hours × 0.100, less the 1.000.
    assert body["topup_amount"] == "25.200" and body["cover_days"] == 7
    assert body["emergency_credit_taken"] is None and body["emergency_credit_offer"] is None
    runout = balance["runout"]
    assert runout["disconnect_earliest"] == body["disconnect_earliest"]
    assert runout["topup_amount"] == "25.200"
    assert LedgerEntry.objects.count() == before  # a read writes nothing


def test_without_the_holiday_it_is_cut_on_sunday_morning(make_api, kuwait):
    with time_machine.travel(THURSDAY_10_KUWAIT, tick=False):
        body = make_api(kuwait.user).get(forecast_url(kuwait.account)).json()

    assert body["disconnect_earliest"] == "2026-11-29T08:00:00+03:00"
    assert body["reasons"] == ["friendly_hours", "weekend"] and body["holidays"] == []
    assert body["friendly_credit"] == "6.000"  # 60 hours
    assert body["topup_amount"] == "22.800"  # (10 + 60 + 168) × 0.100 - 1.000


def test_the_top_up_is_rounded_up_to_the_fils_and_never_below_the_minimum(make_api, kuwait):
    account = kuwait.account
    with time_machine.travel(datetime(2026, 11, 26, 7, 0, 20, tzinfo=UTC), tick=False):
        body = make_api(kuwait.user).get(forecast_url(account)).json()
    # 20 seconds later: (238 hours - 20 s) × 0.100 - 1.000 = 22.7994..., rounded up.
    assert body["credit_exhausted_at"] == "2026-11-26T20:00:20+03:00"
    assert body["topup_amount"] == "22.800"

    policy(account.utility, emergency_credit=Decimal("30.000"))  # an automatic allowance
    with time_machine.travel(THURSDAY_10_KUWAIT, tick=False):
        body = make_api(kuwait.user).get(forecast_url(account)).json()

    # 31.000 to spend at 0.100 an hour: 310 hours, to Wednesday 9 December 08:00.
    assert body["disconnection_level"] == "-30.000"
    assert body["credit_runs_out_at"] == "2026-11-26T20:00:00+03:00"
    assert body["credit_exhausted_at"] == "2026-12-09T08:00:00+03:00"
    assert body["disconnect_earliest"] == body["credit_exhausted_at"] and body["reasons"] == []
    assert body["friendly_credit"] == "0.000"
    # (310 + 168) hours = 47.800 less the 31.000 available.
    assert body["topup_amount"] == "16.800"

    policy(account.utility, emergency_credit=Decimal("30.000"), runout_cover_days=1)
    account.utility.min_topup = Decimal("5.000")
    account.utility.save()
    with time_machine.travel(THURSDAY_10_KUWAIT, tick=False):
        body = make_api(kuwait.user).get(forecast_url(account)).json()
    assert body["topup_amount"] == "5.000"  # 2.400 needed, but 5.000 is the smallest top-up


def test_a_taken_emergency_credit_holds_until_its_level_or_its_repay_by(make_api):
    """India (MP): no disconnection 18:00-08:00, on Sundays and holidays; emergency credit taken
    in the app, repaid within 7 days. 4.00 INR an hour, 160.00 below zero on a 200.00 credit."""
    link = AccountLinkFactory(account=ConsumerAccountFactory(utility=UtilityFactory(**INDIA_MP)))
    account = link.account
    policy(
        account.utility,
        emergency_credit=Decimal("200.00"),
        emergency_credit_on_request=True,
        emergency_credit_days=7,
    )
    spent = daily_spend(account, before=MONDAY, amount="96.00")
    balance_left(account, spent=spent, left="-160.00")
    credit = EmergencyCredit.objects.create(
        account=account,
        amount=Decimal("200.00"),
        taken_at=datetime(2026, 11, 20, 4, 30, tzinfo=UTC),
        repay_by=datetime(2026, 11, 27, 4, 30, tzinfo=UTC),  # Friday 10:00 IST
    )
    with time_machine.travel(MONDAY_10_INDIA, tick=False):
        body = make_api(link.user).get(forecast_url(account)).json()

    assert body["balance"] == "-160.00" and body["disconnection_level"] == "-200.00"
    assert body["emergency_credit_taken"] == {
        "amount": "200.00",
        "repay_by": "2026-11-27T10:00:00+05:30",
    }
    assert body["credit_runs_out_at"] == "2026-11-23T10:00:00+05:30"  # already below zero
    assert body["credit_exhausted_at"] == "2026-11-23T20:00:00+05:30"  # 40.00 at 4.00 an hour
    # Monday night, then Guru Nanak's Birthday (a public holiday): Wednesday 08:00 IST.
    assert body["disconnect_earliest"] == "2026-11-25T08:00:00+05:30"
    assert body["reasons"] == ["friendly_hours", "holiday"]
    assert body["holidays"] == [{"date": "2026-11-24", "name": "Guru Nanak's Birthday"}]
    assert body["friendly_credit"] == "144.00"  # 36 hours
    # (46 + 168) hours × 4.00 = 856.00, and the 160.00 below zero (a top-up repays the credit).
    assert body["topup_amount"] == "1016.00"
    assert body["emergency_credit_offer"] is None

    # Due back at 15:00 today: then the credit ends with the balance below zero.
    credit.repay_by = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    credit.save()
    with time_machine.travel(MONDAY_10_INDIA, tick=False):
        body = make_api(link.user).get(forecast_url(account)).json()
    assert body["credit_exhausted_at"] == "2026-11-23T15:00:00+05:30"
    assert body["disconnect_earliest"] == "2026-11-23T15:00:00+05:30"
    assert body["reasons"] == [] and body["friendly_credit"] == "0.00"


def test_emergency_credit_on_request_not_taken_says_how_much_later_it_would_be(make_api):
    link = AccountLinkFactory(account=ConsumerAccountFactory(utility=UtilityFactory(**INDIA_MP)))
    account = link.account
    policy(
        account.utility,
        emergency_credit=Decimal("200.00"),
        emergency_credit_on_request=True,
        emergency_credit_fee=Decimal("5.00"),
        emergency_credit_days=7,
    )
    spent = daily_spend(account, before=MONDAY, amount="96.00")
    balance_left(account, spent=spent, left="100.00")

    with time_machine.travel(MONDAY_10_INDIA, tick=False):
        body = make_api(link.user).get(forecast_url(account)).json()

    # Not taken, no automatic allowance: cut at zero, Tuesday 11:00, which is a holiday.
    assert body["disconnection_level"] == "0.00"
    assert body["credit_exhausted_at"] == "2026-11-24T11:00:00+05:30"
    assert body["disconnect_earliest"] == "2026-11-25T08:00:00+05:30"
    assert body["reasons"] == ["holiday"]
    # Taken now (the balance is already under its amount): 300.00 more to spend, less its
    # 5.00 fee: 73 hours 45 minutes, to Thursday 11:45.
    assert body["emergency_credit_offer"] == {
        "amount": "200.00",
        "fee": "5.00",
        "available_from": "2026-11-23T10:00:00+05:30",
        "repay_by": "2026-11-30T10:00:00+05:30",
        "disconnect_earliest": "2026-11-26T11:45:00+05:30",
    }


def test_the_low_balance_alert_says_when_and_how_much_in_english_and_arabic(make_api, kuwait):
    account = kuwait.account
    UtilityCalendarDay.objects.create(
        utility=account.utility, day=date(2026, 11, 29), name="Day of mourning"
    )
    arabic = UserFactory(language="ar")
    AccountLinkFactory(
        user=arabic,
        account=account,
        role=AccountLink.Role.SHARED,
        can_pay=False,
        shared_by=kuwait,
    )

    with time_machine.travel(THURSDAY_10_KUWAIT, tick=False):
        accounts_balance_changed([account.pk])  # after a charging pass: 1.000 is under 2.000
        english = make_api(kuwait.user).get("/api/v1/notifications/").json()
        arabic_inbox = make_api(arabic).get("/api/v1/notifications/").json()

    def low(inbox):
        rows = inbox["results"] if isinstance(inbox, dict) else inbox
        return [row for row in rows if row["category"] == "low_balance"]

    [en] = low(english)
    [ar] = low(arabic_inbox)
    assert en["body"] == (
        f"The balance on account {account.consumer_id} is down to KWD 1.000, below your alert "
        "level of KWD 2.000. The supply could be disconnected from Mon, Nov 30, 8:00 AM +03: "
        "top up at least KWD 25.200 before then."
    )
    assert (
        "قد تُفصل الكهرباء ابتداءً من الاثنين، 30 نوفمبر، 8:00 ص \u2066+03\u2069: "
        "اشحن 25.200 د.ك. على الأقل قبل ذلك."
    ) in ar["body"]
    assert Notification.objects.filter(category="low_balance").count() == 2


def test_a_postpaid_account_or_one_without_usage_is_refused_and_nothing_is_written(make_api):
    link = AccountLinkFactory()
    policy(link.account.utility, emergency_credit=Decimal(0))
    api = make_api(link.user)
    counts = (LedgerEntry.objects.count(), Notification.objects.count())

    fresh = api.get(forecast_url(link.account))
    assert fresh.status_code == 409
    assert fresh.json()["error"]["code"] == "no_usage_history"
    assert api.get(f"/api/v1/accounts/{link.account_id}/balance/").json()["runout"] is None

    MeterFactory(account=link.account, utility=link.account.utility, payment_mode="postpaid")
    postpaid = api.get(forecast_url(link.account))
    assert postpaid.status_code == 409 and postpaid.json()["error"]["code"] == "not_prepaid"
    assert (LedgerEntry.objects.count(), Notification.objects.count()) == counts
    assert not RelayCommand.objects.exists()


def test_the_forecast_is_read_by_those_who_may_view_the_account(make_api, kuwait):
    account = kuwait.account
    url = forecast_url(account)
    viewer = AccountLinkFactory(
        account=account,
        role=AccountLink.Role.SHARED,
        can_pay=False,
        receives_alerts=False,
        shared_by=kuwait,
    )
    payer_only = AccountLinkFactory(
        account=account,
        role=AccountLink.Role.SHARED,
        can_view=False,
        shared_by=kuwait,
    )
    other = AccountLinkFactory()  # another consumer, with an account of their own

    with time_machine.travel(THURSDAY_10_KUWAIT, tick=False):
        assert make_api(kuwait.user).get(url).status_code == 200
        assert make_api(viewer.user).get(url).status_code == 200
        for intruder in (
            payer_only.user,
            other.user,
            staff_member(account.utility, role="support"),
        ):
            response = make_api(intruder).get(url)
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "account_not_found"
        assert make_api().get(url).status_code == 401


def test_a_day_of_cairos_clock_change_spends_its_pace_over_25_hours(make_api):
    link = AccountLinkFactory(account=ConsumerAccountFactory(utility=UtilityFactory(**EGYPT)))
    account = link.account
    policy(account.utility, emergency_credit=Decimal(0))
    thursday = date(2026, 10, 29)  # summer time ends at its end: 25 hours long
    spent = daily_spend(account, before=thursday, amount="25.00")
    balance_left(account, spent=spent, left="25.00")

    with time_machine.travel(datetime(2026, 10, 28, 21, 0, tzinfo=UTC), tick=False):  # 00:00
        body = make_api(link.user).get(forecast_url(account)).json()

    # One day's pace lasts the whole local day, not 24 hours: out at midnight, +02:00 by then.
    assert body["credit_runs_out_at"] == "2026-10-30T00:00:00+02:00"
    assert body["disconnect_earliest"] == "2026-11-01T08:00:00+02:00"  # after Friday, Saturday
