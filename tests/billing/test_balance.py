from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import time_machine

from billing.ledger import ledger_post
from billing.models import TopUp
from tests.accounts.factories import AccountLinkFactory
from tests.billing.factories import policy


def spend(account, day: date, amount: str):
    start = datetime.combine(day, datetime.min.time(), account.utility.zone)
    ledger_post(
        account=account,
        kind="energy_charge",
        amount=-Decimal(amount),
        key=f"e{day}",
        description="energy",
        period_start=start,
        period_end=start + timedelta(days=1),
    )


def test_the_balance_lasts_as_long_as_the_weekday_and_weekend_pace_says(make_api):
    link = AccountLinkFactory()
    account = link.account  # Kuwait: Friday and Saturday are the weekend
    policy(account.utility, emergency_credit=Decimal("0.500"))
    today = date(2026, 11, 22)  # a Sunday
    for back in range(1, 29):
        day = today - timedelta(days=back)
        spend(account, day, "0.600" if day.weekday() in (4, 5) else "0.300")
    ledger_post(
        account=account, kind="topup", amount=Decimal("20.000"), key="t", description="top-up"
    )
    TopUp.objects.create(
        account=account,
        amount=Decimal("20.000"),
        currency="KWD",
        channel="app",
        status="succeeded",
        paid_at=datetime(2026, 11, 20, 9, tzinfo=UTC),
    )

    with time_machine.travel(datetime(2026, 11, 22, 9, 0, tzinfo=UTC)):  # noon in Kuwait
        body = make_api(link.user).get(f"/api/v1/accounts/{account.pk}/balance/").json()

    spent = 20 * Decimal("0.300") + 8 * Decimal("0.600")
    assert body["balance"] == f"{Decimal('20.000') - spent:.3f}"  # 9.200
    assert body["currency"] == "KWD"
    assert body["weekday_daily_spend"] == "0.300" and body["weekend_daily_spend"] == "0.600"
    assert body["average_daily_spend"] == f"{spent / 28:.3f}"
    assert body["last_topup"]["amount"] == "20.000"
    assert body["emergency_credit"] == {"limit": "0.500", "available": "0.500", "in_use": False}
    # 9.700 to spend with the emergency credit: the rest of Sunday (half a day, 0.150), then weeks
    # from Monday of 5 × 0.300 + 2 × 0.600 = 2.700. Three weeks (8.100) reach Sunday 13 December with
    # 1.450 left; Monday to Thursday take 1.200, and Friday's 0.600 is more than the 0.250 left.
    assert body["depletion_date"] == "2026-12-18"
    assert Decimal(body["projected_days_left"]) == Decimal("25.9")  # 0.5 + 21 + 4 + 0.25 / 0.6
    assert len(body["payment_code"]) == 12


def test_a_new_account_has_no_projection_yet(make_api):
    link = AccountLinkFactory()
    body = make_api(link.user).get(f"/api/v1/accounts/{link.account_id}/balance/").json()
    assert body["balance"] == "0.000"
    assert body["projected_days_left"] is None and body["average_daily_spend"] is None


def test_the_statement_filters_by_kind_and_period(make_api):
    link = AccountLinkFactory()
    account = link.account
    ledger_post(
        account=account, kind="topup", amount=Decimal("5.000"), key="t1", description="top-up"
    )
    spend(account, date(2026, 11, 1), "0.250")
    api = make_api(link.user)

    everything = api.get(f"/api/v1/accounts/{account.pk}/statement/").json()
    topups = api.get(f"/api/v1/accounts/{account.pk}/statement/", {"kind": "topup"}).json()
    bad = api.get(f"/api/v1/accounts/{account.pk}/statement/", {"kind": "gift"})
    reversed_ = api.get(
        f"/api/v1/accounts/{account.pk}/statement/",
        {"period_from": "2026-11-02", "period_to": "2026-11-01"},
    )

    assert [e["balance_after"] for e in everything["results"]] == ["4.750", "5.000"]
    assert [e["kind"] for e in topups["results"]] == ["topup"]
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "unknown_kind"
    assert reversed_.status_code == 400 and reversed_.json()["error"]["code"] == "period_reversed"


def paid_topup(account, amount: str, *, created_at: datetime, paid_at: datetime, channel="app"):
    return TopUp.objects.create(
        account=account,
        amount=Decimal(amount),
        currency="KWD",
        channel=channel,
        status="succeeded",
        created_at=created_at,
        paid_at=paid_at,
    )


def test_the_balance_takes_four_queries(make_api, django_assert_num_queries):
    link = AccountLinkFactory()
    account = link.account
    policy(account.utility, emergency_credit=Decimal("0.500"))
    today = date(2026, 11, 22)
    for back in range(1, 29):
        spend(account, today - timedelta(days=back), "0.300")
    ledger_post(
        account=account, kind="topup", amount=Decimal("20.000"), key="t", description="top-up"
    )
    paid_topup(
        account,
        "20.000",
        created_at=datetime(2026, 11, 20, 8, tzinfo=UTC),
        paid_at=datetime(2026, 11, 20, 9, tzinfo=UTC),
    )

    with time_machine.travel(datetime(2026, 11, 22, 9, 0, tzinfo=UTC)):
        api = make_api(link.user)
        # The user (authentication); the account with its utility, policy and balance; the
        # spend of the last 28 days and the last top-up together; the staff-edited calendar of
        # the year the run-out forecast walks into (its holidays put a disconnection off).
        with django_assert_num_queries(4):
            body = api.get(f"/api/v1/accounts/{account.pk}/balance/").json()

    assert body["balance"] == "11.600"
    assert body["average_daily_spend"] == "0.300"
    assert body["last_topup"] == {
        "amount": "20.000",
        "at": "2026-11-20T09:00:00Z",
        "channel": "app",
    }
    assert body["emergency_credit"]["limit"] == "0.500"
    assert body["projected_days_left"] == "40.3"  # half of today, then 11.950 / 0.300 = 39.8


def test_a_utility_without_a_policy_yet_gets_the_default_one(make_api):
    link = AccountLinkFactory()
    body = make_api(link.user).get(f"/api/v1/accounts/{link.account_id}/balance/").json()
    assert body["emergency_credit"] == {"limit": "0.000", "available": "0.000", "in_use": False}


def test_the_last_topup_is_the_readers_own(make_api):
    """A top-up begun before the reader's number became the account's is the previous holder's,
    even when it was paid later."""
    link = AccountLinkFactory(visible_from=datetime(2026, 11, 10, tzinfo=UTC))
    account = link.account
    paid_topup(
        account,
        "3.000",
        created_at=datetime(2026, 11, 12, tzinfo=UTC),
        paid_at=datetime(2026, 11, 12, 0, 5, tzinfo=UTC),
        channel="web",
    )
    paid_topup(
        account,
        "9.000",
        created_at=datetime(2026, 11, 9, 23, tzinfo=UTC),
        paid_at=datetime(2026, 11, 13, tzinfo=UTC),
    )
    api = make_api(link.user)

    body = api.get(f"/api/v1/accounts/{account.pk}/balance/").json()
    assert body["last_topup"] == {"amount": "3.000", "at": "2026-11-12T00:05:00Z", "channel": "web"}

    TopUp.objects.filter(channel="web").delete()
    assert api.get(f"/api/v1/accounts/{account.pk}/balance/").json()["last_topup"] is None
