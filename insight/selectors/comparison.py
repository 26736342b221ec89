"""Why a bill differs from another: days, usage by part of the day, tariff, fixed charges
and fines, adding up exactly to the difference (docs/insight.md)."""

from __future__ import annotations

from datetime import date, time, timedelta
from decimal import Decimal

from accounts.models import ConsumerAccount
from billing.models import Bill, Tariff
from billing.selectors import bills_for_account
from billing.tariffs import Pricing
from core.errors import Conflict, NotFound
from core.money import money_digits, money_quantize
from insight.selectors.common import (
    KWH,
    POSTPAID,
    _account_head,
    _account_meters,
    _kwh,
    _local_clock,
    _month_span,
    _pricing,
    _series,
)
from insight.selectors.split import (
    _day_parts_split,
    _is_tou,
    _tou_split,
    _wh_by_part,
    _windows_body,
)
from meters.storage import PRESENT, Series

# --- 2. Why this bill differs from another -------------------------------------------------------


def _month_days(month: date) -> int:
    following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return (following - month).days


def _weighted_rate(pricing: Pricing, series_list: list[Series], zone, start) -> Decimal | None:
    """The average rate per kWh of a month's readings under a flat or time-of-use tariff: each
    quarter-hour read at its local rate. None when nothing was read (or all read zero)."""
    if not series_list:
        return None
    clock = _local_clock(start, len(series_list[0]), zone)
    rates: dict[time, Decimal] = {}
    wh, priced = 0, Decimal(0)
    for series in series_list:
        for i, (value, quality) in enumerate(zip(series.values, series.quality, strict=True)):
            if quality in PRESENT and value:
                rate = rates.get(clock[i])
                if rate is None:
                    rate = rates[clock[i]] = pricing.rate_at(clock[i])
                wh += value
                priced += value * rate
    return priced / wh if wh else None


def _energy_at(pricing: Pricing, kwh: Decimal, average_rate: Decimal | None) -> Decimal:
    """What `kwh` in a month cost under `pricing`: the slabs on the month's total, else the kWh
    at the rate of the household's own time-of-day mix (the tariff's flat rate without one)."""
    if pricing.tariff.kind == Tariff.Kind.PROGRESSIVE:
        return pricing.month_cost(kwh)
    rate = average_rate if average_rate is not None else (pricing.tariff.flat_rate or Decimal(0))
    return kwh * rate


def bill_comparison(*, account: ConsumerAccount, month: date, base_month: date | None) -> dict:
    """The difference between a bill's total (amount + fine) and another's (the previous bill,
    or `base_month`'s), split into parts that add up to it exactly.

    With the base bill's energy E0 and the bill's E1 as billed, three intermediate energies each
    rounded to the minor unit telescope from one to the other, so no residue is left:
    1. Xd: the base month's daily use over the bill month's days, at the base month's tariff;
    2. Xu: the bill month's kWh at the base month's tariff (a time-of-use tariff priced at the
       household's own time-of-day mix of each month, read from its readings).
    days = Xd − E0, usage = Xu − Xd, tariff = E1 − Xu (slab and rate changes); then
    fixed_charges and fines are the differences of the bills' own figures.
    """
    utility = account.utility
    zone, minor = utility.zone, utility.currency_minor_unit
    bills = bills_for_account(account=account)
    bill = bills.filter(month=month).first()
    if bill is None:
        raise NotFound(f"You have no bill for {month:%Y-%m}.", code="bill_not_found")
    if base_month is not None:
        if base_month == month:  # a well-formed month: refused by what it names, not its form
            raise Conflict("Compare with another month's bill.", code="same_month")
        base = bills.filter(month=base_month).first()
        if base is None:
            raise NotFound(f"You have no bill for {base_month:%Y-%m}.", code="bill_not_found")
    else:
        base = bills.filter(month__lt=month).order_by("-month").first()
        if base is None:
            raise Conflict(
                "There is no earlier bill to compare this one with.", code="no_previous_bill"
            )

    pricing0 = _pricing(utility, POSTPAID, base.month)
    pricing1 = _pricing(utility, POSTPAID, bill.month)
    split_pricing = pricing1 if _is_tou(pricing1) else pricing0 if _is_tou(pricing0) else None
    split = _tou_split(split_pricing) if split_pricing else _day_parts_split()
    # Each month's readings of the account's postpaid meters, as the reader sees them.
    start0, end0 = _month_span(base.month, zone)
    start1, end1 = _month_span(bill.month, zone)
    month0 = _series(_account_meters(account, start0, end0, payment_mode=POSTPAID), start0, end0)
    month1 = _series(_account_meters(account, start1, end1, payment_mode=POSTPAID), start1, end1)
    wh0, _ = _wh_by_part(month0, split, zone, start0)
    wh1, _ = _wh_by_part(month1, split, zone, start1)

    days0, days1 = _month_days(base.month), _month_days(bill.month)
    rate0_mix0 = _weighted_rate(pricing0, month0, zone, start0)
    rate0_mix1 = _weighted_rate(pricing0, month1, zone, start1)

    def rounded(value: Decimal) -> Decimal:
        return money_quantize(value, minor_unit=minor)

    e0, e1 = base.energy_amount, bill.energy_amount
    x_days = rounded(_energy_at(pricing0, base.kwh * days1 / days0, rate0_mix0))
    x_usage = rounded(_energy_at(pricing0, bill.kwh, rate0_mix1))
    parts = {
        "days": x_days - e0,
        "usage": x_usage - x_days,
        "tariff": e1 - x_usage,
        "fixed_charges": bill.fixed_amount - base.fixed_amount,
        "fines": bill.fine_amount - base.fine_amount,
    }
    total0 = base.amount + base.fine_amount
    total1 = bill.amount + bill.fine_amount

    def money(value: Decimal) -> str:
        return money_digits(value, minor_unit=minor)

    def bill_body(row: Bill, days: int, pricing: Pricing) -> dict:
        return {
            "month": f"{row.month:%Y-%m}",
            "days": days,
            "kwh": f"{row.kwh.quantize(KWH):f}",
            "energy": money(row.energy_amount),
            "fixed_charges": money(row.fixed_amount),
            "fine": money(row.fine_amount),
            "total": money(row.amount + row.fine_amount),
            "tariff": {"name": pricing.tariff.name, "kind": pricing.tariff.kind},
        }

    return {
        **_account_head(account),
        "bill": bill_body(bill, days1, pricing1),
        "base": bill_body(base, days0, pricing0),
        "difference": money(total1 - total0),
        "parts": {name: money(value) for name, value in parts.items()},
        "kwh_change": f"{(bill.kwh - base.kwh).quantize(KWH):f}",
        "usage_by_time_of_day": [
            {
                "name": name,
                "windows": _windows_body(windows),
                "base_kwh": _kwh(wh0[index]),
                "bill_kwh": _kwh(wh1[index]),
                "change_kwh": _kwh(wh1[index] - wh0[index]),
            }
            for index, (name, windows) in enumerate(zip(split.names, split.windows, strict=True))
        ],
    }
