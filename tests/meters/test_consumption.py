from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from meters import services
from tests.accounts.factories import AccountLinkFactory, UserFactory
from tests.meters.factories import MeterFactory, egypt, india

Q = timedelta(minutes=15)


def fill(meter, start: datetime, count: int, wh=100, skip=()):
    """`count` consecutive intervals from `start`, each `wh`, leaving out the indexes in `skip`."""
    readings = [
        (
            {"index": i},
            meter.serial,
            (start + i * Q).isoformat(),
            wh(i) if callable(wh) else wh,
            "actual",
        )
        for i in range(count)
        if i not in skip
    ]
    result = services.readings_ingest(utility=meter.utility, readings=readings, source="test")
    assert result.rejected == 0, result.rejections


@pytest.fixture
def owner_api(make_api):
    def build(meter):
        link = AccountLinkFactory(account=meter.account)
        return make_api(link.user)

    return build


def get(api, meter, **params):
    response = api.get(f"/api/v1/meters/{meter.pk}/consumption/", params)
    assert response.status_code == 200, response.json()
    return response.json()


def test_a_cairo_spring_forward_day_has_92_intervals_in_its_own_local_day(owner_api):
    meter = MeterFactory(utility=egypt())
    fill(meter, datetime(2026, 4, 22, 22, tzinfo=UTC), 3 * 96)
    body = get(
        owner_api(meter), meter, period_from="2026-04-23", period_to="2026-04-26", group_by="day"
    )

    days = {b["start"][:10]: b for b in body["buckets"]}
    assert [b["expected_intervals"] for b in body["buckets"]] == [96, 92, 96]
    # Midnight does not exist that day in Cairo: clocks go from 00:00 straight to 01:00.
    assert days["2026-04-24"]["start"] == "2026-04-24T01:00:00+03:00"
    assert days["2026-04-24"]["end"] == "2026-04-25T00:00:00+03:00"
    assert days["2026-04-24"]["energy_wh"] == 92 * 100 and days["2026-04-24"]["complete"] is True


def test_a_cairo_fall_back_day_has_100_intervals(owner_api):
    meter = MeterFactory(utility=egypt())
    fill(meter, datetime(2026, 10, 27, 21, tzinfo=UTC), 3 * 96 + 4)
    body = get(
        owner_api(meter), meter, period_from="2026-10-28", period_to="2026-10-31", group_by="day"
    )

    assert [b["expected_intervals"] for b in body["buckets"]] == [96, 100, 96]
    assert body["buckets"][1]["start"] == "2026-10-29T00:00:00+03:00"
    assert body["buckets"][1]["end"] == "2026-10-30T00:00:00+02:00"
    assert body["buckets"][1]["energy_wh"] == 100 * 100


def test_the_repeated_hour_of_a_fall_back_day_is_two_buckets(owner_api):
    meter = MeterFactory(utility=egypt())
    fill(meter, datetime(2026, 10, 29, 19, tzinfo=UTC), 16)
    body = get(
        owner_api(meter),
        meter,
        period_from="2026-10-29T22:00:00+03:00",
        period_to="2026-10-30T00:00:00+02:00",
        group_by="hour",
    )
    assert [b["start"] for b in body["buckets"]] == [
        "2026-10-29T22:00:00+03:00",
        "2026-10-29T23:00:00+03:00",
        "2026-10-29T23:00:00+02:00",
    ]
    assert [b["expected_intervals"] for b in body["buckets"]] == [4, 4, 4]


def test_india_buckets_follow_half_hour_offset(owner_api):
    meter = MeterFactory(utility=india())
    # Local 2026-11-10 00:00 IST is 2026-11-09 18:30 UTC.
    fill(meter, datetime(2026, 11, 9, 18, 30, tzinfo=UTC), 96, wh=lambda i: i)
    api = owner_api(meter)

    days = get(api, meter, period_from="2026-11-10", period_to="2026-11-11", group_by="day")[
        "buckets"
    ]
    hours = get(api, meter, period_from="2026-11-10", period_to="2026-11-11", group_by="hour")[
        "buckets"
    ]

    assert days == [
        {
            "start": "2026-11-10T00:00:00+05:30",
            "end": "2026-11-11T00:00:00+05:30",
            "energy_wh": sum(range(96)),
            "expected_intervals": 96,
            "present_intervals": 96,
            "estimated_intervals": 0,
            "missing_intervals": 0,
            "outside_intervals": 0,
            "complete": True,
        }
    ]
    assert len(hours) == 24
    assert (
        hours[1]["start"] == "2026-11-10T01:00:00+05:30" and hours[1]["energy_wh"] == 4 + 5 + 6 + 7
    )


def test_a_gap_shows_as_missing_never_as_zero(owner_api):
    meter = MeterFactory()
    start = datetime(2026, 11, 1, 21, tzinfo=UTC)  # Kuwait midnight
    fill(meter, start, 8, wh=50, skip={2, 3})
    fill(meter, start + 8 * Q, 1, wh=0)  # a real zero
    api = owner_api(meter)

    intervals = get(
        api,
        meter,
        period_from="2026-11-02T00:00:00+03:00",
        period_to="2026-11-02T02:30:00+03:00",
        group_by="interval",
    )["buckets"]
    hours = get(
        api,
        meter,
        period_from="2026-11-02T00:00:00+03:00",
        period_to="2026-11-02T02:00:00+03:00",
        group_by="hour",
    )["buckets"]

    assert [b["energy_wh"] for b in intervals] == [50, 50, None, None, 50, 50, 50, 50, 0, None]
    assert [b["quality"] for b in intervals][2:4] == ["absent", "absent"]
    assert intervals[0] == {
        "start": "2026-11-02T00:00:00+03:00",
        "energy_wh": 50,
        "quality": "actual",
    }
    assert hours[0] == {
        "start": "2026-11-02T00:00:00+03:00",
        "end": "2026-11-02T01:00:00+03:00",
        "energy_wh": 100,
        "expected_intervals": 4,
        "present_intervals": 2,
        "estimated_intervals": 0,
        "missing_intervals": 2,
        "outside_intervals": 0,
        "complete": False,
    }


def test_weeks_and_months_are_local(owner_api):
    meter = MeterFactory()  # Kuwait: weeks start on Sunday
    fill(meter, datetime(2026, 9, 30, 21, tzinfo=UTC), 96 * 35, wh=10)
    api = owner_api(meter)

    weeks = get(api, meter, period_from="2026-10-01", period_to="2026-11-05", group_by="week")[
        "buckets"
    ]
    months = get(api, meter, period_from="2026-10-01", period_to="2026-11-05", group_by="month")[
        "buckets"
    ]

    assert (
        weeks[0]["start"] == "2026-10-01T00:00:00+03:00"
        and weeks[1]["start"] == "2026-10-04T00:00:00+03:00"
    )
    assert [m["start"][:10] for m in months] == ["2026-10-01", "2026-11-01"]
    assert months[0]["energy_wh"] == 31 * 96 * 10 and months[0]["complete"]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"period_from": "2026-11-02", "period_to": "2026-11-01"}, "period_reversed"),
        ({"period_from": "2026-11-01"}, "period_required"),
        ({}, "period_required"),
        (
            {"period_from": "2026-01-01", "period_to": "2026-03-01", "group_by": "interval"},
            "period_too_long",
        ),
        (
            {"period_from": "2026-11-01", "period_to": "2026-11-02", "group_by": "fortnight"},
            "unknown_group_by",
        ),
        ({"period_from": "yesterday", "period_to": "2026-11-02"}, "bad_period"),
    ],
)
def test_bad_queries_get_a_clear_400(owner_api, params, code):
    meter = MeterFactory()
    response = owner_api(meter).get(f"/api/v1/meters/{meter.pk}/consumption/", params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_intervals_not_yet_ended_are_not_expected(owner_api, settings):
    import time_machine

    meter = MeterFactory()
    fill(meter, datetime(2026, 11, 1, 21, tzinfo=UTC), 40)
    with time_machine.travel(datetime(2026, 11, 2, 7, 5, tzinfo=UTC)):  # 10:05 in Kuwait
        body = get(
            owner_api(meter),
            meter,
            period_from="2026-11-02",
            period_to="2026-11-03",
            group_by="day",
        )
    assert body["buckets"][0]["expected_intervals"] == 40
    assert body["buckets"][0]["complete"] is False  # the day is not over


def test_the_pattern_of_a_household(owner_api):
    meter = MeterFactory()
    start = datetime(2026, 10, 31, 21, tzinfo=UTC)  # Kuwait 2026-11-01 00:00, a Sunday

    def shape(i):
        slot = i % 96
        return 50 if slot < 20 else (400 if 72 <= slot < 88 else 150)

    fill(
        meter, start - timedelta(days=14), 96 * 14, wh=lambda i: 100
    )  # the previous period: lower use
    fill(meter, start, 96 * 14, wh=shape)
    fill(meter, start + timedelta(days=2, hours=19), 1, wh=3000)  # a kettle and the AC at once

    response = owner_api(meter).get(
        f"/api/v1/meters/{meter.pk}/pattern/",
        {"period_from": "2026-11-01", "period_to": "2026-11-15"},
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    profile = {p["time"]: p["average_wh"] for p in body["profile"]}
    assert profile["03:00"] == 50 and profile["19:15"] == 400 and profile["12:00"] == 150
    assert profile["19:00"] == round((13 * 400 + 3000) / 14, 1)
    assert body["peak"] == {
        "start": "2026-11-03T19:00:00+03:00",
        "energy_wh": 3000,
        "demand_kw": 12.0,
    }
    assert body["base_load_w"] == 200.0  # 50 Wh a quarter-hour overnight
    assert body["complete_days"] == 14
    day = 20 * 50 + 16 * 400 + 60 * 150
    assert (
        body["weekday_daily_average_wh"] == (10 * day + 3000 - 400) / 10
    )  # the kettle was on a Tuesday
    assert body["weekend_daily_average_wh"] == day
    assert body["previous_period"]["daily_average_wh"] == 9600
    expected_avg = (14 * day + 3000 - 400) / 14
    assert body["daily_average_wh"] == round(expected_avg, 1)
    assert body["change_percent"] == round((expected_avg - 9600) / 9600 * 100, 1)


class TestOwnership:
    ENDPOINTS = [
        "",
        "consumption/?period_from=2026-11-01&period_to=2026-11-02",
        "pattern/?period_from=2026-11-01&period_to=2026-11-02",
        "export/?period_from=2026-11-01&period_to=2026-11-02",
    ]

    @pytest.mark.parametrize("suffix", ENDPOINTS)
    def test_the_owner_reads_it(self, owner_api, suffix):
        meter = MeterFactory()
        assert owner_api(meter).get(f"/api/v1/meters/{meter.pk}/{suffix}").status_code == 200

    @pytest.mark.parametrize("suffix", ENDPOINTS)
    @pytest.mark.parametrize("who", ["other", "staff", "unlinked"])
    def test_others_cannot(self, make_api, suffix, who):
        meter = MeterFactory()
        if who == "unlinked":
            link = AccountLinkFactory(account=meter.account)
            services_unlink(link)
            user = link.user
        else:
            user = UserFactory(is_staff=who == "staff")
            AccountLinkFactory(user=user)  # they have an account, just not this one
        response = make_api(user).get(f"/api/v1/meters/{meter.pk}/{suffix}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "meter_not_found"

    @pytest.mark.parametrize("suffix", ENDPOINTS)
    def test_anonymous_cannot(self, make_api, suffix):
        meter = MeterFactory()
        assert make_api().get(f"/api/v1/meters/{meter.pk}/{suffix}").status_code == 401

    def test_the_list_holds_only_linked_meters(self, owner_api):
        mine, _theirs = MeterFactory(), MeterFactory()
        body = owner_api(mine).get("/api/v1/meters/").json()
        assert [m["serial"] for m in body] == [mine.serial]
        assert body[0]["communication"] == "never"


def services_unlink(link):
    from accounts.services import link_remove

    link_remove(user=link.user, link_id=link.pk)


def test_intervals_across_a_fall_back_carry_their_own_offsets(owner_api):
    meter = MeterFactory(utility=egypt())
    fill(meter, datetime(2026, 10, 29, 20, 30, tzinfo=UTC), 6)
    body = get(
        owner_api(meter),
        meter,
        period_from="2026-10-29T23:30:00+03:00",
        period_to="2026-10-29T23:30:00+02:00",
        group_by="interval",
    )
    assert [b["start"] for b in body["buckets"]] == [
        "2026-10-29T23:30:00+03:00",
        "2026-10-29T23:45:00+03:00",
        "2026-10-29T23:00:00+02:00",
        "2026-10-29T23:15:00+02:00",
    ]
