"""Pricing energy with a tariff. All arithmetic in Decimal; kWh = Wh / 1000 exactly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time
from decimal import Decimal

from django.db.models import Q

from accounts.models import Utility
from billing.models import Tariff
from core.errors import DomainError

WH_PER_KWH = Decimal(1000)


@dataclass(frozen=True)
class Pricing:
    """A tariff loaded once for a run of charges: slabs and periods in memory."""

    tariff: Tariff
    slabs: tuple[tuple[Decimal, Decimal], ...]  # (from_kwh, rate), ascending
    periods: tuple[tuple[time, time, Decimal], ...]

    def rate_at(self, local: time) -> Decimal:
        """The per-kWh rate of a flat or time-of-use tariff at a local wall-clock time."""
        for start, end, rate in self.periods:
            inside = start <= local < end if start < end else (local >= start or local < end)
            if inside:
                return rate
        return self.tariff.flat_rate or Decimal(0)

    def month_cost(self, kwh: Decimal) -> Decimal:
        """The cost of a month's total under progressive slabs: each kWh at its slab's rate."""
        cost = Decimal(0)
        for index, (start, rate) in enumerate(self.slabs):
            end = self.slabs[index + 1][0] if index + 1 < len(self.slabs) else None
            if kwh <= start:
                break
            cost += ((kwh if end is None else min(kwh, end)) - start) * rate
        return cost


def tariff_for(*, utility: Utility, payment_mode: str, on: date) -> Pricing:
    tariff = (
        Tariff.objects.filter(utility=utility, payment_mode=payment_mode, valid_from__lte=on)
        .filter(Q(valid_to__isnull=True) | Q(valid_to__gte=on))
        .order_by("-valid_from")
        .first()
    )
    if tariff is None:
        raise DomainError(f"{utility} has no {payment_mode} tariff for {on}.", code="no_tariff")
    slabs = tuple((Decimal(s.from_kwh), s.rate) for s in tariff.slabs.all())
    periods = tuple((p.start, p.end, p.rate) for p in tariff.periods.all())
    return Pricing(tariff=tariff, slabs=slabs, periods=periods)


_CACHE: dict[tuple[int, str], tuple[float, list[Pricing]]] = {}
CACHE_SECONDS = 60


def tariffs_cached(*, utility_id: int, payment_mode: str) -> list[Pricing]:
    """All of a utility's tariffs for one payment mode, loaded once a minute per process: the
    consumption screens price every request and tariffs change a few times a year."""
    import time as _time

    key = (utility_id, payment_mode)
    hit = _CACHE.get(key)
    if hit and _time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    pricings = [
        Pricing(
            tariff=t,
            slabs=tuple((Decimal(s.from_kwh), s.rate) for s in t.slabs.all()),
            periods=tuple((p.start, p.end, p.rate) for p in t.periods.all()),
        )
        for t in Tariff.objects.filter(utility_id=utility_id, payment_mode=payment_mode)
        .prefetch_related("slabs", "periods")
        .order_by("-valid_from")
    ]
    _CACHE[key] = (_time.monotonic(), pricings)
    return pricings


def pricing_on(pricings: list[Pricing], on: date) -> Pricing | None:
    for pricing in pricings:  # newest first
        t = pricing.tariff
        if t.valid_from <= on and (t.valid_to is None or t.valid_to >= on):
            return pricing
    return None
