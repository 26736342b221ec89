"""Time of day: each tariff period's share of use and cost, and the saving from shifting
use to the cheapest hours (docs/insight.md)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from accounts.models import ConsumerAccount
from billing.tariffs import WH_PER_KWH, tariff_for
from core.errors import Conflict, DomainError
from core.money import money_digits, money_quantize
from core.timebuckets import local_midnight
from insight.selectors.common import (
    POSTPAID,
    _account_head,
    _account_meters,
    _kwh,
    _percent,
    _series,
    insight_policy_for,
)
from insight.selectors.split import _is_tou, _tou_split, _wh_by_part, _windows_body
from meters.models import Meter

# --- 3. Time of day: each period's share, and the saving from shifting use -----------------------


def time_of_day(*, account: ConsumerAccount, days: int, now: datetime | None = None) -> dict:
    """The last `days` complete local days of the account's use split by the periods of its
    time-of-use tariff (in force today), each period's kWh, cost and share; and the saving if
    `tod_shift_percent` of the highest-rate period's kWh moved to the cheapest period.

    Each period's cost is its kWh at its rate rounded to the minor unit; the total is their sum,
    so the figures shown add up."""
    now = now or timezone.now()
    utility = account.utility
    zone, minor = utility.zone, utility.currency_minor_unit
    today = now.astimezone(zone).date()
    start, end = local_midnight(today - timedelta(days=days), zone), local_midnight(today, zone)
    meters = _account_meters(account, start, end)
    # The meters of the mode the account is on now (its newest tenancy's meter).
    mode = (
        max(meters, key=lambda m: m.windows[-1][0]).payment_mode
        if meters
        else (
            Meter.objects.filter(account=account).values_list("payment_mode", flat=True).first()
            or POSTPAID
        )
    )
    try:
        pricing = tariff_for(utility=utility, payment_mode=mode, on=today)
    except DomainError:
        pricing = None
    if pricing is None or not _is_tou(pricing):
        raise Conflict(
            "This account's tariff has no time-of-day periods.", code="no_time_of_day_tariff"
        )
    split = _tou_split(pricing)
    series_list = _series([m for m in meters if m.payment_mode == mode], start, end)
    wh, read = _wh_by_part(series_list, split, zone, start)
    if not read:
        raise Conflict("There are no readings in these days.", code="no_readings")
    costs = [
        money_quantize(Decimal(w) / WH_PER_KWH * rate, minor_unit=minor)
        for w, rate in zip(wh, split.rates, strict=True)
    ]
    total_wh, total_cost = sum(wh), sum(costs, Decimal(0))

    policy = insight_policy_for(utility)
    used = [i for i, w in enumerate(wh) if w > 0] or list(range(len(wh)))
    dearest = max(used, key=lambda i: (split.rates[i], -i))
    cheapest = min(range(len(split.names)), key=lambda i: (split.rates[i], i))
    moved_wh = Decimal(wh[dearest]) * policy.tod_shift_percent / 100
    saving = money_quantize(
        moved_wh / WH_PER_KWH * (split.rates[dearest] - split.rates[cheapest]), minor_unit=minor
    )

    def money(value: Decimal) -> str:
        return money_digits(value, minor_unit=minor)

    return {
        **_account_head(account),
        "period_from": start.astimezone(zone).isoformat(),
        "period_to": end.astimezone(zone).isoformat(),
        "days": days,
        "tariff": {"name": pricing.tariff.name, "kind": pricing.tariff.kind},
        "total_kwh": _kwh(total_wh),
        "total_cost": money(total_cost),
        "periods": [
            {
                "name": name,
                "windows": _windows_body(windows),
                "rate": f"{rate:f}",
                "kwh": _kwh(wh[index]),
                "cost": money(costs[index]),
                "kwh_share_percent": _percent(wh[index], total_wh),
                "cost_share_percent": _percent(costs[index], total_cost),
            }
            for index, (name, windows, rate) in enumerate(
                zip(split.names, split.windows, split.rates, strict=True)
            )
        ],
        "saving": {
            "shift_percent": policy.tod_shift_percent,
            "from_period": split.names[dearest],
            "to_period": split.names[cheapest],
            "kwh": _kwh(moved_wh),
            "amount": money(saving),
        },
    }
