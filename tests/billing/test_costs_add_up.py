"""Every cost a consumer reads adds up: quarter-hours and hours to their day, days to their month,
a day the same asked alone or in a month, and a month what charging posts or the bill charges."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from billing import bills, charging
from billing.energy_days import energy_days_close
from billing.models import LedgerEntry
from meters import services as meter_services
from tests.accounts.factories import AccountLinkFactory
from tests.billing.factories import flat_tariff, progressive_tariff, tou_tariff
from tests.meters.factories import MeterFactory, egypt

Q = timedelta(minutes=15)


def ingest(meter, start: datetime, end: datetime) -> None:
    """Small, uneven readings (20 to 219 Wh a quarter-hour): most quarter-hours cost a fraction
    of the minor unit, so rounding each bucket alone would lose most of the day."""
    count = int((end - start) / Q)
    readings = [
        ({"index": i}, meter.serial, (start + i * Q).isoformat(), 20 + (i * 37) % 200, "actual")
        for i in range(count)
    ]
    result = meter_services.readings_ingest(utility=meter.utility, readings=readings, source="test")
    assert result.rejected == 0


def costs(api, meter, period_from: str, period_to: str, group_by: str) -> list[Decimal]:
    response = api.get(
        f"/api/v1/meters/{meter.pk}/consumption/",
        {"period_from": period_from, "period_to": period_to, "group_by": group_by},
    )
    assert response.status_code == 200, response.content
    return [Decimal(b["cost"]) for b in response.json()["buckets"]]


def reader(make_api, meter):
    return make_api(AccountLinkFactory(account=meter.account).user)


@pytest.fixture
def kuwait_meter(db):
    return MeterFactory()


@pytest.fixture
def cairo_meter(db):
    return MeterFactory(utility=egypt(), serial="EGM0000001")


def test_kuwait_quarter_hours_and_hours_sum_to_the_day_under_a_flat_rate(make_api, kuwait_meter):
    """The outside check's case: 96 interval costs of 0.000 or 0.001 KWD summing to a third less
    than the day."""
    flat_tariff(kuwait_meter.utility, rate="0.003")
    start = datetime(2026, 11, 22, 21, tzinfo=UTC)  # 23 Nov 00:00 in Kuwait
    ingest(kuwait_meter, start, start + timedelta(days=1))
    api = reader(make_api, kuwait_meter)

    (day,) = costs(api, kuwait_meter, "2026-11-23", "2026-11-24", "day")
    intervals = costs(api, kuwait_meter, "2026-11-23", "2026-11-24", "interval")
    hours = costs(api, kuwait_meter, "2026-11-23", "2026-11-24", "hour")

    assert len(intervals) == 96 and len(hours) == 24
    wh = sum(20 + (i * 37) % 200 for i in range(96))
    assert day == (Decimal(wh) / 1000 * Decimal("0.003")).quantize(Decimal("0.001"))
    assert sum(intervals) == day == sum(hours)
    assert all(c in (Decimal("0.000"), Decimal("0.001")) for c in intervals)
    # An afternoon asked alone is the same quarter-hours as in the whole day.
    afternoon = costs(
        api, kuwait_meter, "2026-11-23T12:00:00+03:00", "2026-11-23T18:00", "interval"
    )
    assert afternoon == intervals[48:72]


def test_days_sum_to_the_month_and_match_what_charging_posted(make_api, kuwait_meter):
    flat_tariff(kuwait_meter.utility, rate="0.003")
    start = datetime(2026, 10, 31, 21, tzinfo=UTC)  # 1 Nov 00:00 in Kuwait
    ingest(kuwait_meter, start, start + timedelta(days=10))
    charging.charges_run()
    energy_days_close(now=start + timedelta(days=11))  # the last day's held energy is posted
    api = reader(make_api, kuwait_meter)

    days = costs(api, kuwait_meter, "2026-11-01", "2026-11-11", "day")
    (month,) = costs(api, kuwait_meter, "2026-11-01", "2026-12-01", "month")

    assert sum(days) == month
    posted = -sum(
        e.amount
        for e in LedgerEntry.objects.filter(
            account=kuwait_meter.account, kind=LedgerEntry.Kind.ENERGY_CHARGE
        )
    )
    assert month == posted
    # The same day, alone and inside the month, costs the same.
    for n in (0, 4, 9):
        day = date(2026, 11, 1 + n).isoformat()
        following = date(2026, 11, 2 + n).isoformat()
        assert costs(api, kuwait_meter, day, following, "day") == [days[n]]


def test_time_of_use_intervals_hours_and_days_add_up(make_api, kuwait_meter):
    tou_tariff(kuwait_meter.utility, base="0.003", peak="0.011")  # peak 12:00 to 17:00 local
    start = datetime(2026, 10, 31, 21, tzinfo=UTC)
    ingest(kuwait_meter, start, start + timedelta(days=3))
    api = reader(make_api, kuwait_meter)

    days = costs(api, kuwait_meter, "2026-11-01", "2026-11-04", "day")
    for n, day_cost in enumerate(days):
        day, following = date(2026, 11, 1 + n).isoformat(), date(2026, 11, 2 + n).isoformat()
        assert sum(costs(api, kuwait_meter, day, following, "interval")) == day_cost
        assert sum(costs(api, kuwait_meter, day, following, "hour")) == day_cost
    (month,) = costs(api, kuwait_meter, "2026-11-01", "2026-12-01", "month")
    assert sum(days) == month
    # A peak quarter-hour costs more than the same energy off-peak.
    hours = costs(api, kuwait_meter, "2026-11-01", "2026-11-02", "hour")
    assert hours[13] > hours[10]


def test_slabs_price_the_billing_month_whatever_the_query_across_a_dst_day(make_api, cairo_meter):
    """Cairo springs forward on Friday 24 April 2026 at 00:00: that local day has 92 quarter-hours.
    Under progressive slabs a day's cost is its share of its whole month, never of the query."""
    cairo_meter.payment_mode = "postpaid"
    cairo_meter.save()
    progressive_tariff(cairo_meter.utility, slabs=((0, "0.68"), (50, "0.78"), (100, "0.95")))
    start = datetime(2026, 3, 31, 22, tzinfo=UTC)  # 1 April 00:00 in Cairo (UTC+2)
    end = datetime(2026, 4, 30, 21, tzinfo=UTC)  # 1 May 00:00 in Cairo (UTC+3)
    ingest(cairo_meter, start, end)
    api = reader(make_api, cairo_meter)

    dst_intervals = costs(api, cairo_meter, "2026-04-24", "2026-04-25", "interval")
    (dst_day,) = costs(api, cairo_meter, "2026-04-24", "2026-04-25", "day")
    days = costs(api, cairo_meter, "2026-04-01", "2026-05-01", "day")
    (month,) = costs(api, cairo_meter, "2026-04-01", "2026-05-01", "month")
    first_days = costs(api, cairo_meter, "2026-04-01", "2026-04-25", "day")

    assert len(dst_intervals) == 92
    assert sum(dst_intervals) == dst_day == days[23] == first_days[23]
    assert first_days == days[:24]
    assert sum(days) == month
    bill = bills.bill_issue(account=cairo_meter.account, month=date(2026, 4, 1))
    assert bill.energy_amount == month


def test_the_autumn_dst_day_of_100_quarter_hours_adds_up(make_api, cairo_meter):
    """Cairo falls back at the end of Thursday 29 October 2026: that local day has 100."""
    flat_tariff(cairo_meter.utility, rate="0.68")
    start = datetime(2026, 10, 28, 21, tzinfo=UTC)  # 29 Oct 00:00 in Cairo (UTC+3)
    ingest(cairo_meter, start, start + timedelta(hours=25))
    api = reader(make_api, cairo_meter)

    intervals = costs(api, cairo_meter, "2026-10-29", "2026-10-30", "interval")
    hours = costs(api, cairo_meter, "2026-10-29", "2026-10-30", "hour")
    (day,) = costs(api, cairo_meter, "2026-10-29", "2026-10-30", "day")

    assert len(intervals) == 100 and len(hours) == 25
    assert sum(intervals) == sum(hours) == day
    assert day == (
        Decimal(sum(20 + (i * 37) % 200 for i in range(100))) / 1000 * Decimal("0.68")
    ).quantize(Decimal("0.01"))
