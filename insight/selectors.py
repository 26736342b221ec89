"""What a household reads of its own bills and readings: the postpaid bill forecast, the comparison
of two bills, the time-of-day split with the saving from shifting use, and max demand against the
sanctioned load (docs/insight.md).

Every read is one account's meters over the period asked (a month is ~31 MeterDay rows a meter),
cut to the reader's own tenancies of the account from their link's `visible_from` on; never the
utility's rows. Energy is priced with billing's own tariffs (billing.tariffs: `tariff_for`,
`Pricing.rate_at`, `Pricing.month_cost`), as a bill prices it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from django.db.models import Q
from django.utils import timezone

from accounts.models import ConsumerAccount, Utility
from billing.models import Bill, Tariff
from billing.selectors import bills_for_account
from billing.tariffs import WH_PER_KWH, Pricing, tariff_for
from core.errors import Conflict, DomainError, NotFound
from core.money import money_digits, money_quantize
from core.timebuckets import date_in_range, local_midnight
from insight.models import InsightPolicy
from meters.models import Meter, MeterAssignment
from meters.selectors import meter_series
from meters.storage import INTERVAL, PRESENT, Quality, Series, floor_to_interval

POSTPAID = Meter.PaymentMode.POSTPAID
MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
KWH = Decimal("0.001")
KW = Decimal("0.01")
MAX_TOD_DAYS = 90
# Without a time-of-use tariff, a bill comparison splits use by these parts of the local day.
DAY_PARTS = (
    ("night", time(0), time(6)),
    ("morning", time(6), time(12)),
    ("afternoon", time(12), time(18)),
    ("evening", time(18), time(0)),
)
# The hours a time-of-use tariff leaves to its flat rate.
REST_OF_DAY = "standard"


def insight_policy_for(utility: Utility) -> InsightPolicy:
    """The utility's insight policy, or the defaults (unsaved) when staff never set one."""
    try:
        return utility.insight_policy
    except InsightPolicy.DoesNotExist:
        return InsightPolicy(utility=utility)


def month_parse(raw: str | None, *, field_name: str) -> date:
    """A month a client names as YYYY-MM: its first day. 400 `bad_month` otherwise."""
    if not raw or not MONTH.fullmatch(raw):
        raise DomainError.for_field(field_name, "Give a month as YYYY-MM.", code="bad_month")
    month = date(int(raw[:4]), int(raw[5:]), 1)
    if not date_in_range(month):
        raise DomainError.for_field(
            field_name, "Give a month from 2000 to 2099.", code="period_out_of_range"
        )
    return month


def days_parse(raw: str | None, *, default: int = 30) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit():
        raise DomainError.for_field("days", "Give a whole number of days.", code="bad_days")
    days = int(raw)
    if not 1 <= days <= MAX_TOD_DAYS:
        raise DomainError.for_field(
            "days", f"Give 1 to {MAX_TOD_DAYS} days.", code="days_out_of_range"
        )
    return days


# --- Reading one account's meters as the reader may see them -------------------------------------


@dataclass
class _Meter:
    id: int
    payment_mode: str
    windows: list[tuple[datetime, datetime | None]] = field(default_factory=list)


def _account_meters(
    account: ConsumerAccount, start: datetime, end: datetime, *, payment_mode: str | None = None
) -> list[_Meter]:
    """The account's meters over [start, end), each with the windows the reader sees of it: its
    tenancies of this account, cut to the reader's `visible_from` (annotated by
    accounts.selectors.account_get_for_user), as meters.selectors cuts every consumer read."""
    rows = MeterAssignment.objects.filter(account=account, start__lt=end).filter(
        Q(end__isnull=True) | Q(end__gt=start)
    )
    if payment_mode:
        rows = rows.filter(meter__payment_mode=payment_mode)
    since = getattr(account, "visible_from", None)
    meters: dict[int, _Meter] = {}
    for meter_id, mode, begin, finish in rows.order_by("start", "pk").values_list(
        "meter_id", "meter__payment_mode", "start", "end"
    ):
        if since is not None and since > begin:
            begin = since
        if finish is not None and finish <= begin:
            continue
        meters.setdefault(meter_id, _Meter(meter_id, mode)).windows.append((begin, finish))
    return list(meters.values())


def _series(meters: list[_Meter], start: datetime, end: datetime) -> list[Series]:
    return [meter_series(meter_id=m.id, start=start, end=end).keep_only(m.windows) for m in meters]


def _local_clock(start: datetime, count: int, zone: ZoneInfo) -> list[time]:
    """The local wall-clock start of each of `count` quarter-hours from `start`."""
    return [(start + i * INTERVAL).astimezone(zone).time() for i in range(count)]


def _month_span(month: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """A local month as UTC instants (local midnights: a DST month is its real length)."""
    following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return local_midnight(month, zone), local_midnight(following, zone)


def _held_days(
    windows: list[tuple[datetime, datetime | None]], first: date, last: date, zone: ZoneInfo
) -> int:
    """Local days first … last that some window touches: a bill's fixed charge is for those."""
    held = 0
    for n in range((last - first).days + 1):
        day_start = local_midnight(first + timedelta(days=n), zone)
        day_end = local_midnight(first + timedelta(days=n + 1), zone)
        if any(s < day_end and (e is None or e > day_start) for s, e in windows):
            held += 1
    return held


def _pricing(utility: Utility, payment_mode: str, on: date) -> Pricing:
    try:
        return tariff_for(utility=utility, payment_mode=payment_mode, on=on)
    except DomainError:
        raise Conflict(
            f"There is no {payment_mode} tariff for {on:%Y-%m}.", code="no_tariff"
        ) from None


def _kwh(wh: Decimal | int) -> str:
    return f"{(Decimal(wh) / WH_PER_KWH).quantize(KWH, rounding=ROUND_HALF_UP):f}"


def _percent(part: Decimal | int, whole: Decimal | int) -> float:
    if not whole:
        return 0.0
    return float((Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), ROUND_HALF_UP))


def _local_iso(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).isoformat()


def _clock(moment: time) -> str:
    return f"{moment:%H:%M}"


def _account_head(account: ConsumerAccount) -> dict:
    utility = account.utility
    return {
        "account": account.pk,
        "consumer_id": account.consumer_id,
        "currency": utility.currency,
        "timezone": utility.timezone,
    }


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


# --- Splitting a day into named parts: a time-of-use tariff's periods, or parts of the day ------


@dataclass(frozen=True)
class _Split:
    names: list[str]
    rates: list[Decimal | None]
    windows: list[list[tuple[time, time]]]

    def index_at(self, local: time, cache: dict[time, int]) -> int:
        hit = cache.get(local)
        if hit is None:
            hit = cache[local] = self._index(local)
        return hit

    def _index(self, local: time) -> int:
        # The same order as billing.tariffs.Pricing.rate_at: the first window that holds it.
        for index, windows in enumerate(self.windows):
            for start, end in windows:
                if start < end and start <= local < end:
                    return index
                if start >= end and (local >= start or local < end):
                    return index
        return len(self.names) - 1  # the rest of the day (only a tariff's split has one)


def _tou_split(pricing: Pricing) -> _Split:
    """A time-of-use tariff's periods, and the rest of the day at its flat rate when the periods
    leave some quarter-hour of the day uncovered."""
    periods = list(pricing.tariff.periods.all())
    names = [p.name for p in periods]
    rates: list[Decimal | None] = [p.rate for p in periods]
    windows = [[(p.start, p.end)] for p in periods]
    probe = _Split([*names, REST_OF_DAY], [*rates, None], [*windows, []])
    slots = [time(h, m) for h in range(24) for m in (0, 15, 30, 45)]
    rest = [probe._index(slot) == len(periods) for slot in slots]
    if any(rest):
        runs = []
        for is_rest, group in itertools.groupby(enumerate(rest), key=lambda item: item[1]):
            if is_rest:
                group = list(group)
                first, last = group[0][0], group[-1][0]
                end = slots[last + 1] if last + 1 < len(slots) else time(0)
                runs.append((slots[first], end))
        if len(runs) > 1 and runs[0][0] == time(0) and runs[-1][1] == time(0):  # wraps midnight
            runs = [(runs[-1][0], runs[0][1]), *runs[1:-1]]
        names.append(REST_OF_DAY)
        rates.append(pricing.tariff.flat_rate or Decimal(0))
        windows.append(runs)
    return _Split(names, rates, windows)


def _day_parts_split() -> _Split:
    return _Split(
        [name for name, _, _ in DAY_PARTS],
        [None] * len(DAY_PARTS),
        [[(start, end)] for _, start, end in DAY_PARTS],
    )


def _is_tou(pricing: Pricing) -> bool:
    return pricing.tariff.kind == Tariff.Kind.TIME_OF_USE and bool(pricing.periods)


def _wh_by_part(
    series_list: list[Series], split: _Split, zone: ZoneInfo, start: datetime
) -> tuple[list[int], int]:
    """Wh read in each part of the split, and how many quarter-hours were read."""
    wh = [0] * len(split.names)
    read = 0
    if not series_list:
        return wh, read
    clock = _local_clock(start, len(series_list[0]), zone)
    cache: dict[time, int] = {}
    for series in series_list:
        for i, (value, quality) in enumerate(zip(series.values, series.quality, strict=True)):
            if quality in PRESENT:
                wh[split.index_at(clock[i], cache)] += value
                read += 1
    return wh, read


def _windows_body(windows: list[tuple[time, time]]) -> list[dict]:
    return [{"start": _clock(start), "end": _clock(end)} for start, end in windows]


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


# --- 4. Max demand against the sanctioned load ---------------------------------------------------


def _kw(wh: int) -> Decimal:
    """A quarter-hour's energy as its average demand: Wh × 4 → kW, two decimals."""
    return (Decimal(wh * 4) / 1000).quantize(KW, rounding=ROUND_HALF_UP)


def demand(*, account: ConsumerAccount, month: date | None, now: datetime | None = None) -> dict:
    """The month's 15-minute demand of the account (its meters' quarter-hours added up: one
    connection), its maximum and when, and against the sanctioned load how many quarter-hours
    and local days went above it; each local day's maximum up to today."""
    now = now or timezone.now()
    utility = account.utility
    zone = utility.zone
    today = now.astimezone(zone).date()
    month = month or today.replace(day=1)
    if month > today:  # a well-formed month: refused by the calendar, not its form
        raise Conflict("That month has not begun.", code="month_in_future")
    start, end = _month_span(month, zone)
    series_list = _series(_account_meters(account, start, end), start, end)
    count = int((end - start).total_seconds()) // 900
    totals = [0] * count
    present = bytearray(count)
    for series in series_list:
        for i, (value, quality) in enumerate(zip(series.values, series.quality, strict=True)):
            if quality in PRESENT:
                totals[i] += value
                present[i] = 1
    if 1 not in present:
        raise Conflict("There are no readings in this month.", code="no_readings")
    sanctioned = account.sanctioned_load_kw
    # Above the sanctioned load: Wh × 4 > kW × 1000, compared exactly.
    limit = None if sanctioned is None else sanctioned * 1000

    def over(wh: int) -> bool:
        return limit is not None and wh * 4 > limit

    last = min(today, (end - timedelta(microseconds=1)).astimezone(zone).date())
    days, intervals_over, days_over = [], 0, 0
    peak: tuple[int, int] | None = None
    for n in range((last - month).days + 1):
        day = month + timedelta(days=n)
        i0 = int((local_midnight(day, zone) - start).total_seconds()) // 900
        i1 = int((local_midnight(day + timedelta(days=1), zone) - start).total_seconds()) // 900
        best: tuple[int, int] | None = None
        day_over = 0
        for i in range(i0, min(i1, count)):
            if not present[i]:
                continue
            if best is None or totals[i] > best[0]:
                best = (totals[i], i)
            day_over += over(totals[i])
        intervals_over += day_over
        days_over += bool(day_over)
        if best is not None and (peak is None or best[0] > peak[0]):
            peak = best
        days.append(
            {
                "date": day,
                "max_kw": None if best is None else f"{_kw(best[0]):f}",
                "at": None if best is None else _local_iso(start + best[1] * INTERVAL, zone),
                "over": None if best is None or limit is None else over(best[0]),
            }
        )
    if peak is None:
        raise Conflict("There are no readings in this month.", code="no_readings")
    return {
        **_account_head(account),
        "month": f"{month:%Y-%m}",
        "sanctioned_load_kw": None if sanctioned is None else f"{sanctioned:f}",
        "max_demand_kw": f"{_kw(peak[0]):f}",
        "max_demand_at": _local_iso(start + peak[1] * INTERVAL, zone),
        "intervals_over": None if limit is None else intervals_over,
        "days_over": None if limit is None else days_over,
        "days": days,
    }
