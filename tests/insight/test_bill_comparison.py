"""Why is this bill higher than the last one: the difference split into days, usage, tariff,
fixed charges and fines, adding up exactly (Egypt: progressive slabs, the 7 % late fine)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing import bills
from billing.models import Bill
from tests.billing.factories import policy
from tests.insight.factories import (
    ingest,
    ownership_check,
    postpaid_meter,
    readers,
    slab_tariff,
)
from tests.meters.factories import egypt

# Cairo is UTC+2 in November and December (no daylight saving then).
NOVEMBER = datetime(2026, 10, 31, 22, tzinfo=UTC)
DECEMBER = datetime(2026, 11, 30, 22, tzinfo=UTC)
EVENING = range(72, 96)  # 18:00 to midnight, local


@pytest.fixture
def household(db):
    """November at 4.8 kWh a day (50 Wh a quarter-hour), December at 6 kWh a day with the
    evening doubled; the slabs and the fixed charge rise on 1 December; both bills paid late."""
    utility = egypt()
    utility.late_fine_percent = Decimal("7")
    utility.save()
    policy(utility, bill_due_days=15)
    slab_tariff(
        utility,
        slabs=((0, "0.68"), (50, "0.78"), (100, "0.95")),
        fixed="1.00",
        valid_from=date(2025, 1, 1),
        valid_to=date(2026, 11, 30),
        name="2025 slabs",
    )
    slab_tariff(
        utility,
        slabs=((0, "0.70"), (50, "0.80"), (100, "1.00"), (200, "1.20")),
        fixed="1.25",
        valid_from=date(2026, 12, 1),
        name="December 2026 slabs",
    )
    meter = postpaid_meter(utility)
    ingest(meter, NOVEMBER, [50] * 96 * 30)
    ingest(meter, DECEMBER, [100 if slot in EVENING else 50 for slot in range(96)] * 31)
    account = meter.account
    bills.bill_issue(account=account, month=date(2026, 11, 1), issued_on=date(2026, 12, 1))
    bills.fines_apply(today=date(2026, 12, 17), utility=utility)
    bills.bill_issue(account=account, month=date(2026, 12, 1), issued_on=date(2027, 1, 1))
    bills.fines_apply(today=date(2027, 1, 17), utility=utility)
    return account


def comparison(make_api, user, account, month="2026-12", **params):
    return make_api(user).get(f"/api/v1/accounts/{account.pk}/bills/{month}/comparison/", params)


def test_the_parts_add_up_exactly_when_days_usage_slabs_and_a_fine_all_change(make_api, household):
    holder = readers(household)["holder"]
    response = comparison(make_api, holder, household)

    assert response.status_code == 200, response.json()
    body = response.json()
    # By hand. November: 144 kWh, 30 days. Energy 50 × 0.68 + 50 × 0.78 + 44 × 0.95 = 114.80;
    # fixed 30 × 1.00; fine 7 % of 144.80 = 10.136 → 10.14: 154.94 in all.
    assert body["base"] == {
        "month": "2026-11",
        "days": 30,
        "kwh": "144.000",
        "energy": "114.80",
        "fixed_charges": "30.00",
        "fine": "10.14",
        "total": "154.94",
        "tariff": {"name": "2025 slabs", "kind": "progressive"},
    }
    # December: 31 × 6 = 186 kWh at the new slabs 35 + 40 + 86 × 1.00 = 161.00; fixed 31 × 1.25
    # = 38.75; fine 7 % of 199.75 = 13.9825 → 13.98: 213.73.
    assert body["bill"]["kwh"] == "186.000"
    assert body["bill"]["energy"] == "161.00" and body["bill"]["fixed_charges"] == "38.75"
    assert body["bill"]["fine"] == "13.98" and body["bill"]["total"] == "213.73"
    assert body["difference"] == "58.79"
    # days: November's 4.8 kWh a day over 31 days = 148.8 kWh at the old slabs:
    # 34 + 39 + 48.8 × 0.95 = 119.36, less 114.80. usage: 186 kWh at the old slabs
    # (34 + 39 + 86 × 0.95 = 154.70) less 119.36. tariff: 161.00 − 154.70.
    assert body["parts"] == {
        "days": "4.56",
        "usage": "35.34",
        "tariff": "6.30",
        "fixed_charges": "8.75",
        "fines": "3.84",
    }
    assert sum(Decimal(v) for v in body["parts"].values()) == Decimal(body["difference"])
    assert body["kwh_change"] == "42.000"
    # No time-of-use tariff: the kWh by part of the local day; the evenings doubled.
    by_part = {p["name"]: p for p in body["usage_by_time_of_day"]}
    assert list(by_part) == ["night", "morning", "afternoon", "evening"]
    assert by_part["evening"] == {
        "name": "evening",
        "windows": [{"start": "18:00", "end": "00:00"}],
        "base_kwh": "36.000",
        "bill_kwh": "74.400",
        "change_kwh": "38.400",
    }
    assert by_part["night"]["base_kwh"] == "36.000" and by_part["night"]["bill_kwh"] == "37.200"
    assert body["currency"] == "EGP" and body["timezone"] == "Africa/Cairo"


def test_it_compares_with_the_month_asked(make_api, household):
    """The November bill against December's: every part changes sign, and still adds up."""
    holder = readers(household)["holder"]
    body = comparison(make_api, holder, household, month="2026-11", **{"with": "2026-12"}).json()

    assert body["base"]["month"] == "2026-12" and body["difference"] == "-58.79"
    assert sum(Decimal(v) for v in body["parts"].values()) == Decimal("-58.79")
    assert body["parts"]["fines"] == "-3.84" and body["parts"]["fixed_charges"] == "-8.75"


def test_the_parts_add_up_to_the_minor_unit_in_three_decimals(make_api, db):
    """Kuwait's fils: rates with six decimals, a month of 28 days against one of 31."""
    from tests.accounts.factories import UtilityFactory

    utility = UtilityFactory()
    slab_tariff(
        utility,
        slabs=((0, "0.002"), (3000, "0.004333")),
        fixed="0.0333",
        valid_from=date(2025, 1, 1),
        valid_to=date(2027, 1, 31),
    )
    slab_tariff(
        utility,
        slabs=((0, "0.002777"), (2500, "0.005111")),
        fixed="0.035",
        valid_from=date(2027, 2, 1),
    )
    meter = postpaid_meter(utility)
    ingest(meter, datetime(2026, 12, 31, 21, tzinfo=UTC), [1111] * 96 * 31)  # January
    ingest(meter, datetime(2027, 1, 31, 21, tzinfo=UTC), [1234] * 96 * 28)  # February
    for month, issued in (
        (date(2027, 1, 1), date(2027, 2, 1)),
        (date(2027, 2, 1), date(2027, 3, 1)),
    ):
        bills.bill_issue(account=meter.account, month=month, issued_on=issued)
    holder = readers(meter.account)["holder"]

    body = comparison(make_api, holder, meter.account, month="2027-02").json()

    january, february = Bill.objects.order_by("month")
    assert Decimal(body["difference"]) == february.amount - january.amount
    assert sum(Decimal(v) for v in body["parts"].values()) == Decimal(body["difference"])
    assert all(len(v.split(".")[1]) == 3 for v in body["parts"].values())


@pytest.mark.parametrize(
    ("month", "params", "status", "code"),
    [
        ("2026-10", {}, 404, "bill_not_found"),  # no bill that month
        ("2026-11", {}, 409, "no_previous_bill"),  # the first bill
        ("2026-12", {"with": "2026-06"}, 404, "bill_not_found"),
        ("2026-12", {"with": "2026-12"}, 409, "same_month"),
        ("2026-13", {}, 400, "bad_month"),
        ("26-12", {}, 400, "bad_month"),
        ("2026-12", {"with": "december"}, 400, "bad_month"),
        ("1999-12", {}, 400, "period_out_of_range"),
    ],
)
def test_it_refuses_what_it_cannot_compare(make_api, household, month, params, status, code):
    holder = readers(household)["holder"]
    count = Bill.objects.count()
    response = comparison(make_api, holder, household, month=month, **params)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert Bill.objects.count() == count


def test_only_the_accounts_readers_see_it(make_api, household):
    ownership_check(
        make_api, household, f"/api/v1/accounts/{household.pk}/bills/2026-12/comparison/"
    )
