"""Reads for meters: a consumer's meters, their status, consumption by bucket and patterns."""

from __future__ import annotations

import itertools
import operator
import statistics
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from django.db import connection, connections, router
from django.db.models import Q
from django.utils import timezone

from accounts.models import AccountLink, User, Utility
from core import sql
from core.errors import DomainError, NotFound
from core.timebuckets import GROUPS, bucket_bounds, local_date_bounds, local_moment_parse
from meters.models import Meter, MeterAssignment, MeterDay, MeterEvent, SupplyPeriod, Transformer
from meters.storage import (
    INTERVAL,
    PRESENT,
    Quality,
    Series,
    floor_to_interval,
    values_unpack,
)

# The longest period each grouping answers, in days: enough for any screen of the app, small
# enough that one request stays cheap.
MAX_PERIOD_DAYS = {"interval": 31, "hour": 92, "day": 732, "week": 1830, "month": 1830}
COMMUNICATION_OK = timedelta(hours=1)
COMMUNICATION_LATE = timedelta(hours=24)
# Stored readings of some UTC days: (values, quality) by day, as meters.storage.Series takes them.
MeterDays = dict[date, tuple[bytes, bytes]]


@dataclass(frozen=True)
class Tenancy:
    """A stretch of a meter's life that a user may see: the tenancy of one of the user's accounts,
    cut to the user's own period of that account (a link's visible_from)."""

    account_id: int
    consumer_id: str
    start: datetime
    end: datetime | None  # None: still running
    current: bool  # running, and the user's link to the account is live


@dataclass(frozen=True)
class SupplyFacts:
    """What a meter's own events say of its supply and relay now, read with the meter."""

    # In the order of _supply_columns.
    off_since: datetime | None  # the open SupplyPeriod's off_at: off now, as the meter said
    on_since: datetime | None  # the last closed period's on_at
    relay_confirmed_at: datetime | None  # the newest relay_open or relay_closed event
    outage_id: int | None  # an outage in progress that holds the meter
    outage_since: datetime | None  # its start (actual, else planned)


def _meters_with_tenancies(
    *,
    user: User,
    meter_id: int | None = None,
    with_grid: bool = False,
    with_supply: bool = False,
) -> list[Meter]:
    """The user's meters with their utility, each with its `tenancies`, from one hand-written
    query (core.sql: every consumer read of a meter starts here): every assignment of a meter to
    an account the user holds, or held until it closed, with the user's link to that account.
    `with_grid` reads the meters' transformers, feeders and areas in a second query;
    `with_supply` adds each meter's `supply` (SupplyFacts) to the same query."""
    query, fields, meter_names, utility_names = _tenancies_query(
        one_meter=meter_id is not None, with_supply=with_supply
    )
    rows = sql.select(
        query,
        [
            user.pk,
            AccountLink.EndReason.ACCOUNT_CLOSED,
            *([meter_id] if meter_id is not None else []),
        ],
        fields,
    )
    split, meter_id_at = 6 + len(meter_names), meter_names.index("id")
    supply_at = split + len(utility_names)
    meters: dict[int, Meter] = {}
    for row in rows:
        account_id, consumer_id, start, end, visible_from, link_ended = row[:6]
        if visible_from and visible_from > start:
            start = visible_from
        if end is not None and end <= start:
            continue
        meter_pk = row[6 + meter_id_at]
        if meter_pk not in meters:
            meter = sql.instance(Meter, meter_names, row[6:split])
            meter.utility = sql.instance(Utility, utility_names, row[split:supply_at])
            if with_supply:
                meter.supply = SupplyFacts(*row[supply_at:])
            meter.tenancies = []
            meters[meter_pk] = meter
        tenancy = Tenancy(account_id, consumer_id, start, end, end is None and link_ended is None)
        meters[meter_pk].tenancies.append(tenancy)
    if with_grid:
        ids = {m.transformer_id for m in meters.values() if m.transformer_id is not None}
        if ids:
            grid = Transformer.objects.select_related("feeder__area").in_bulk(ids)
            for meter in meters.values():
                meter.transformer = grid.get(meter.transformer_id)
    return list(meters.values())


def _supply_columns() -> tuple[list[str], list]:
    """SupplyFacts as scalar subqueries on the meter `m`, and their fields. Each is one short
    index range of the meter's own rows: its supply periods (supply_period_once, meter first),
    its relay events (meter_event_once: meter, kind, time), the outages holding it (AffectedMeter's
    meter index). Outages are the outages app's: read here by table, as the meter's status in
    the app is the one place a meter's state and the grid's meet."""
    from outages.models import AffectedMeter, Outage

    period, event = SupplyPeriod._meta.db_table, MeterEvent._meta.db_table
    affected, outage = AffectedMeter._meta.db_table, Outage._meta.db_table
    # Constants of our own models, not input: safe in the text, and a stable plan per query.
    relay_kinds = ", ".join(f"'{kind}'" for kind in MeterEvent.RELAY_KINDS)
    # An outage in progress holds the meter unless the meter's own part of it (its period) ended.
    holding = f"""
        FROM {affected} am JOIN {outage} o ON o.id = am.outage_id
        LEFT JOIN {period} ap ON ap.id = am.period_id
        WHERE am.meter_id = m.id AND o.status = '{Outage.Status.IN_PROGRESS}'
              AND o.merged_into_id IS NULL AND ap.on_at IS NULL
        ORDER BY COALESCE(o.actual_start, o.planned_start) DESC, o.id DESC LIMIT 1"""
    # S608: only table names and choices of the models are put in the text.
    columns = [
        f"(SELECT p.off_at FROM {period} p WHERE p.meter_id = m.id AND p.on_at IS NULL)",  # noqa: S608
        f"(SELECT MAX(p.on_at) FROM {period} p WHERE p.meter_id = m.id)",  # noqa: S608
        f"(SELECT MAX(e.occurred_at) FROM {event} e "  # noqa: S608
        f"WHERE e.meter_id = m.id AND e.kind IN ({relay_kinds}))",
        f"(SELECT o.id {holding})",
        f"(SELECT COALESCE(o.actual_start, o.planned_start) {holding})",
    ]
    fields = [
        SupplyPeriod._meta.get_field("off_at"),
        SupplyPeriod._meta.get_field("on_at"),
        MeterEvent._meta.get_field("occurred_at"),
        None,
        Outage._meta.get_field("actual_start"),
    ]
    return columns, fields


@cache
def _tenancies_query(
    *, one_meter: bool, with_supply: bool = False
) -> tuple[str, list, list[str], list[str]]:
    """The SQL of _meters_with_tenancies, its columns' fields, the meter's and utility's names."""
    meter_fields = Meter._meta.concrete_fields
    utility_fields = Utility._meta.concrete_fields
    quote = connection.ops.quote_name
    supply_columns, supply_fields = _supply_columns() if with_supply else ([], [])
    columns = ", ".join(
        [f"m.{quote(f.column)}" for f in meter_fields]
        + [f"u.{quote(f.column)}" for f in utility_fields]
        + supply_columns
    )
    query = f"""
        SELECT ma.account_id, a.consumer_id, ma.start, ma."end", l.visible_from, l.unlinked_at,
               {columns}
        FROM meters_meterassignment ma
        JOIN accounts_consumeraccount a ON a.id = ma.account_id
        JOIN accounts_accountlink l ON l.account_id = ma.account_id
        JOIN meters_meter m ON m.id = ma.meter_id
        JOIN accounts_utility u ON u.id = m.utility_id
        WHERE l.user_id = %s AND ((l.unlinked_at IS NULL AND l.can_view) OR l.end_reason = %s)
              {"AND ma.meter_id = %s" if one_meter else ""}
        ORDER BY ma.start
        """  # noqa: S608 - only column names from the models are put in
    assignment, link = MeterAssignment._meta.get_field, AccountLink._meta.get_field
    fields = [
        None,
        None,
        assignment("start"),
        assignment("end"),
        link("visible_from"),
        link("unlinked_at"),
        *meter_fields,
        *utility_fields,
        *supply_fields,
    ]
    return (
        query,
        fields,
        [f.attname for f in meter_fields],
        [f.attname for f in utility_fields],
    )


def meters_for_user(*, user: User) -> list[Meter]:
    """Meters the user may see, each with its `tenancies`: those on accounts the user holds now,
    and those of closed accounts the user held (read-only, up to the move-out). With their place
    in the grid and their `supply` (meter_supply reads it)."""
    meters = _meters_with_tenancies(user=user, with_grid=True, with_supply=True)
    meters.sort(key=lambda m: (m.tenancies[-1].consumer_id, m.serial))
    return meters


def meter_get_for_user(
    *, user: User, meter_id: int, with_grid: bool = False, with_supply: bool = False
) -> Meter:
    """One of the user's meters, with its `tenancies` (see meters_for_user): every consumer read
    of the meter is cut to them."""
    meters = _meters_with_tenancies(
        user=user, meter_id=meter_id, with_grid=with_grid, with_supply=with_supply
    )
    if not meters:
        raise NotFound("You have no such meter.", code="meter_not_found")
    return meters[0]


def meter_windows(meter: Meter) -> list[tuple[datetime, datetime | None]]:
    return [(t.start, t.end) for t in meter.tenancies]


def meter_series_for_user(
    *, meter: Meter, start: datetime, end: datetime, days: MeterDays | None = None
) -> Series:
    """A consumer's view of the readings: intervals outside their tenancies are OUTSIDE. `days`,
    read once by meter_days over a span holding [start, end), saves reading them again."""
    if days is None:
        days = meter_days(meter_id=meter.pk, start=start, end=end)
    return Series(start, end, days).keep_only(meter_windows(meter))


def communication_health(*, meter: Meter, now: datetime | None = None) -> str:
    now = now or timezone.now()
    if meter.last_communication_at is None:
        return "never"
    age = now - meter.last_communication_at
    if age <= COMMUNICATION_OK:
        return "ok"
    return "late" if age <= COMMUNICATION_LATE else "silent"


# Silent this long, a meter that sent no last gasp may have lost its supply as well as its link.
SUPPLY_UNKNOWN_AFTER = COMMUNICATION_LATE


def meter_supply(*, meter: Meter, now: datetime | None = None) -> dict:
    """Whether the meter has supply now, and since when (read with `with_supply`):
    1. off since its open supply period began, as the meter itself reported;
    2. else off since the start of an outage in progress that holds it, when the meter reported
       no restoration since (it sent no last gasp: an outage staff entered, a dead battery);
    3. else unknown if it has been silent SUPPLY_UNKNOWN_AFTER, or never spoke: no news is not
       proof of supply;
    4. else on, since its last restoration (null: it never reported a failure).
    Times in the utility's zone with its offset."""
    now = now or timezone.now()
    facts: SupplyFacts = meter.supply
    zone = meter.utility.zone

    def local(moment: datetime | None) -> str | None:
        return moment.astimezone(zone).isoformat() if moment else None

    # A restoration the meter reported after the outage began is its own evidence: it is back.
    back_since_outage = (
        facts.on_since is not None
        and facts.outage_since is not None
        and facts.on_since > facts.outage_since
    )
    if facts.off_since is not None:
        state, since = "off", facts.off_since
    elif facts.outage_id is not None and not back_since_outage:
        state, since = "off", facts.outage_since
    elif (
        meter.last_communication_at is None
        or now - meter.last_communication_at > SUPPLY_UNKNOWN_AFTER
    ):
        state, since = "unknown", None
    else:
        state, since = "on", facts.on_since
    outage = facts.outage_id if state == "off" else None
    return {"state": state, "since": local(since), "outage": outage}


@dataclass(frozen=True)
class Period:
    start: datetime  # UTC, on an interval boundary
    end: datetime
    zone: ZoneInfo


def period_parse(
    *, raw_from: str | None, raw_to: str | None, zone: ZoneInfo, group_by: str
) -> Period:
    """A half-open period [from, to) from dates (local midnights) or ISO times with offsets."""
    if group_by not in GROUPS:
        raise DomainError.for_field(
            "group_by", f"Use one of {', '.join(GROUPS)}.", code="unknown_group_by"
        )
    if not raw_from or not raw_to:
        raise DomainError("Give both period_from and period_to.", code="period_required")
    start = floor_to_interval(local_moment_parse(raw_from, zone, field="period_from"))
    end = floor_to_interval(local_moment_parse(raw_to, zone, field="period_to"))
    if end <= start:
        raise DomainError("period_to must be after period_from.", code="period_reversed")
    if end - start > timedelta(days=MAX_PERIOD_DAYS[group_by]):
        raise DomainError(
            f"Grouped by {group_by}, a period may be at most {MAX_PERIOD_DAYS[group_by]} days.",
            code="period_too_long",
        )
    return Period(start=start, end=end, zone=zone)


def meter_days(*, meter_id: int, start: datetime, end: datetime) -> MeterDays:
    """The stored rows of the UTC days [start, end) touches: (values, quality) by day."""
    first, last = (
        start.astimezone(UTC).date(),
        (end.astimezone(UTC) - timedelta(microseconds=1)).date(),
    )
    if connection.vendor == "postgresql":
        # Binary results: bytea in the text protocol is hex, twice the bytes and a parse per row.
        import psycopg

        # The router's choice: a standby under its lag limit for a consumer's read.
        reads = connections[router.db_for_read(MeterDay)]
        reads.ensure_connection()
        with psycopg.Cursor(
            reads.connection
        ) as cursor:  # Django's own cursors bind client-side: text only
            cursor.execute(
                "SELECT day, values, quality FROM meters_meterday WHERE meter_id = %s AND day BETWEEN %s AND %s",
                [meter_id, first, last],
                binary=True,
            )
            rows = cursor.fetchall()
    else:
        rows = MeterDay.objects.filter(
            meter_id=meter_id, day__gte=first, day__lte=last
        ).values_list("day", "values", "quality")
    return {day: (bytes(values), bytes(quality)) for day, values, quality in rows}


def meter_series(*, meter_id: int, start: datetime, end: datetime) -> Series:
    return Series(start, end, meter_days(meter_id=meter_id, start=start, end=end))


def _summary(series: Series, i0: int, i1: int) -> dict:
    """Counts over [i0, i1). Intervals outside the reader's tenancy are neither expected nor
    missing: they are counted apart, so a gap before a move-in never reads as lost data."""
    quality = series.quality[i0:i1]
    absent, missing = quality.count(Quality.ABSENT), quality.count(Quality.MISSING)
    outside = quality.count(Quality.OUTSIDE)
    present = len(quality) - absent - missing - outside
    return {
        "energy_wh": sum(series.values[i0:i1]) if present else None,
        "expected_intervals": len(quality) - outside,
        "present_intervals": present,
        "estimated_intervals": quality.count(Quality.ESTIMATED),
        "missing_intervals": absent + missing,
        "outside_intervals": outside,
    }


def consumption(
    *, meter: Meter, period: Period, group_by: str, now: datetime | None = None
) -> dict:
    """Energy by local bucket. Intervals not yet ended are not expected; missing ones never count as 0."""
    now = floor_to_interval(now or timezone.now())
    end = min(period.end, now)
    utility = meter.utility
    buckets: list[dict] = []
    total = {
        "energy_wh": None,
        "expected_intervals": 0,
        "present_intervals": 0,
        "estimated_intervals": 0,
        "missing_intervals": 0,
        "outside_intervals": 0,
    }
    spans: list[tuple[int, int]] = []
    if end > period.start:
        # Costs need the whole local months around the period (a day's cost is its share of its
        # month's): read once, and the period's series cut from the same rows.
        months = _cost_months(meter, period.start, end)
        days = meter_days(
            meter_id=meter.pk,
            start=months[0] if months else period.start,
            end=max(end, min(months[1], now)) if months else end,
        )
        series = meter_series_for_user(meter=meter, start=period.start, end=end, days=days)
        if group_by == "interval":
            buckets = _interval_buckets(series, period.zone)
            spans = [(i, i + 1) for i in range(len(series))]
        else:
            edges = bucket_bounds(
                period.start, period.end, group_by, period.zone, utility.week_starts_on
            )
            labels = [edge.astimezone(period.zone).isoformat() for edge in edges]
            for n, (left, right) in enumerate(itertools.pairwise(edges)):
                if left >= end:
                    break
                i0, i1 = series.index_of(left), series.index_of(min(right, end))
                spans.append((i0, i1))
                bucket = _summary(series, i0, i1)
                bucket["complete"] = bucket["present_intervals"] == (
                    right - left
                ) // INTERVAL - bucket["outside_intervals"] and bool(bucket["expected_intervals"])
                buckets.append({"start": labels[n], "end": labels[n + 1], **bucket})
        costs = None
        if months:
            wide = meter_series_for_user(
                meter=meter, start=months[0], end=max(end, min(months[1], now)), days=days
            )
            offset = wide.index_of(period.start)
            costs = _costs(meter, wide, [(i0 + offset, i1 + offset) for i0, i1 in spans])
        if costs is not None:
            for bucket, cost in zip(buckets, costs, strict=True):
                bucket["cost"] = cost
        total = _summary(series, 0, len(series))
    return {
        "meter": meter.pk,
        "timezone": str(period.zone),
        "period_from": period.start.astimezone(period.zone).isoformat(),
        "period_to": period.end.astimezone(period.zone).isoformat(),
        "group_by": group_by,
        "unit": "Wh",
        "currency": utility.currency,
        "tenancies": tenancies_body(meter),
        "total": total,
        "buckets": buckets,
    }


def tenancies_body(meter: Meter) -> list[dict]:
    """The reader's periods of the meter, in the utility's zone: what lies outside is not theirs."""
    zone = meter.utility.zone
    return [
        {
            "account": t.account_id,
            "consumer_id": t.consumer_id,
            "start": t.start.astimezone(zone).isoformat(),
            "end": None if t.end is None else t.end.astimezone(zone).isoformat(),
            "current": t.current,
        }
        for t in meter.tenancies
    ]


def _cost_months(meter: Meter, start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
    """The whole local months a priced period reads (billing owns tariffs; meters only shows them)."""
    from billing.selectors import cost_months_span

    return cost_months_span(meter=meter, start=start, end=end)


def _costs(meter: Meter, series: Series, spans: list[tuple[int, int]]) -> list[str | None] | None:
    """Each bucket's price under the meter's tariff, its series covering whole local months."""
    from billing.selectors import bucket_costs

    return bucket_costs(meter=meter, series=series, spans=spans)


_LABELS = {q.value: q.label for q in Quality}
_PRESENT = {Quality.ACTUAL.value: 1, Quality.ESTIMATED.value: 1}


def local_starts(series: Series, zone: ZoneInfo) -> list[str]:
    """The local ISO start of every interval of a series. When the zone keeps one offset over the
    whole period (checked at every local midnight), every local day has the same 96 wall-clock
    starts, so each string is a day's date joined to one of them, many times faster than converting
    each instant; otherwise each is converted."""
    count = len(series)
    if not count:
        return []
    end = series.start + count * INTERVAL
    first = series.start.astimezone(zone)
    offset = first.utcoffset()
    probes = [
        end - INTERVAL,
        *local_date_bounds(first.date(), (end - INTERVAL).astimezone(zone).date(), zone),
    ]
    if any(p.astimezone(zone).utcoffset() != offset for p in probes):
        return [(series.start + i * INTERVAL).astimezone(zone).isoformat() for i in range(count)]
    suffix = first.isoformat()[19:]  # "+03:00"
    clock = first.replace(tzinfo=None)
    if clock.minute % 15 or clock.second:  # an offset off the quarter-hour (old local mean times)
        return [(clock + i * INTERVAL).isoformat() + suffix for i in range(count)]
    times = [f"T{h:02d}:{m:02d}:00{suffix}" for h in range(24) for m in (0, 15, 30, 45)]
    skip = clock.hour * 4 + clock.minute // 15
    dates = [
        (clock.date() + timedelta(days=n)).isoformat() for n in range((skip + count - 1) // 96 + 1)
    ]
    return [day + time for day in dates for time in times][skip : skip + count]


def _interval_buckets(series: Series, zone: ZoneInfo) -> list[dict]:
    """One row per quarter-hour: its start, its energy (null unless measured or estimated) and its
    quality. Counts would be 0 or 1 here, so they are left out: a month is 2,976 rows."""
    return [
        {"start": start, "energy_wh": wh if q in _PRESENT else None, "quality": _LABELS[q]}
        for start, wh, q in zip(
            local_starts(series, zone), series.values, series.quality, strict=True
        )
    ]


NIGHT_HOURS = range(0, 5)  # 00:00 to 05:00 local: when a household's load is its base load


_SLOT_TIMES = [f"{slot // 4:02d}:{slot % 4 * 15:02d}" for slot in range(96)]


def pattern(*, meter: Meter, period: Period, now: datetime | None = None) -> dict:
    """How a meter uses energy over a period, against the period of equal length before it.

    1. Split the period into local days; a DST day maps its intervals to wall-clock slots one by one.
    2. Time-of-day profile: the average Wh of each local quarter-hour over the days that have it.
    3. Daily figures use complete days only, so a gap lowers no average.
    """
    now = floor_to_interval(now or timezone.now())
    zone = period.zone
    weekend = set(meter.utility.weekend_days)
    length = period.end - period.start
    current_end = min(period.end, now)
    # Both periods are read at once: they touch, so one range of days holds them.
    stored = meter_days(
        meter_id=meter.pk, start=period.start - length, end=max(current_end, period.start)
    )
    current = _day_stats(meter, period.start, current_end, zone, stored)
    previous = _day_stats(meter, period.start - length, period.start, zone, stored, detail=False)

    profile_sum, profile_n = current["profile"]
    complete = [d for d in current["days"] if d["complete"]]
    weekday = [d["energy"] for d in complete if d["date"].weekday() not in weekend]
    weekend_days = [d["energy"] for d in complete if d["date"].weekday() in weekend]
    daily_avg = _mean([d["energy"] for d in complete])
    previous_avg = _mean([d["energy"] for d in previous["days"] if d["complete"]])
    nights = [d["night_min"] for d in current["days"] if d["night_min"] is not None]
    peak = current["peak"]
    return {
        "meter": meter.pk,
        "timezone": str(zone),
        "period_from": period.start.astimezone(zone).isoformat(),
        "period_to": period.end.astimezone(zone).isoformat(),
        "unit": "Wh",
        "tenancies": tenancies_body(meter),
        "profile": [
            {
                "time": _SLOT_TIMES[slot],
                "average_wh": round(profile_sum[slot] / profile_n[slot], 1)
                if profile_n[slot]
                else None,
                "days": profile_n[slot],
            }
            for slot in range(96)
        ],
        "weekday_daily_average_wh": _round(_mean(weekday)),
        "weekend_daily_average_wh": _round(_mean(weekend_days)),
        "peak": None
        if peak is None
        else {
            "start": peak[0].astimezone(zone).isoformat(),
            "energy_wh": peak[1],
            "demand_kw": round(peak[1] * 4 / 1000, 3),
        },
        "base_load_w": None if not nights else round(statistics.median(nights) * 4, 1),
        "daily_average_wh": _round(daily_avg),
        "complete_days": len(complete),
        "total": current["total"],
        "previous_period": {
            "period_from": (period.start - length).astimezone(zone).isoformat(),
            "period_to": period.start.astimezone(zone).isoformat(),
            "daily_average_wh": _round(previous_avg),
            "complete_days": sum(1 for d in previous["days"] if d["complete"]),
        },
        "change_percent": None
        if not daily_avg or not previous_avg
        else round((daily_avg - previous_avg) / previous_avg * 100, 1),
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _day_stats(
    meter: Meter,
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    stored: MeterDays,
    detail: bool = True,
) -> dict:
    """Per local day: energy and completeness; with `detail`, the night minimum, the period's peak
    and its time-of-day profile: (sum, count) of the present intervals of each wall-clock slot.

    A whole day of 96 present intervals (most days) is added up slot by slot in one pass of C
    (map, min, max); a day with gaps, a DST day or a partial one is walked interval by interval.
    """
    days: list[dict] = []
    profile_sum, profile_n = [0] * 96, [0] * 96
    out = {"days": days, "peak": None, "total": None, "profile": (profile_sum, profile_n)}
    if end <= start:
        return out
    series = meter_series_for_user(meter=meter, start=start, end=end, days=stored)
    if detail:
        out["total"] = _summary(series, 0, len(series))
    first, last = start.astimezone(zone).date(), (end - INTERVAL).astimezone(zone).date()
    edges = local_date_bounds(first, last + timedelta(days=1), zone)
    peak_index, peak_wh = None, -1
    whole_days = 0
    night = slice(4 * NIGHT_HOURS.start, 4 * NIGHT_HOURS.stop)
    for number, (left, right) in enumerate(itertools.pairwise(edges)):
        lo, hi = max(left, start), min(right, end)
        i0, i1 = series.index_of(lo), series.index_of(hi)
        values, quality = series.values[i0:i1], series.quality[i0:i1]
        nominal = int((right - left) / INTERVAL)
        present = quality.count(Quality.ACTUAL) + quality.count(Quality.ESTIMATED)
        if not detail:
            days.append(
                {
                    "date": first + timedelta(days=number),
                    "energy": sum(values),
                    "complete": present == nominal,
                }
            )
            continue
        regular = (right - left) == timedelta(days=1) and lo == left
        if regular and present == nominal == len(values):
            whole_days += 1
            profile_sum[:] = map(operator.add, profile_sum, values)
            highest = max(values)
            if highest > peak_wh:  # the first of equal peaks stays
                peak_index, peak_wh = i0 + values.index(highest), highest
            days.append(
                {
                    "date": first + timedelta(days=number),
                    "energy": sum(values),
                    "complete": True,
                    "night_min": min(values[night]),
                }
            )
            continue
        energy, count, night_wh = 0, 0, []
        for offset, (wh, q) in enumerate(zip(values, quality, strict=True)):
            if q not in (Quality.ACTUAL, Quality.ESTIMATED):
                continue
            if regular:
                slot = offset
            else:  # a DST day or a partial first day: read the wall clock
                local = (lo + offset * INTERVAL).astimezone(zone)
                slot = local.hour * 4 + local.minute // 15
            profile_sum[slot] += wh
            profile_n[slot] += 1
            energy += wh
            count += 1
            if slot // 4 in NIGHT_HOURS:
                night_wh.append(wh)
            if wh > peak_wh:
                peak_index, peak_wh = i0 + offset, wh
        days.append(
            {
                "date": first + timedelta(days=number),
                "energy": energy,
                "complete": count == nominal,
                "night_min": min(night_wh) if night_wh else None,
            }
        )
    if whole_days:
        profile_n[:] = [n + whole_days for n in profile_n]
    if peak_index is not None:
        out["peak"] = (start + peak_index * INTERVAL, peak_wh)
    return out


# --- The staff console's reads over a utility's meters ---------------------------------------

# A meter with no reading for longer than this is "not reporting" on the staff dashboard and in
# the meter list's filter: a day covers a head-end that batches once a night (the slowest we
# serve) and flags a meter that missed a whole daily collection.
NOT_REPORTING_AFTER = timedelta(hours=24)
# Meters expected to report: removed meters send nothing, disconnected ones still measure (0 Wh).
REPORTING_STATUSES = (Meter.Status.ACTIVE, Meter.Status.DISCONNECTED)


def meters_not_reporting_q(*, now: datetime) -> Q:
    """Meters that should report and sent no reading for NOT_REPORTING_AFTER: the newest interval
    is older, or none ever came though the meter was installed before that."""
    since = now - NOT_REPORTING_AFTER
    return Q(status__in=REPORTING_STATUSES) & (
        Q(last_reading_at__lt=since) | Q(last_reading_at__isnull=True, installed_at__lt=since)
    )


def meters_reporting_q(*, now: datetime) -> Q:
    """Meters that should report and did within NOT_REPORTING_AFTER."""
    return Q(status__in=REPORTING_STATUSES, last_reading_at__gte=now - NOT_REPORTING_AFTER)


@dataclass(frozen=True)
class SlotTotal:
    wh: int  # the sum over the utility's meters of the present (actual or estimated) readings
    present: int  # how many readings were present


# Slots of a UTC day decoded in SQL: the little-endian int32 of slot s is bytes 4s … 4s+3.
_SLOT_SUMS_SQL = """
    SELECT m.utility_id, d.day, s.slot,
           SUM(get_byte(d.values, 4 * s.slot)
               + get_byte(d.values, 4 * s.slot + 1) * 256
               + get_byte(d.values, 4 * s.slot + 2) * 65536
               + get_byte(d.values, 4 * s.slot + 3)::bigint * 16777216
               - CASE WHEN get_byte(d.values, 4 * s.slot + 3) > 127 THEN 4294967296 ELSE 0 END
           ) FILTER (WHERE get_byte(d.quality, s.slot) IN (1, 2)) AS wh,
           COUNT(*) FILTER (WHERE get_byte(d.quality, s.slot) IN (1, 2)) AS present
    FROM meters_meterday d
    JOIN meters_meter m ON m.id = d.meter_id
    CROSS JOIN generate_series(0, 95) AS s(slot)
    WHERE m.utility_id = ANY(%s) AND d.day BETWEEN %s AND %s
    GROUP BY m.utility_id, d.day, s.slot
"""


def utility_slot_totals(
    *, utility_ids: list[int], first: date, last: date
) -> dict[int, dict[tuple[date, int], SlotTotal]]:
    """Per utility, per (UTC day, slot) of the days first … last: the Wh of every meter added up,
    and how many readings were present. Local days and hours are cut from these exactly (a DST
    day is its 92 or 100 slots), so one read serves every zone.

    Cost: one aggregate query that reads every stored meter-day of the utilities in those days:
    at 1M meters, 8 days are 8M rows (about 6 GB of values and quality at 770 bytes a row) decoded
    in the database, and 96 × days result rows per utility come back, whatever the number of
    meters. It reaches the rows through the meters of the utility and the (meter_id, day) primary
    key; with meters_meterday partitioned by day (docs/storage.md, Growth) only the days' partitions
    are read. Seconds at that size, so the dashboard calls it once per page; the embedded SQLite
    default (demo sizes) sums the rows in Python, as it has no get_byte.
    """
    totals: dict[int, dict[tuple[date, int], SlotTotal]] = {pk: {} for pk in utility_ids}
    if not utility_ids:
        return totals
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_SLOT_SUMS_SQL, [list(utility_ids), first, last])
            for utility_id, day, slot, wh, present in cursor.fetchall():
                if present:
                    totals[utility_id][(day, slot)] = SlotTotal(int(wh), present)
        return totals
    rows = MeterDay.objects.filter(
        meter__utility_id__in=utility_ids, day__gte=first, day__lte=last
    ).values_list("meter__utility_id", "day", "values", "quality")
    sums: dict[tuple[int, date], tuple[list[int], list[int]]] = {}
    for utility_id, day, raw_values, raw_quality in rows.iterator(chunk_size=2000):
        wh, present = sums.setdefault((utility_id, day), ([0] * 96, [0] * 96))
        values = values_unpack(raw_values)
        for slot, quality in enumerate(bytes(raw_quality)):
            if quality in PRESENT:
                wh[slot] += values[slot]
                present[slot] += 1
    for (utility_id, day), (wh, present) in sums.items():
        for slot in range(96):
            if present[slot]:
                totals[utility_id][(day, slot)] = SlotTotal(wh[slot], present[slot])
    return totals
