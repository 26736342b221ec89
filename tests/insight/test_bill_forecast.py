"""A postpaid bill forecast in the middle of the month, only on enough readings (Opower-style
portals: 75 % of the last 7 days' reads)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine

from billing.models import Bill, LedgerEntry
from tests.insight.factories import (
    flat_postpaid_tariff,
    ingest,
    insight_policy,
    ownership_check,
    postpaid_meter,
    readers,
    slab_tariff,
)
from tests.meters.factories import MeterFactory, egypt, india

# India (UTC+05:30). Local midnight of 1 November is 31 October 18:30 UTC.
NOV_1 = datetime(2026, 10, 31, 18, 30, tzinfo=UTC)
NOW = NOV_1 + timedelta(days=15)  # 16 November, 00:00 local


def month_so_far(unread_on_the_last_7_days: int) -> list[int | None]:
    """1–8 November read every quarter-hour (100 Wh); 9–15 November, the last seven days, with
    the last `n` quarter-hours of each day unread."""
    day = [100] * (96 - unread_on_the_last_7_days) + [None] * unread_on_the_last_7_days
    return [100] * 96 * 8 + day * 7


@pytest.fixture
def household(db):
    utility = india()
    flat_postpaid_tariff(utility, rate="5.00", fixed="2.00")
    return postpaid_meter(utility)


def forecast(make_api, user, account):
    with time_machine.travel(NOW, tick=False):
        return make_api(user).get(f"/api/v1/accounts/{account.pk}/bill-forecast/")


def test_a_forecast_at_75_percent_coverage(make_api, household):
    ingest(household, NOV_1, month_so_far(24))  # 72 of 96 quarter-hours: exactly 75 %
    holder = readers(household.account)["holder"]

    response = forecast(make_api, holder, household.account)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["coverage_percent"] == 75.0
    assert (body["coverage_days"], body["min_coverage_percent"]) == (7, 75)
    assert body["month"] == "2026-11" and body["as_of"] == "2026-11-16T00:00:00+05:30"
    # So far: 8 × 96 + 7 × 72 = 1,272 quarter-hours of 100 Wh = 127.2 kWh at 5.00 = 636.00;
    # the fixed charge for 16 days (1 to 16 November, today held) at 2.00.
    assert body["so_far"] == {
        "period_to": "2026-11-16T00:00:00+05:30",
        "days": 16,
        "kwh": "127.200",
        "energy": "636.00",
        "fixed_charges": "32.00",
        "total": "668.00",
    }
    # Projected: the 168 unread quarter-hours and the 1,440 to come at the 100 Wh read on
    # average: 127.2 + 160.8 = 288 kWh, 1,440.00; 30 days of fixed charges.
    assert body["projected"] == {
        "period_to": "2026-12-01T00:00:00+05:30",
        "days": 30,
        "kwh": "288.000",
        "energy": "1440.00",
        "fixed_charges": "60.00",
        "total": "1500.00",
    }
    assert not Bill.objects.exists() and not LedgerEntry.objects.exists()  # a read only


def test_no_forecast_below_the_coverage_threshold(make_api, household):
    readings = month_so_far(24)
    readings[-25] = None  # one quarter-hour fewer: 503 of 672, 74.85 %
    ingest(household, NOV_1, readings)
    holder = readers(household.account)["holder"]

    response = forecast(make_api, holder, household.account)

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "insufficient_readings"
    assert (error["coverage_percent"], error["min_coverage_percent"]) == (74.9, 75)


def test_the_threshold_is_the_utilitys_policy(make_api, household):
    insight_policy(household.utility, bill_forecast_min_coverage_percent=80)
    ingest(household, NOV_1, month_so_far(24))
    holder = readers(household.account)["holder"]

    response = forecast(make_api, holder, household.account)

    assert response.status_code == 409
    assert response.json()["error"]["min_coverage_percent"] == 80


def test_progressive_slabs_price_the_projected_month(make_api, db):
    """Egypt's slabs apply to the month's whole kWh: the projection is priced on its total."""
    utility = egypt()
    slab_tariff(
        utility,
        slabs=((0, "0.68"), (50, "0.78"), (100, "0.95")),
        fixed="1.00",
        valid_from=date(2025, 1, 1),
    )
    meter = postpaid_meter(utility)
    start = datetime(2026, 11, 30, 22, tzinfo=UTC)  # Cairo's 1 December
    ingest(meter, start, [50] * 96 * 10)  # 4.8 kWh a day for 10 days
    holder = readers(meter.account)["holder"]

    with time_machine.travel(start + timedelta(days=10), tick=False):
        body = make_api(holder).get(f"/api/v1/accounts/{meter.account.pk}/bill-forecast/").json()

    assert body["coverage_percent"] == 100.0
    assert body["so_far"]["kwh"] == "48.000" and body["so_far"]["energy"] == "32.64"
    # 31 days × 4.8 = 148.8 kWh: 50 × 0.68 + 50 × 0.78 + 48.8 × 0.95 = 119.36.
    assert body["projected"]["kwh"] == "148.800"
    assert body["projected"]["energy"] == "119.36"
    assert body["projected"]["fixed_charges"] == "31.00"
    assert body["projected"]["total"] == "150.36"


def test_no_readings_no_forecast(make_api, household):
    holder = readers(household.account)["holder"]
    response = forecast(make_api, holder, household.account)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_readings"


def test_a_prepaid_account_is_told_the_balance_forecast_projects_it(make_api, db):
    meter = MeterFactory(utility=india())  # prepaid
    ingest(meter, NOV_1, [100] * 96 * 15)
    holder = readers(meter.account)["holder"]

    response = forecast(make_api, holder, meter.account)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_postpaid"


def test_the_reader_sees_only_their_own_period(make_api, household):
    """A holder whose number became the registered mobile on 9 November reads from then on: the
    month so far is theirs, not the previous holder's."""
    ingest(household, NOV_1, month_so_far(0))
    holder = readers(household.account)["holder"]
    holder.account_links.update(visible_from=NOV_1 + timedelta(days=8))

    body = forecast(make_api, holder, household.account).json()

    assert body["so_far"]["kwh"] == "67.200"  # 7 days × 96 × 100 Wh
    assert body["so_far"]["days"] == 8  # 9 to 16 November


def test_only_the_accounts_readers_see_it(make_api, household):
    ingest(household, NOV_1, month_so_far(0))
    with time_machine.travel(NOW, tick=False):
        ownership_check(
            make_api, household.account, f"/api/v1/accounts/{household.account.pk}/bill-forecast/"
        )
