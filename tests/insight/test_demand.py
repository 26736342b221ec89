"""Max 15-minute demand against the sanctioned load (India's consumer-rights rules ask utilities
to tell consumers when their demand exceeds it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from tests.insight.factories import ingest, ownership_check, readers
from tests.meters.factories import MeterFactory, india

NOV_1 = datetime(2026, 10, 31, 18, 30, tzinfo=UTC)  # Asia/Kolkata midnight
NOW = NOV_1 + timedelta(days=4, hours=12)  # 5 November, noon local


def slot(day: int, hour: int, minute: int = 0) -> int:
    """The index of a local quarter-hour of November, from 1 November 00:00."""
    return (day - 1) * 96 + hour * 4 + minute // 15


@pytest.fixture
def household(db):
    """3 kW sanctioned; two meters on one connection; 1–4 November read at 0.4 kW."""
    utility = india()
    meter = MeterFactory(utility=utility, account__sanctioned_load_kw=Decimal("3.00"))
    second = MeterFactory(utility=utility, account=meter.account)
    values = [100] * 96 * 4
    values[slot(1, 12)] = 750  # 3.00 kW: at the sanctioned load, not above it
    values[slot(2, 19)] = 800  # 3.20 kW
    values[slot(2, 19, 15)] = 760  # 3.04 kW
    values[slot(3, 20)] = 750  # with the second meter's 10 Wh: 760 Wh, 3.04 kW
    values[slot(4, 8)] = 1000  # 4.00 kW: the month's maximum
    ingest(meter, NOV_1, values)
    ingest(second, NOV_1 + slot(3, 20) * timedelta(minutes=15), [10])
    return meter.account


def demand(make_api, user, account, **params):
    with time_machine.travel(NOW, tick=False):
        return make_api(user).get(f"/api/v1/accounts/{account.pk}/demand/", params)


def test_max_demand_against_the_sanctioned_load(make_api, household):
    holder = readers(household)["holder"]

    response = demand(make_api, holder, household, month="2026-11")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["sanctioned_load_kw"] == "3.00"
    assert body["max_demand_kw"] == "4.00"
    assert body["max_demand_at"] == "2026-11-04T08:00:00+05:30"
    assert body["timezone"] == "Asia/Kolkata"
    # Above 3 kW: two quarter-hours on the 2nd, one on the 3rd (both meters), one on the 4th.
    assert (body["intervals_over"], body["days_over"]) == (4, 3)
    assert body["days"] == [
        {"date": "2026-11-01", "max_kw": "3.00", "at": "2026-11-01T12:00:00+05:30", "over": False},
        {"date": "2026-11-02", "max_kw": "3.20", "at": "2026-11-02T19:00:00+05:30", "over": True},
        {"date": "2026-11-03", "max_kw": "3.04", "at": "2026-11-03T20:00:00+05:30", "over": True},
        {"date": "2026-11-04", "max_kw": "4.00", "at": "2026-11-04T08:00:00+05:30", "over": True},
        {"date": "2026-11-05", "max_kw": None, "at": None, "over": None},  # today, unread
    ]


def test_the_current_month_by_default(make_api, household):
    holder = readers(household)["holder"]
    body = demand(make_api, holder, household).json()
    assert body["month"] == "2026-11" and body["max_demand_kw"] == "4.00"


def test_without_a_sanctioned_load_nothing_is_over(make_api, household):
    household.sanctioned_load_kw = None
    household.save()
    holder = readers(household)["holder"]

    body = demand(make_api, holder, household, month="2026-11").json()

    assert body["sanctioned_load_kw"] is None
    assert (body["intervals_over"], body["days_over"]) == (None, None)
    assert body["days"][1]["over"] is None and body["max_demand_kw"] == "4.00"


def test_the_reader_sees_only_their_own_period(make_api, household):
    """A holder whose number became the registered mobile on 3 November: the 2nd is not theirs."""
    holder = readers(household)["holder"]
    holder.account_links.update(visible_from=NOV_1 + timedelta(days=2))

    body = demand(make_api, holder, household, month="2026-11").json()

    assert (body["intervals_over"], body["days_over"]) == (2, 2)
    assert body["days"][1] == {"date": "2026-11-02", "max_kw": None, "at": None, "over": None}


def test_a_month_not_yet_begun(make_api, household):
    holder = readers(household)["holder"]
    response = demand(make_api, holder, household, month="2026-12")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "month_in_future"


def test_a_month_without_readings(make_api, household):
    holder = readers(household)["holder"]
    response = demand(make_api, holder, household, month="2026-10")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_readings"


@pytest.mark.parametrize(
    ("month", "code"),
    [
        ("2026-1", "bad_month"),
        ("2026-13", "bad_month"),
        ("november", "bad_month"),
        ("", "bad_month"),
        ("1999-12", "period_out_of_range"),
    ],
)
def test_a_bad_month_is_refused(make_api, household, month, code):
    holder = readers(household)["holder"]
    response = demand(make_api, holder, household, month=month)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["fields"]["month"][0]["code"] == code


def test_only_the_accounts_readers_see_it(make_api, household):
    with time_machine.travel(NOW, tick=False):
        ownership_check(make_api, household, f"/api/v1/accounts/{household.pk}/demand/")
