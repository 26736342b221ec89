"""The postpaid bill forecast: this local month so far and projected to its end, only on
enough readings (docs/insight.md)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal

from django.utils import timezone

from accounts.models import ConsumerAccount
from billing.models import Tariff
from billing.tariffs import WH_PER_KWH
from core.errors import Conflict
from core.money import money_digits, money_quantize
from insight.selectors.common import (
    POSTPAID,
    _account_head,
    _account_meters,
    _held_days,
    _kwh,
    _local_clock,
    _month_span,
    _percent,
    _pricing,
    _series,
    insight_policy_for,
)
from meters.storage import PRESENT, Quality, floor_to_interval

# --- 1. The postpaid bill forecast ---------------------------------------------------------------


def bill_forecast(*, account: ConsumerAccount, now: datetime | None = None) -> dict:
    """The current local month's bill so far and projected to the month's end.

    1. The reader's windows of the account's postpaid meters over the month and the policy's
       coverage days before now; a prepaid account is refused (its balance forecast projects it).
    2. Coverage: of the last `bill_forecast_coverage_days` × 96 quarter-hours inside the reader's
       windows, the share read (actual or estimated). Below the policy's threshold: no forecast.
    3. So far: the month's readings priced as bill_issue prices them (slabs on the month's kWh,
       else each quarter-hour at its local rate), plus the fixed charge of each local day held.
    4. Projected: every quarter-hour of the month not read, and every one still to come, at the
       average of the quarter-hours read in the span read, priced at the same average rate.
    """
    now = floor_to_interval(now or timezone.now())
    utility = account.utility
    zone, minor = utility.zone, utility.currency_minor_unit
    policy = insight_policy_for(utility)
    today = now.astimezone(zone).date()
    month = today.replace(day=1)
    month_start, month_end = _month_span(month, zone)
    coverage_start = now - timedelta(days=policy.bill_forecast_coverage_days)
    read_start = min(month_start, coverage_start)
    meters = _account_meters(account, read_start, month_end)
    if meters and not any(m.payment_mode == POSTPAID for m in meters):
        raise Conflict(
            "This account is prepaid: the balance forecast projects its month.",
            code="not_postpaid",
        )
    meters = [m for m in meters if m.payment_mode == POSTPAID]
    pricing = _pricing(utility, POSTPAID, month) if meters else None
    series_list = _series(meters, read_start, now) if now > read_start else []

    expected = read = 0  # coverage window
    wh_all = n_all = 0  # everything read: the pace
    priced_all = Decimal(0)  # Σ Wh × rate over everything read (not under slabs)
    wh_month = unread_month = 0
    priced_month = Decimal(0)
    progressive = pricing is not None and pricing.tariff.kind == Tariff.Kind.PROGRESSIVE
    rates: dict[time, Decimal] = {}
    clock = _local_clock(read_start, len(series_list[0]), zone) if series_list else []
    for series in series_list:
        i_cover, i_month = series.index_of(coverage_start), series.index_of(month_start)
        for i, (wh, quality) in enumerate(zip(series.values, series.quality, strict=True)):
            if quality == Quality.OUTSIDE:
                continue
            present = quality in PRESENT
            if i >= i_cover:
                expected += 1
                read += present
            if not present:
                if i >= i_month:
                    unread_month += 1
                continue
            wh_all += wh
            n_all += 1
            if not progressive:
                local = clock[i]
                rate = rates.get(local)
                if rate is None:
                    rate = rates[local] = pricing.rate_at(local)
                priced_all += wh * rate
                if i >= i_month:
                    priced_month += wh * rate
            if i >= i_month:
                wh_month += wh
    if not n_all:
        raise Conflict("There are no readings to forecast from.", code="no_readings")
    coverage = _percent(read, expected)
    needed = policy.bill_forecast_min_coverage_percent
    if read * 100 < needed * expected:  # compared in integers: exactly 75 % is enough
        raise Conflict(
            f"Only {coverage} % of the last {policy.bill_forecast_coverage_days} days were "
            f"read; a forecast needs {needed} %.",
            code="insufficient_readings",
            extra={"coverage_percent": coverage, "min_coverage_percent": needed},
        )

    windows = [w for m in meters for w in m.windows]
    to_come = 0
    for m in meters:
        for begin, finish in m.windows:
            lo, hi = max(begin, now), min(finish or month_end, month_end)
            if hi > lo:
                to_come += -(-int((hi - lo).total_seconds()) // 900)
    pace = Decimal(wh_all) / n_all
    wh_projected = wh_month + pace * (unread_month + to_come)
    if progressive:
        energy_so_far = pricing.month_cost(Decimal(wh_month) / WH_PER_KWH)
        energy_projected = pricing.month_cost(wh_projected / WH_PER_KWH)
    else:
        average_rate = priced_all / wh_all if wh_all else (pricing.tariff.flat_rate or Decimal(0))
        energy_so_far = priced_month / WH_PER_KWH
        energy_projected = energy_so_far + (wh_projected - wh_month) * average_rate / WH_PER_KWH
    last_day = (month_end - timedelta(microseconds=1)).astimezone(zone).date()
    daily = pricing.tariff.fixed_daily_charge

    def part(wh, energy, days: int, until: datetime) -> dict:
        energy = money_quantize(energy, minor_unit=minor)
        fixed = money_quantize(daily * days, minor_unit=minor)
        return {
            "period_to": until.astimezone(zone).isoformat(),
            "days": days,
            "kwh": _kwh(wh),
            "energy": money_digits(energy, minor_unit=minor),
            "fixed_charges": money_digits(fixed, minor_unit=minor),
            "total": money_digits(energy + fixed, minor_unit=minor),
        }

    return {
        **_account_head(account),
        "month": f"{month:%Y-%m}",
        "period_from": month_start.astimezone(zone).isoformat(),
        "as_of": now.astimezone(zone).isoformat(),
        "tariff": {"name": pricing.tariff.name, "kind": pricing.tariff.kind},
        "coverage_percent": coverage,
        "coverage_days": policy.bill_forecast_coverage_days,
        "min_coverage_percent": needed,
        "so_far": part(wh_month, energy_so_far, _held_days(windows, month, today, zone), now),
        "projected": part(
            wh_projected,
            energy_projected,
            _held_days(windows, month, last_day, zone),
            month_end,
        ),
    }
