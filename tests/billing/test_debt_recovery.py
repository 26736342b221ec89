"""Debt recovered at a capped share of each top-up and a capped daily amount (UK suppliers recover
debt at a set daily rate): an Egyptian household converted to prepaid with its arrears as debt,
clock pinned (Africa/Cairo, UTC+02:00 in November)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection

from billing import tasks
from billing.affordability import CHUNK
from billing.models import Balance, LedgerEntry
from billing.selectors import ledger_check
from tests.billing.factories_affordability import (
    arrears,
    balance_of,
    credit,
    egypt_household,
    household,
    top_up,
)
from tests.meters.factories import india

CAIRO = ZoneInfo("Africa/Cairo")
CAPPED = {
    "debt_recovery_percent": Decimal(25),
    "debt_recovery_daily_cap": Decimal("20.00"),
}
DAILY = {**CAPPED, "debt_recovery_daily_rate": Decimal("5.00")}


def cairo(day, hour, minute=0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=CAIRO)  # 10 November 2026: a Tuesday


def recoveries(account) -> list[tuple[str, Decimal]]:
    return [
        (key.split(":")[0], amount)
        for key, amount in LedgerEntry.objects.filter(
            account=account, kind="debt_recovery"
        ).values_list("key", "amount")
    ]


@pytest.mark.django_db
def test_a_top_ups_share_is_capped_by_what_the_day_has_left(make_api):
    link, _meter = egypt_household(**CAPPED)
    account = link.account
    arrears(account, "100.00")
    with time_machine.travel(cairo(10, 10), tick=False):
        first = top_up(make_api(link.user), account, "200.00", key="t-1")  # 25 %: 50.00
    with time_machine.travel(cairo(10, 23, 30), tick=False):
        top_up(make_api(link.user), account, "40.00", key="t-2")  # the day's 20.00 is used up
    with time_machine.travel(cairo(11, 0, 30), tick=False):  # a new local day (22:30 UTC)
        top_up(make_api(link.user), account, "40.00", key="t-3")  # 25 %: 10.00

    assert recoveries(account) == [("debt", Decimal("-20.00")), ("debt", Decimal("-10.00"))]
    entry = LedgerEntry.objects.get(key=f"debt:{first.pk}")
    assert "cap" in entry.description and entry.meta["capped"] is True
    assert balance_of(account) == (Decimal("250.00"), Decimal("70.00"))
    assert ledger_check() == []


@pytest.mark.django_db
def test_without_a_cap_each_top_up_repays_its_share(make_api):
    link, _meter = egypt_household(debt_recovery_percent=Decimal(25))
    arrears(link.account, "100.00")
    with time_machine.travel(cairo(10, 10), tick=False):
        top_up(make_api(link.user), link.account, "200.00", key="t-1")
        top_up(make_api(link.user), link.account, "100.00", key="t-2")

    assert recoveries(link.account) == [("debt", Decimal("-50.00")), ("debt", Decimal("-25.00"))]
    assert balance_of(link.account) == (Decimal("225.00"), Decimal("25.00"))


def _run_at(moment, capture):
    with time_machine.travel(moment, tick=False), capture(execute=True):
        return tasks.affordability_daily()


@pytest.mark.django_db
def test_the_daily_rate_is_taken_once_a_local_day_however_often_the_task_runs(
    make_api, django_capture_on_commit_callbacks
):
    link, _meter = egypt_household(**DAILY)
    account = link.account
    arrears(account, "40.00")
    credit(account, "50.00", key="opening")
    broke, _ = egypt_household()  # in debt with nothing above zero: the rate never cuts a supply
    arrears(broke.account, "40.00", key="arrears:broke")
    clear, _ = egypt_household()  # no debt: nothing to do

    # Tuesday 13:05: the day began long ago; the run waits for the next local day.
    assert _run_at(cairo(10, 13, 5), django_capture_on_commit_callbacks)["recovered"] == 0
    # Wednesday's first run at 00:05, and again (a retried beat), and the hours after.
    counts = [
        _run_at(cairo(11, 0, 5), django_capture_on_commit_callbacks)["recovered"],
        _run_at(cairo(11, 0, 5), django_capture_on_commit_callbacks)["recovered"],
        _run_at(cairo(11, 1, 5), django_capture_on_commit_callbacks)["recovered"],
        _run_at(cairo(11, 14, 5), django_capture_on_commit_callbacks)["recovered"],
    ]
    assert counts == [1, 0, 0, 0]
    [(key,)] = LedgerEntry.objects.filter(kind="debt_recovery").values_list("key")
    assert key == f"debt-day:{account.pk}:2026-11-11"
    # A top-up the same day repays its share within what the cap leaves (20.00 - 5.00).
    with time_machine.travel(cairo(11, 10), tick=False):
        top_up(make_api(link.user), account, "200.00", key="t-1")
    assert balance_of(account) == (Decimal("230.00"), Decimal("20.00"))
    # Thursday and Friday: 5.00 each; the debt is never overpaid.
    for day in (12, 13, 14, 15, 16):
        _run_at(cairo(day, 0, 5), django_capture_on_commit_callbacks)
    assert [a for _, a in recoveries(account)] == [Decimal("-5.00"), Decimal("-15.00")] + [
        Decimal("-5.00")
    ] * 4
    assert balance_of(account) == (Decimal("210.00"), Decimal(0))
    assert balance_of(broke.account) == (Decimal(0), Decimal("40.00"))
    assert not LedgerEntry.objects.filter(account=clear.account).exists()
    assert ledger_check() == []


@pytest.mark.django_db
def test_each_utility_is_recovered_on_its_own_local_day(django_capture_on_commit_callbacks):
    cairo_link, _ = egypt_household(**DAILY)
    india_link, _ = household(india(), **DAILY)
    for link in (cairo_link, india_link):
        arrears(link.account, "40.00", key=f"arrears:{link.pk}")
        credit(link.account, "100.00", key=f"credit:{link.pk}")

    # 00:05 in Cairo is 03:35 in India: both days have just begun.
    _run_at(cairo(11, 0, 5), django_capture_on_commit_callbacks)
    # 19:05 in Cairo is 22:35 in India: neither day has just begun.
    _run_at(cairo(11, 19, 5), django_capture_on_commit_callbacks)
    # 21:05 in Cairo is 00:35 on Thursday in India: India's next day, not yet Cairo's.
    _run_at(cairo(11, 21, 5), django_capture_on_commit_callbacks)

    assert [k for (k,) in LedgerEntry.objects.filter(kind="debt_recovery").values_list("key")] == [
        f"debt-day:{cairo_link.account_id}:2026-11-11",
        f"debt-day:{india_link.account_id}:2026-11-11",
        f"debt-day:{india_link.account_id}:2026-11-12",
    ]


@pytest.mark.django_db
def test_the_daily_run_finds_the_accounts_in_debt_through_their_index():
    if connection.vendor != "postgresql":
        pytest.skip("query plans are PostgreSQL's")
    from billing import affordability

    link, _ = egypt_household(**DAILY)
    arrears(link.account, "40.00")
    Balance.objects.bulk_create(
        [
            Balance(account=household(link.account.utility)[0].account, amount=Decimal(1))
            for _ in range(3)
        ],
        ignore_conflicts=True,
    )
    captured = []

    def capture(execute, sql, params, many, context):
        if "billing_balance" in sql and "debt" in sql and "LIMIT" in sql:
            captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture), connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        day = cairo(11, 0, 5).date()
        affordability._debt_day_recover(
            utility=link.account.utility,
            policy=link.account.utility.billing_policy,
            day=day,
            now=cairo(11, 0, 5),
        )
    assert captured, "the chunk query ran"
    sql, params = captured[0]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
        cursor.execute("SET enable_seqscan = on")
    assert "balance_in_debt" in str(plan)
    assert f"LIMIT {CHUNK}" in sql or CHUNK in params
