"""Local days, weeks and months as UTC instants: the bridge between storage (UTC) and people (local).

A local day is [first instant whose local date is d, first instant of d + 1): 96 quarter-hours on
most days, 92 or 100 on a daylight-saving change. Midnight itself may not exist (Egypt springs
forward at 00:00); zoneinfo's fold=0 then gives the instant of the change, which is still right.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

INTERVAL = timedelta(minutes=15)
GROUPS = ("interval", "hour", "day", "week", "month")


def moment_text(moment: datetime | None, zone: ZoneInfo, *, seconds: bool = False) -> str:
    """An instant as people read it: local time in `zone` with the zone's abbreviation or offset
    ("2026-12-01 04:41 +03", "2026-03-29 09:00 EEST"); "—" for none. Every time staff or a
    consumer see carries its zone, so a UTC time can never pass for a local one."""
    if moment is None:
        return "—"
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M{':%S' if seconds else ''} %Z}"


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant, in UTC, of a local day."""
    return datetime.combine(day, time(0), zone).astimezone(UTC)


# The dates a client may name, in a period or a reading: no smart meter read before 2000, and
# nothing is planned past 2100. Outside them a date is a typo or a probe, and near year 1 or 9999
# the conversion between local time and UTC overflows (a server error, not an answer).
EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2100, 1, 1)


def date_in_range(day: date) -> bool:
    return EARLIEST_DATE <= day <= LATEST_DATE


def local_moment_parse(raw: str, zone: ZoneInfo, *, field: str) -> datetime:
    """A period edge from a client: a date is that local midnight, a time without an offset is
    local, a time with one is taken as given. Refused with a field error otherwise, and outside
    EARLIEST_DATE .. LATEST_DATE (code period_out_of_range)."""
    from core.errors import DomainError

    try:
        if len(raw) == 10:
            moment = datetime.combine(date.fromisoformat(raw), time(0))
        else:
            moment = datetime.fromisoformat(raw)
    except ValueError:
        raise DomainError.for_field(
            field, "Use a date (2026-11-21) or an ISO time with offset.", code="bad_period"
        ) from None
    # The date as written, before any conversion: converting year 1 or 9999 is what overflows.
    if not date_in_range(moment.date()):
        raise DomainError.for_field(
            field,
            f"Give a date from {EARLIEST_DATE} to {LATEST_DATE}.",
            code="period_out_of_range",
        )
    if len(raw) == 10:
        return local_midnight(moment.date(), zone)
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def local_date_bounds(start: date, end: date, zone: ZoneInfo) -> list[datetime]:
    """UTC instants of local midnights from `start` to `end` inclusive."""
    return [local_midnight(start + timedelta(days=n), zone) for n in range((end - start).days + 1)]


def _add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    return date(day.year + month // 12, month % 12 + 1, 1)


def bucket_bounds(
    start: datetime, end: datetime, group_by: str, zone: ZoneInfo, week_start: int = 0
) -> list[datetime]:
    """Edges of buckets covering [start, end): start, every bucket boundary inside, end.

    Boundaries are the local edges (hours, midnights, week starts, month starts) converted to
    UTC, so a bucket never straddles two local days and a DST day is one bucket of 92 or 100.
    """
    if group_by == "interval":
        count = int((end - start) / INTERVAL)
        return [start + n * INTERVAL for n in range(count + 1)]
    edges = [start]
    if group_by == "hour":
        moment = start + INTERVAL
        while moment < end:
            if moment.astimezone(zone).minute == 0:
                edges.append(moment)
            moment += INTERVAL
    else:
        first = start.astimezone(zone).date() + timedelta(days=1)
        last = end.astimezone(zone).date() + timedelta(days=1)
        if group_by == "day":
            candidates = (first + timedelta(days=n) for n in range((last - first).days + 1))
        elif group_by == "week":
            ahead = (week_start - first.weekday()) % 7
            first_week = first + timedelta(days=ahead)
            candidates = (
                first_week + timedelta(weeks=n) for n in range((last - first_week).days // 7 + 1)
            )
        elif group_by == "month":
            month = _add_months(first.replace(day=1), 0 if first.day == 1 else 1)
            candidates = []
            while month <= last:
                candidates.append(month)
                month = _add_months(month, 1)
        else:
            raise ValueError(group_by)
        for day in candidates:
            edge = local_midnight(day, zone)
            if start < edge < end:
                edges.append(edge)
    edges.append(end)
    return edges
