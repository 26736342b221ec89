"""50 top-ups and charges at once leave the exact balance."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from billing import charging
from billing.energy_days import energy_days_close
from billing.models import Balance, LedgerEntry, TopUp
from billing.payments import topup_confirm
from billing.selectors import ledger_check
from meters import services as meter_services
from tests.billing.factories import flat_tariff
from tests.meters.factories import MeterFactory

pytestmark = pytest.mark.django_db(transaction=True)


START = datetime(2026, 10, 1, tzinfo=UTC)


def _meter_with_days(days: int):
    """A prepaid meter at 5 fils a kWh with `days` whole days of 24 kWh from 1 October."""
    meter = MeterFactory()
    flat_tariff(meter.utility, rate="0.005")
    blocks = [
        {
            "meter": meter.serial,
            "start": (START + timedelta(days=d)).isoformat(),
            "values": [250] * 96,
        }
        for d in range(days)
    ]
    stored = meter_services.readings_ingest(utility=meter.utility, blocks=blocks, source="test")
    assert stored.stored == days * 96
    return meter


def test_concurrent_top_ups_and_charges_leave_the_exact_balance():
    meter = _meter_with_days(25)
    topups = [
        TopUp.objects.create(
            account=meter.account, amount=Decimal("1.111"), currency="KWD", channel="app"
        )
        for _ in range(25)
    ]
    days = [START.date() + timedelta(days=d) for d in range(25)]
    barrier = threading.Barrier(50)
    errors = []

    def run(work):
        try:
            barrier.wait()
            work()
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    jobs = [lambda t=t: topup_confirm(topup=t) for t in topups]
    jobs += [lambda d=d: charging.meter_day_charge(meter_id=meter.pk, day=d) for d in days]
    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    expected = 25 * Decimal("1.111") - 25 * 24 * Decimal("0.005")
    assert Balance.objects.get(account=meter.account).amount == expected
    assert ledger_check() == []
    energy_days_close(now=START + timedelta(days=30))
    # Each UTC day is two local days in Kuwait (03:00 to 03:00). A local day's energy is one
    # entry, or two when a top-up landed while it was held (posted before the top-up), or a day
    # charged after a later one (days raced here in any order) is an entry of its own.
    energy = LedgerEntry.objects.filter(kind="energy_charge")
    assert 26 <= energy.count() <= 2 * 25 + 25
    assert sum(e.amount for e in energy) == -25 * 24 * Decimal("0.005")
    assert LedgerEntry.objects.filter(kind="topup").count() == 25
    assert ledger_check() == []
    # The running balance of each entry follows from the one before.
    running = Decimal(0)
    for amount, after in LedgerEntry.objects.order_by("id").values_list("amount", "balance_after"):
        running += amount
        assert after == running


def _race(jobs) -> list[Exception]:
    barrier = threading.Barrier(len(jobs))
    errors: list[Exception] = []

    def run(work):
        try:
            barrier.wait()
            work()
        except Exception as exc:  # reported by the caller's assertion
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_a_top_up_racing_a_charging_batch_and_a_pass_run_twice_at_once_charge_exactly():
    """A batch of 20 meter-days of one account, the same pass started twice at once (a task
    delivered twice), and top-ups landing meanwhile: every interval once, the balance exact."""
    meter = _meter_with_days(20)
    topups = [
        TopUp.objects.create(
            account=meter.account, amount=Decimal("0.500"), currency="KWD", channel="app"
        )
        for _ in range(10)
    ]
    jobs = [lambda t=t: topup_confirm(topup=t) for t in topups]
    jobs += [charging.charges_run, charging.charges_run]

    assert _race(jobs) == []
    charging.charges_run()  # whatever a pass left behind (none should be)
    expected = 10 * Decimal("0.500") - 20 * 24 * Decimal("0.005")
    assert Balance.objects.get(account=meter.account).amount == expected
    assert ledger_check() == []
    energy_days_close(now=START + timedelta(days=30))
    # 21 local days, in order: one entry each, plus one for each top-up that found energy held.
    assert 21 <= LedgerEntry.objects.filter(kind="energy_charge").count() <= 21 + 10
    assert ledger_check() == []
    running = Decimal(0)
    for amount, after in LedgerEntry.objects.order_by("id").values_list("amount", "balance_after"):
        running += amount
        assert after == running
