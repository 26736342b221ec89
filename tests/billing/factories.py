from __future__ import annotations

import datetime as dt
from decimal import Decimal

from billing.models import BillingPolicy, Tariff, TariffPeriod, TariffSlab


def flat_tariff(
    utility, *, rate="0.005", fixed="0", mode="prepaid", valid_from=dt.date(2025, 1, 1)
):
    return Tariff.objects.create(
        utility=utility,
        name=f"{mode} flat",
        kind=Tariff.Kind.FLAT,
        payment_mode=mode,
        valid_from=valid_from,
        flat_rate=Decimal(rate),
        fixed_daily_charge=Decimal(fixed),
    )


def progressive_tariff(
    utility, *, slabs=((0, "0.30"), (100, "0.60"), (200, "1.00")), fixed="0", mode="postpaid"
):
    tariff = Tariff.objects.create(
        utility=utility,
        name=f"{mode} slabs",
        kind=Tariff.Kind.PROGRESSIVE,
        payment_mode=mode,
        valid_from=dt.date(2025, 1, 1),
        fixed_daily_charge=Decimal(fixed),
    )
    for start, rate in slabs:
        TariffSlab.objects.create(tariff=tariff, from_kwh=start, rate=Decimal(rate))
    return tariff


def tou_tariff(utility, *, base="0.004", peak="0.010", start=dt.time(12), end=dt.time(17)):
    tariff = Tariff.objects.create(
        utility=utility,
        name="time of use",
        kind=Tariff.Kind.TIME_OF_USE,
        payment_mode="prepaid",
        valid_from=dt.date(2025, 1, 1),
        flat_rate=Decimal(base),
    )
    TariffPeriod.objects.create(
        tariff=tariff, name="peak", start=start, end=end, rate=Decimal(peak)
    )
    return tariff


def policy(utility, **values):
    row, _ = BillingPolicy.objects.update_or_create(utility=utility, defaults=values)
    return row
