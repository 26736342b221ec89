"""Max demand: the month's highest quarter-hour against the sanctioned load (docs/insight.md)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.utils import timezone

from accounts.models import ConsumerAccount
from core.errors import Conflict
from core.timebuckets import local_midnight
from insight.selectors.common import (
    KW,
    _account_head,
    _account_meters,
    _local_iso,
    _month_span,
    _series,
)
from meters.storage import INTERVAL, PRESENT

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
