"""Prepaid accounts are charged from their readings: each interval once, corrections as adjustments."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest

from billing import charging
from billing.energy_days import energy_days_close
from billing.ledger import ledger_post
from billing.models import Balance, LedgerEntry
from billing.selectors import ledger_check
from meters import services as meter_services
from tests.accounts.factories import AccountLinkFactory
from tests.billing.factories import flat_tariff, progressive_tariff, tou_tariff
from tests.meters.factories import MeterFactory

Q = timedelta(minutes=15)
DAY = datetime(2026, 11, 1, 21, tzinfo=UTC)  # Kuwait midnight, 2 November local


@pytest.fixture
def meter(db):
    return MeterFactory()


def ingest(meter, start, values, quality="actual"):
    readings = [
        ({"index": i}, meter.serial, (start + i * Q).isoformat(), wh, quality)
        for i, wh in enumerate(values)
    ]
    result = meter_services.readings_ingest(utility=meter.utility, readings=readings, source="test")
    assert result.rejected == 0


def balance(account):
    return Balance.objects.get(account=account).amount


def close_days():
    """Post every held energy day (billing.energy_days), as the hourly close does once it ends."""
    energy_days_close(now=datetime(2027, 1, 1, tzinfo=UTC))


def test_each_interval_is_charged_once(meter):
    flat_tariff(meter.utility, rate="0.005")  # 5 fils a kWh
    ingest(meter, DAY, [1000] * 8)  # 8 kWh

    first = charging.charges_run()
    again = charging.charges_run()

    assert first[0] >= 1 and again == (0, set())
    assert balance(meter.account) == Decimal("-0.040")
    close_days()
    entry = LedgerEntry.objects.get(kind="energy_charge")
    assert (entry.kwh, entry.rate) == (Decimal("8.000"), Decimal("0.005000"))
    assert "8 kWh" in entry.description


def test_late_readings_are_charged_and_a_correction_is_an_adjustment(meter):
    flat_tariff(meter.utility, rate="0.005")
    ingest(meter, DAY, [1000] * 4)
    charging.charges_run()
    ingest(meter, DAY + 4 * Q, [1000] * 4)  # late data
    ingest(meter, DAY, [3000])  # a correction of the first interval: +2 kWh
    charging.charges_run()

    # The late energy joins the day's held charge; the correction is posted at once, after the
    # day's energy so far (every entry is written with nothing held: billing.energy_days).
    kinds = list(LedgerEntry.objects.order_by("id").values_list("kind", "amount", "kwh"))
    assert kinds == [
        ("energy_charge", Decimal("-0.040"), Decimal("8.000")),
        ("energy_adjustment", Decimal("-0.010"), Decimal("2.000")),
    ]
    ingest(meter, DAY, [0])  # corrected down: a refund
    charging.charges_run()
    assert LedgerEntry.objects.order_by("-id").first().amount == Decimal("0.015")
    assert balance(meter.account) == Decimal("-0.035")  # 7 kWh at 5 fils
    assert ledger_check() == []


def test_rounding_never_drifts(meter):
    flat_tariff(meter.utility, rate="0.0123")
    for n in range(12):  # twelve separate passes of one interval of 333 Wh each
        ingest(meter, DAY + n * Q, [333])
        charging.charges_run()
    exact = Decimal(12 * 333) / 1000 * Decimal("0.0123")
    assert balance(meter.account) == -exact.quantize(Decimal("0.001"))


def test_time_of_use_prices_each_interval_by_its_local_time(meter):
    tou_tariff(meter.utility, base="0.004", peak="0.010")  # peak 12:00-17:00 local
    noon_local = DAY + timedelta(hours=12)
    ingest(meter, noon_local - 4 * Q, [1000] * 8)  # 11:00-13:00 local: 4 kWh off-peak, 4 at peak
    charging.charges_run()
    assert balance(meter.account) == -(4 * Decimal("0.004") + 4 * Decimal("0.010"))


def test_progressive_slabs_price_the_months_running_total(meter):
    progressive_tariff(meter.utility, slabs=((0, "0.010"), (10, "0.020")), mode="prepaid")
    ingest(meter, DAY, [1000] * 8)  # 8 kWh at the first slab
    charging.charges_run()
    ingest(meter, DAY + 8 * Q, [1000] * 4)  # 2 more at 0.010, then 2 at 0.020
    charging.charges_run()
    assert balance(meter.account) == -(10 * Decimal("0.010") + 2 * Decimal("0.020"))


def test_the_fixed_daily_charge_is_posted_once_per_local_day(meter):
    flat_tariff(meter.utility, rate="0.005", fixed="0.100")
    ingest(meter, DAY, [100] * 4)
    charging.charges_run()
    ingest(meter, DAY + 4 * Q, [100] * 4)
    charging.charges_run()
    fixed = LedgerEntry.objects.filter(kind="fixed_charge")
    assert fixed.count() == 1 and fixed.get().amount == Decimal("-0.100")


def test_postpaid_meters_are_not_charged_by_reading(meter):
    meter.payment_mode = "postpaid"
    meter.save()
    flat_tariff(meter.utility, rate="0.005")
    ingest(meter, DAY, [1000] * 4)
    charging.charges_run()
    assert not LedgerEntry.objects.exists()


def test_without_a_tariff_readings_wait_uncharged(meter):
    ingest(meter, DAY, [1000] * 4)
    assert charging.charges_run()[1] == set()
    assert not LedgerEntry.objects.exists()
    charging.charges_run()  # set aside: not tried again and again
    flat_tariff(meter.utility, rate="0.005")
    charging.charges_rewind()  # what saving a tariff in the admin does
    charging.charges_run()
    assert balance(meter.account) == Decimal("-0.020")


def test_consumption_shows_cost_per_bucket(make_api, meter):
    flat_tariff(meter.utility, rate="0.005")
    ingest(meter, DAY, [1000] * 8)
    api = make_api(AccountLinkFactory(account=meter.account).user)
    body = api.get(
        f"/api/v1/meters/{meter.pk}/consumption/",
        {"period_from": "2026-11-02", "period_to": "2026-11-03", "group_by": "hour"},
    ).json()
    assert body["currency"] == "KWD"
    assert [b["cost"] for b in body["buckets"][:3]] == ["0.020", "0.020", None]


def test_the_ledger_is_append_only_on_postgresql(meter):
    from django.db import connection, transaction
    from django.db.utils import DatabaseError

    if connection.vendor != "postgresql":
        pytest.skip("the append-only trigger is PostgreSQL's; SQLite relies on the code alone")
    posting = ledger_post(
        account=meter.account, kind="adjustment", amount=Decimal("1.000"), key="t", description="t"
    )
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=posting.entry.pk).update(amount=Decimal("5.000"))
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=posting.entry.pk).delete()


def test_days_without_a_tariff_do_not_hold_up_the_others(db):
    from billing.models import ChargeCursor

    no_tariff = MeterFactory()
    other_utility_meter = MeterFactory(
        utility=__import__("tests.meters.factories", fromlist=["egypt"]).egypt()
    )
    flat_tariff(other_utility_meter.utility, rate="0.010")
    for meter in (no_tariff, other_utility_meter):
        ingest(meter, DAY, [1000] * 4)

    charging.charges_run(limit=1)  # a full pass: only the first (tariff-less) day, which fails
    charging.charges_run(limit=1)
    charging.charges_run(limit=1)

    assert balance(other_utility_meter.account) == Decimal("-0.04")
    assert ChargeCursor.objects.exists()
    flat_tariff(no_tariff.utility, rate="0.005")
    charging.charges_rewind()
    charging.charges_run()
    assert balance(no_tariff.account) == Decimal("-0.020")


def test_a_charge_that_crosses_the_low_balance_level_alerts_the_consumer_once(
    meter, django_capture_on_commit_callbacks
):
    """Charged by the Celery task (eager here), then the balance check alerts every linked user."""
    from billing.tasks import charge_shard
    from notifications.models import Notification

    link = AccountLinkFactory(account=meter.account)
    flat_tariff(meter.utility, rate="0.100")
    ledger_post(
        account=meter.account, kind="topup", amount=Decimal("2.500"), key="t", description="top-up"
    )
    ingest(
        meter, DAY, [1000] * 8
    )  # 0.800 KWD: the balance drops to 1.700, under the 2.000 default level

    with django_capture_on_commit_callbacks(execute=True):
        charge_shard(0, 1)
        charge_shard(0, 1)  # a second pass charges nothing and alerts nothing more

    alerts = Notification.objects.filter(user=link.user, category="low_balance")
    assert alerts.count() == 1
    assert "1.700" in alerts.get().body


def test_interval_costs_follow_time_of_use(make_api, meter):
    tou_tariff(meter.utility, base="0.004", peak="0.010")  # peak 12:00-17:00 local
    ingest(meter, DAY + timedelta(hours=12) - 2 * Q, [500] * 4)  # 11:30 to 12:30 local
    api = make_api(AccountLinkFactory(account=meter.account).user)
    body = api.get(
        f"/api/v1/meters/{meter.pk}/consumption/",
        {
            "period_from": "2026-11-02T11:30:00+03:00",
            "period_to": "2026-11-02T12:30:00+03:00",
            "group_by": "interval",
        },
    ).json()
    assert [b["cost"] for b in body["buckets"]] == ["0.002", "0.002", "0.005", "0.005"]


def test_progressive_slabs_are_priced_on_the_months_running_total_within_one_batch(db):
    """Two meters of one account charged in the same pass: 60 + 60 kWh cross the 100 kWh slab."""
    account_meter = MeterFactory()
    second = MeterFactory(utility=account_meter.utility, account=account_meter.account)
    progressive_tariff(account_meter.utility, slabs=((0, "0.010"), (100, "0.020")), mode="prepaid")
    for m in (account_meter, second):
        ingest(m, DAY, [2500] * 24)  # 60 kWh each

    charging.charges_run()
    close_days()

    # 100 kWh at 10 fils and 20 kWh at 20 fils, whatever the order within the batch.
    assert balance(account_meter.account) == Decimal("-1.400")
    charged = LedgerEntry.objects.filter(kind="energy_charge")
    assert sum(e.kwh for e in charged) == Decimal("120.000")
    assert ledger_check() == []


def test_a_dst_day_is_priced_by_each_intervals_local_time(db):
    """Cairo leaves summer time at midnight ending 29 October 2026 (the hour 23:00-24:00 runs
    twice): that local day has 100 quarter-hours, each priced at its own wall-clock time."""
    from tests.meters.factories import egypt

    meter = MeterFactory(utility=egypt())
    tou_tariff(meter.utility, base="0.50", peak="1.00", start=time(23), end=time(0))
    zone = meter.utility.zone
    local_start = datetime(2026, 10, 29, tzinfo=zone)
    first = local_start.astimezone(UTC)
    count = int((datetime(2026, 10, 30, tzinfo=zone).astimezone(UTC) - first) / Q)
    assert count == 100
    ingest(meter, first, [1000] * count)

    charging.charges_run()
    close_days()

    peak = sum(1 for i in range(count) if (first + i * Q).astimezone(zone).hour == 23)
    assert peak == 8
    expected = Decimal(peak) * Decimal("1.00") + Decimal(count - peak) * Decimal("0.50")
    assert balance(meter.account) == -expected
    assert sum(e.kwh for e in LedgerEntry.objects.filter(kind="energy_charge")) == 100
    assert ledger_check() == []


def test_energy_charges_are_local_days_in_the_statement(make_api, meter):
    """A UTC day of readings is 03:00 to 03:00 in Kuwait: it is charged as the two local days it
    touches, each entry's period that local day, shown with the utility's offset."""
    flat_tariff(meter.utility, rate="0.005")
    ingest(meter, datetime(2026, 11, 2, tzinfo=UTC), [1000] * 96)
    charging.charges_run()
    close_days()  # 3 November's energy is held until that day is over
    api = make_api(AccountLinkFactory(account=meter.account).user)

    body = api.get(
        f"/api/v1/accounts/{meter.account.pk}/statement/", {"kind": "energy_charge"}
    ).json()

    lines = sorted(
        (e["period_start"], e["period_end"], e["kwh"], e["amount"]) for e in body["results"]
    )
    assert lines == [
        ("2026-11-02T00:00:00+03:00", "2026-11-03T00:00:00+03:00", "84.000", "-0.420"),
        ("2026-11-03T00:00:00+03:00", "2026-11-04T00:00:00+03:00", "12.000", "-0.060"),
    ]
    assert {e["description"].split(",")[0] for e in body["results"]} == {
        "Energy on 02 Nov 2026",
        "Energy on 03 Nov 2026",
    }
