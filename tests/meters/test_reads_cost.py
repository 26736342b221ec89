"""What a consumer read costs: its queries, and the shortcuts it takes giving the same answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from meters.selectors import local_starts
from meters.storage import Series
from tests.accounts.factories import AccountLinkFactory
from tests.meters.factories import MeterFactory, egypt
from tests.meters.test_consumption import fill
from tests.outages.factories import transformer_of

Q = timedelta(minutes=15)
# On PostgreSQL the readings come through a binary psycopg cursor that Django's query log does not
# see (meters.selectors.meter_days): one query fewer is counted there.
READINGS_QUERY = 0 if connection.vendor == "postgresql" else 1


@pytest.mark.parametrize(
    "zone",
    [
        "Asia/Kuwait",
        "Asia/Kolkata",  # +05:30
        "Asia/Kathmandu",  # +05:45
        "Australia/Eucla",  # +08:45
        "America/St_Johns",  # -03:30, with daylight saving
        "Africa/Cairo",  # daylight saving at midnight
        "UTC",
    ],
)
@pytest.mark.parametrize(
    "start",
    [
        datetime(2026, 1, 10, 21, 0, tzinfo=UTC),
        datetime(2026, 3, 27, 13, 15, tzinfo=UTC),
        datetime(2026, 10, 29, 22, 45, tzinfo=UTC),
        datetime(2026, 11, 1, 0, 0, tzinfo=UTC),
    ],
)
@pytest.mark.parametrize("count", [1, 95, 96, 97, 31 * 96])
def test_local_starts_are_each_instant_in_the_local_zone(zone, start, count):
    series = Series(start, start + count * Q, {})
    expected = [(start + i * Q).astimezone(ZoneInfo(zone)).isoformat() for i in range(count)]
    assert local_starts(series, ZoneInfo(zone)) == expected


@pytest.fixture
def reader(make_api):
    meter = MeterFactory()
    fill(meter, datetime(2026, 8, 31, 21, tzinfo=UTC), 61 * 96)  # Kuwait: September and October
    link = AccountLinkFactory(account=meter.account)
    return meter, make_api(link.user)


@pytest.mark.parametrize("group_by", ["interval", "day"])
def test_consumption_takes_three_queries(reader, django_assert_num_queries, group_by):
    meter, api = reader
    params = {"period_from": "2026-10-01", "period_to": "2026-10-31", "group_by": group_by}
    if group_by == "interval":
        params["period_from"] = "2026-10-30"
    api.get(f"/api/v1/meters/{meter.pk}/consumption/", params)  # tariffs are read once a minute
    # The user (authentication), the meter with the reader's tenancies, the readings.
    with django_assert_num_queries(2 + READINGS_QUERY):
        response = api.get(f"/api/v1/meters/{meter.pk}/consumption/", params)
    assert response.status_code == 200
    assert response.json()["total"]["present_intervals"] > 0


def test_the_pattern_takes_three_queries(reader, django_assert_num_queries):
    meter, api = reader
    params = {"period_from": "2026-10-01", "period_to": "2026-10-31"}
    # The user, the meter with the reader's tenancies, the readings of both periods at once.
    with django_assert_num_queries(2 + READINGS_QUERY):
        response = api.get(f"/api/v1/meters/{meter.pk}/pattern/", params)
    body = response.json()
    assert body["complete_days"] == 30
    assert body["previous_period"]["complete_days"] == 30


def test_a_meter_and_the_list_take_three_queries(reader, django_assert_num_queries):
    meter, api = reader
    meter.transformer = transformer_of(meter.utility)
    meter.save()
    # The user, the meters with the reader's tenancies, their places in the grid.
    with django_assert_num_queries(3):
        assert api.get(f"/api/v1/meters/{meter.pk}/").json()["grid"]["transformer"]
    with django_assert_num_queries(3):
        assert [m["id"] for m in api.get("/api/v1/meters/").json()] == [meter.pk]


def test_the_pattern_adds_up_what_the_intervals_show(make_api):
    """The pattern's shortcut for whole days gives what walking every interval gives: checked
    against the interval readings of the same period, across gaps and a fall-back day."""
    meter = MeterFactory(utility=egypt())
    link = AccountLinkFactory(account=meter.account)
    api = make_api(link.user)
    start = datetime(2026, 10, 14, 21, tzinfo=UTC)  # Cairo 2026-10-15 00:00 (+03:00)
    gaps = {96 * 3 + n for n in range(10)} | {96 * 9 + 40, 96 * 20 + 2}
    # The highest value, 250, comes back every 211 intervals: the first of equal peaks stays.
    fill(meter, start, 96 * 25, wh=lambda i: 40 + (i * 37) % 211, skip=gaps)
    period = {"period_from": "2026-10-22", "period_to": "2026-11-05"}

    body = api.get(f"/api/v1/meters/{meter.pk}/pattern/", period).json()
    rows = api.get(
        f"/api/v1/meters/{meter.pk}/consumption/", {**period, "group_by": "interval"}
    ).json()["buckets"]

    present = [r for r in rows if r["quality"] in ("actual", "estimated")]
    sums, counts = [0] * 96, [0] * 96
    for r in present:
        slot = int(r["start"][11:13]) * 4 + int(r["start"][14:16]) // 15
        sums[slot] += r["energy_wh"]
        counts[slot] += 1
    assert [p["days"] for p in body["profile"]] == counts
    assert [p["average_wh"] for p in body["profile"]] == [
        round(s / n, 1) if n else None for s, n in zip(sums, counts, strict=True)
    ]
    peak = max(present, key=lambda r: r["energy_wh"])  # max keeps the first of equals
    assert body["peak"]["start"] == peak["start"]
    assert body["peak"]["energy_wh"] == peak["energy_wh"]
    by_day: dict[str, list] = {}
    for r in rows:
        by_day.setdefault(r["start"][:10], []).append(r)
    complete = [d for d, day in by_day.items() if all(r["energy_wh"] is not None for r in day)]
    assert len(by_day["2026-10-29"]) == 100  # the clocks went back at midnight
    assert body["complete_days"] == len(complete) == 12
    nights = sorted(
        min(r["energy_wh"] for r in day if r["energy_wh"] is not None and r["start"][11:13] < "05")
        for day in by_day.values()
    )
    middle = len(nights) // 2
    median = nights[middle] if len(nights) % 2 else (nights[middle - 1] + nights[middle]) / 2
    assert body["base_load_w"] == round(median * 4, 1)
    whole = [sum(r["energy_wh"] for r in by_day[d]) for d in complete]
    assert body["daily_average_wh"] == round(sum(whole) / len(whole), 1)
