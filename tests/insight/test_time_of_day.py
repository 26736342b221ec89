"""How much of the use fell in each time-of-day period, and what moving a share of the peak to the
cheapest hours would save (India: solar hours at least 20 % cheaper, peak 1.2×)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine

from tests.insight.factories import (
    flat_postpaid_tariff,
    ingest,
    insight_policy,
    ownership_check,
    postpaid_meter,
    readers,
    tou_postpaid_tariff,
)
from tests.meters.factories import india

NOV_1 = datetime(2026, 10, 31, 18, 30, tzinfo=UTC)  # Asia/Kolkata midnight
NOW = NOV_1 + timedelta(days=10, hours=10)  # 11 November, 10:00 local
PEAK = range(72, 88)  # 18:00 to 22:00


def a_day() -> list[int]:
    """100 Wh a quarter-hour, 200 Wh in the evening peak: 11.2 kWh."""
    return [200 if slot in PEAK else 100 for slot in range(96)]


@pytest.fixture
def household(db):
    utility = india()
    tou_postpaid_tariff(
        utility,
        standard="6.00",
        periods=[
            ("solar", time(9), time(17), "4.80"),
            ("peak", time(18), time(22), "7.20"),
        ],
    )
    meter = postpaid_meter(utility)
    # 31 October and today (11 November) lie outside the 10 days asked: 2,000 Wh a quarter-hour.
    ingest(meter, NOV_1 - timedelta(days=1), [2000] * 96 + a_day() * 10 + [2000] * 40)
    return meter


def split(make_api, user, account, **params):
    with time_machine.travel(NOW, tick=False):
        return make_api(user).get(f"/api/v1/accounts/{account.pk}/time-of-day/", params)


def test_the_split_and_the_saving_by_hand(make_api, household):
    insight_policy(household.utility, tod_shift_percent=25)
    holder = readers(household.account)["holder"]

    response = split(make_api, holder, household.account, days=10)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["period_from"] == "2026-11-01T00:00:00+05:30"
    assert body["period_to"] == "2026-11-11T00:00:00+05:30"
    # Per day: solar 32 quarter-hours × 100 Wh, peak 16 × 200 Wh, the other 48 hours × 100 Wh;
    # over ten days 32, 32 and 48 kWh, at 4.80, 7.20 and 6.00: 153.60 + 230.40 + 288.00.
    assert body["periods"] == [
        {
            "name": "solar",
            "windows": [{"start": "09:00", "end": "17:00"}],
            "rate": "4.800000",
            "kwh": "32.000",
            "cost": "153.60",
            "kwh_share_percent": 28.6,
            "cost_share_percent": 22.9,
        },
        {
            "name": "peak",
            "windows": [{"start": "18:00", "end": "22:00"}],
            "rate": "7.200000",
            "kwh": "32.000",
            "cost": "230.40",
            "kwh_share_percent": 28.6,
            "cost_share_percent": 34.3,
        },
        {
            "name": "standard",
            "windows": [{"start": "22:00", "end": "09:00"}, {"start": "17:00", "end": "18:00"}],
            "rate": "6.000000",
            "kwh": "48.000",
            "cost": "288.00",
            "kwh_share_percent": 42.9,
            "cost_share_percent": 42.9,
        },
    ]
    assert (body["total_kwh"], body["total_cost"]) == ("112.000", "672.00")
    # 25 % of the peak's 32 kWh = 8 kWh moved to the solar hours: 8 × (7.20 − 4.80) = 19.20.
    assert body["saving"] == {
        "shift_percent": 25,
        "from_period": "peak",
        "to_period": "solar",
        "kwh": "8.000",
        "amount": "19.20",
    }


def test_thirty_days_by_default_with_the_policys_ten_percent(make_api, household):
    holder = readers(household.account)["holder"]
    body = split(make_api, holder, household.account).json()

    assert body["days"] == 30 and body["period_from"] == "2026-10-12T00:00:00+05:30"
    # 31 October adds 96 × 2 kWh (today's readings still not); 10 % of the peak moves.
    assert body["total_kwh"] == "304.000"
    peak = body["periods"][1]
    assert peak["kwh"] == "64.000"  # 32 + 16 × 2
    # 6.4 kWh × (7.20 − 4.80) = 15.36.
    assert body["saving"]["kwh"] == "6.400" and body["saving"]["amount"] == "15.36"


def test_a_tariff_without_periods_is_refused(make_api, db):
    utility = india()
    flat_postpaid_tariff(utility, rate="5.00")
    meter = postpaid_meter(utility)
    ingest(meter, NOV_1, a_day() * 10)
    holder = readers(meter.account)["holder"]

    response = split(make_api, holder, meter.account)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_time_of_day_tariff"


def test_no_readings_in_those_days(make_api, household):
    holder = readers(household.account)["holder"]
    with time_machine.travel(NOW + timedelta(days=60), tick=False):
        response = make_api(holder).get(
            f"/api/v1/accounts/{household.account.pk}/time-of-day/", {"days": 7}
        )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_readings"


@pytest.mark.parametrize(
    ("days", "code"),
    [
        ("0", "days_out_of_range"),
        ("91", "days_out_of_range"),
        ("ten", "bad_days"),
        ("-1", "bad_days"),
    ],
)
def test_days_out_of_range_are_refused(make_api, household, days, code):
    holder = readers(household.account)["holder"]
    response = split(make_api, holder, household.account, days=days)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["fields"]["days"][0]["code"] == code


def test_only_the_accounts_readers_see_it(make_api, household):
    with time_machine.travel(NOW, tick=False):
        ownership_check(
            make_api, household.account, f"/api/v1/accounts/{household.account.pk}/time-of-day/"
        )
