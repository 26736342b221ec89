"""Realistic household load for demos and benchmarks.

A day has a base load (fridge, standby), a morning and an evening peak, and, in the Gulf, an
air-conditioning load that follows the season and the afternoon heat. Every meter gets its own
household size and habits from a seed, so no two meters look alike, and the same seed gives the
same data.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from accounts.models import ConsumerAccount, Utility
from meters.models import Feeder, GridArea, Meter, MeterAssignment, Transformer
from meters.storage import INTERVAL

GULF = {"KW", "SA", "AE", "QA", "BH", "OM"}


def _season(country: str, day: date) -> float:
    """0 in the coolest week of the year, 1 in the hottest."""
    peak_day = 200 if country in GULF else 140  # mid-July in the Gulf, May in central India
    return 0.5 + 0.5 * math.cos(2 * math.pi * (day.timetuple().tm_yday - peak_day) / 365)


def household_kw(
    rng: random.Random, profile: dict, country: str, local: datetime, weekend: bool
) -> float:
    hour = local.hour + local.minute / 60
    season = _season(country, local.date())
    kw = profile["base"]
    kw += profile["morning"] * math.exp(-((hour - (7.5 if not weekend else 9.5)) ** 2) / 1.5)
    kw += profile["evening"] * math.exp(-((hour - 20.5) ** 2) / 4.0)
    if weekend:
        kw += 0.3 * profile["evening"] * math.exp(-((hour - 14) ** 2) / 8.0)
    if country in GULF:
        heat = math.exp(-((hour - 15.5) ** 2) / 18.0) * 0.7 + 0.3  # AC never stops in a Gulf summer
        kw += profile["ac"] * season**1.5 * heat
    else:
        kw += profile["ac"] * 0.35 * season * math.exp(-((hour - 14.5) ** 2) / 20.0)
    return max(0.05, kw * rng.uniform(0.85, 1.15))


def household_profile(seed: str, country: str) -> dict:
    rng = random.Random(seed)  # noqa: S311 - demo data wants repeatable, not secret, numbers
    size = rng.choice([0.6, 0.8, 1.0, 1.0, 1.3, 1.7])
    return {
        "base": 0.25 * size + rng.uniform(0, 0.2),
        "morning": 0.8 * size * rng.uniform(0.5, 1.5),
        "evening": 1.6 * size * rng.uniform(0.6, 1.4),
        "ac": (5.5 if country in GULF else 1.2) * size * rng.uniform(0.6, 1.3),
    }


def demo_day_values(*, serial: str, utility: Utility, day: date) -> list[int]:
    """96 Wh values for the UTC day `day` of the meter `serial`."""
    profile = household_profile(serial, utility.country)
    rng = random.Random(f"{serial}/{day.isoformat()}")  # noqa: S311 - as above
    zone = utility.zone
    weekend_days = set(utility.weekend_days)
    start = datetime.combine(day, time(0), UTC)
    offset = zone.utcoffset(start.replace(tzinfo=None) + timedelta(hours=12))
    values = []
    for slot in range(96):
        local = (start + slot * INTERVAL + offset).replace(tzinfo=None)
        kw = household_kw(rng, profile, utility.country, local, local.weekday() in weekend_days)
        values.append(round(kw * 250))
    return values


def demo_grid(*, utility: Utility, transformers: int) -> list[Transformer]:
    area, _ = GridArea.objects.get_or_create(
        utility=utility, code="A1", defaults={"name": "Central district"}
    )
    result = []
    for n in range(transformers):
        feeder, _ = Feeder.objects.get_or_create(
            area=area, code=f"F{n // 10 + 1:02d}", defaults={"name": f"Feeder {n // 10 + 1}"}
        )
        transformer, _ = Transformer.objects.get_or_create(
            feeder=feeder, code=f"T{n + 1:04d}", defaults={"name": f"Transformer {n + 1}"}
        )
        result.append(transformer)
    return result


DEMO_INSTALLED_AT = datetime(2020, 1, 1, tzinfo=UTC)


def demo_meters(*, utility: Utility, count: int, prefix: str = "SM") -> list[Meter]:
    """`count` consumer accounts with one prepaid meter each, spread over transformers of 50."""
    transformers = demo_grid(utility=utility, transformers=max(1, count // 50))
    existing = set(
        Meter.objects.filter(utility=utility, serial__startswith=prefix).values_list(
            "serial", flat=True
        )
    )
    accounts, meters = [], []
    for n in range(count):
        serial = f"{prefix}{n:08d}"
        if serial in existing:
            continue
        accounts.append(
            ConsumerAccount(
                utility=utility,
                consumer_id=f"{prefix}-{n:08d}",
                registered_mobile="+96550000000",
                name=f"Demo household {n}",
                premises_address="",
            )
        )
        meters.append(
            Meter(
                utility=utility,
                serial=serial,
                rated_capacity_kw=Decimal("15.00"),
                transformer=transformers[n % len(transformers)],
                # Installed (and its account's tenancy begun) before any day a benchmark loads.
                installed_at=DEMO_INSTALLED_AT,
            )
        )
    ConsumerAccount.objects.bulk_create(accounts, batch_size=2000, ignore_conflicts=True)
    ids = dict(
        ConsumerAccount.objects.filter(
            utility=utility, consumer_id__startswith=f"{prefix}-"
        ).values_list("consumer_id", "id")
    )
    for meter in meters:
        meter.account_id = ids[f"{prefix}-{meter.serial[len(prefix) :]}"]
    Meter.objects.bulk_create(meters, batch_size=2000)
    created = Meter.objects.filter(utility=utility, serial__in=[m.serial for m in meters])
    MeterAssignment.objects.bulk_create(
        [MeterAssignment(meter=m, account_id=m.account_id, start=m.installed_at) for m in created],
        batch_size=2000,
    )
    return list(Meter.objects.filter(utility=utility, serial__startswith=prefix).order_by("serial"))
