"""Each meter's supply periods (off from … to …) rebuilt from its power events, in time order
whatever order they arrived in."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import reduce
from operator import or_

from django.db import connection, transaction
from django.db.models import Max, Q
from django.db.models.fields.json import KT
from django.utils import timezone

from meters.events import sql
from meters.events.codes import POWER_OFF
from meters.models import IngestBatch, MeterEvent, SupplyPeriod

# ---- Supply periods -------------------------------------------------------------------------------


def event_order(kind: str, at: datetime, tiebreak: int) -> tuple:
    # At the same instant a failure comes before a restoration: off and on at once is no period.
    return (at, 0 if kind == POWER_OFF else 1, tiebreak)


@dataclass(slots=True)
class PowerEvent:
    id: int
    kind: str
    at: datetime
    off_since: datetime | None


@dataclass(slots=True)
class Period:
    off_at: datetime
    on_at: datetime | None
    off_event_id: int | None
    on_event_id: int | None
    id: int | None = None

    def same(self, other: Period) -> bool:
        return (self.off_at, self.on_at, self.off_event_id, self.on_event_id) == (
            other.off_at,
            other.on_at,
            other.off_event_id,
            other.on_event_id,
        )

    def overlaps(self, other: Period) -> bool:
        return (other.on_at is None or self.off_at < other.on_at) and (
            self.on_at is None or other.off_at < self.on_at
        )


@dataclass
class Timeline:
    """A meter's power events and supply periods from `start` on: the period containing or
    preceding its earliest new event, or that event when no period precedes it. Before `start`
    the meter was on (a failure while on always opens a period) and nothing changes."""

    start: datetime
    utility_id: int | None = None
    events: list[PowerEvent] = field(default_factory=list)
    periods: list[Period] = field(default_factory=list)


def supply_periods_rebuild(*, earliest: dict[int, datetime], now: datetime | None = None) -> int:
    """Rebuild the supply periods of the meters in `earliest` (meter id → its earliest new or
    changed power event, or that event's off_since) from their power events. Returns how many
    periods were inserted or changed; those get state "new" for the outage detector. The caller
    makes sure no other rebuild of the same meters runs at once (supply_periods_fold runs one per
    utility at a time)."""
    now = now or timezone.now()
    with transaction.atomic():
        return periods_write(timelines_load(earliest), now)


FOLD_BATCHES = 50


def _earliest(earliest: dict[int, datetime], meter_id: int, at: datetime) -> None:
    if meter_id not in earliest or at < earliest[meter_id]:
        earliest[meter_id] = at


def supply_periods_fold(*, utility_id: int, now: datetime | None = None) -> int:
    """Fold the failures and restorations of the utility's batches still `supply_pending` into
    the meters' supply periods, oldest batch first, and clear the mark. Returns how many periods
    were inserted or changed.

    The outage detector calls it at the start of each run, under its per-utility lock: one fold
    of a utility at a time, so two batches of the same meter never rebuild it side by side, and
    no per-meter lock is needed (a storm's 100,000 meters would not fit PostgreSQL's lock table).
    A batch is found by the ingestbatch_supply_pending partial index and its power events by
    meterevent_supply_batch: the cost follows the batch, not the history."""
    now = now or timezone.now()
    changed = 0
    with transaction.atomic():
        while True:
            batch_ids = list(
                IngestBatch.objects.filter(utility_id=utility_id, supply_pending=True)
                .order_by("pk")
                .values_list("pk", flat=True)[:FOLD_BATCHES]
            )
            if not batch_ids:
                return changed
            earliest: dict[int, datetime] = {}
            for meter_id, at, details in MeterEvent.objects.filter(
                batch_id__in=batch_ids, kind__in=MeterEvent.SUPPLY_KINDS
            ).values_list("meter_id", "occurred_at", "details"):
                _earliest(earliest, meter_id, _off_since((details or {}).get("off_since")) or at)
            if earliest:
                changed += periods_write(timelines_load(earliest), now)
            IngestBatch.objects.filter(pk__in=batch_ids).update(supply_pending=False)


def _pair(timeline: Timeline) -> list[Period]:
    """Failure and restoration paired in time order: a failure while on opens a period (more while
    off are ignored), the first restoration closes it, a restoration with off_since while on makes
    the period (off_since, restoration), never reaching back before the last restoration."""
    periods: list[Period] = []
    open_period: Period | None = None
    last_on = timeline.start
    for event in sorted(timeline.events, key=lambda e: event_order(e.kind, e.at, e.id)):
        if event.kind == POWER_OFF:
            if open_period is None:
                open_period = Period(event.at, None, event.id, None)
        elif open_period is not None:
            if event.at > open_period.off_at:
                open_period.on_at, open_period.on_event_id = event.at, event.id
                periods.append(open_period)
            open_period, last_on = None, event.at
        else:
            if event.off_since is not None:
                off_at = max(event.off_since, last_on)
                if off_at < event.at:
                    periods.append(Period(off_at, event.at, None, event.id))
            last_on = event.at
    if open_period is not None:
        periods.append(open_period)
    return periods


def periods_write(timelines: dict[int, Timeline], now: datetime) -> int:
    """Diff each meter's paired periods with its stored ones: a stored period overlapping a new
    one keeps its row (and the outage links to it) and is updated if it differs; the rest are
    inserted or deleted. Unchanged periods are not written."""
    deletes: list[int] = []
    updates: list[list[tuple[int, Period]]] = []  # rounds: each meter's k-th update in round k
    inserts: list[tuple[int, int, Period]] = []
    for meter_id, timeline in timelines.items():
        old = sorted(timeline.periods, key=lambda p: p.off_at)
        matched: set[int] = set()
        meter_updates: list[Period] = []
        for period in _pair(timeline):
            match = next(
                (p for p in old if p.id not in matched and p.overlaps(period)), None
            ) or next((p for p in old if p.id not in matched and p.off_at == period.off_at), None)
            if match is None:
                inserts.append((meter_id, timeline.utility_id, period))
                continue
            matched.add(match.id)
            if not match.same(period):
                period.id = match.id
                meter_updates.append(period)
        deletes.extend(p.id for p in old if p.id not in matched)
        for k, period in enumerate(meter_updates):
            if k == len(updates):
                updates.append([])
            updates[k].append((meter_id, period))
    if deletes:
        for chunk in sql.chunks(deletes, sql.CHUNK):
            SupplyPeriod.objects.filter(pk__in=chunk).delete()
    for round_ in updates:
        _periods_update([p for _, p in round_], now)
    _periods_insert(inserts, now)
    return sum(len(r) for r in updates) + len(inserts)


def _periods_update(periods: list[Period], now: datetime) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for chunk in sql.chunks(periods, sql.CHUNK):
                cursor.execute(
                    "UPDATE meters_supplyperiod p SET off_at = u.off_at, on_at = u.on_at, "
                    "off_event_id = u.off_event, on_event_id = u.on_event, state = 'new', "
                    "updated_at = %s FROM unnest(%s::bigint[], %s::timestamptz[], "
                    "%s::timestamptz[], %s::bigint[], %s::bigint[]) "
                    "AS u(id, off_at, on_at, off_event, on_event) WHERE p.id = u.id",
                    [
                        now,
                        sql.array(p.id for p in chunk),
                        sql.array(sql.isoformats(p.off_at for p in chunk)),
                        sql.array(sql.isoformats(p.on_at for p in chunk)),
                        sql.array(p.off_event_id for p in chunk),
                        sql.array(p.on_event_id for p in chunk),
                    ],
                )
        return
    SupplyPeriod.objects.bulk_update(
        [
            SupplyPeriod(
                id=p.id,
                off_at=p.off_at,
                on_at=p.on_at,
                off_event_id=p.off_event_id,
                on_event_id=p.on_event_id,
                state=SupplyPeriod.State.NEW,
                updated_at=now,
            )
            for p in periods
        ],
        ["off_at", "on_at", "off_event", "on_event", "state", "updated_at"],
        batch_size=500,
    )


def _periods_insert(inserts: list[tuple[int, int, Period]], now: datetime) -> None:
    if not inserts:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for chunk in sql.chunks(inserts, sql.CHUNK):
                cursor.execute(
                    "INSERT INTO meters_supplyperiod (utility_id, meter_id, off_at, on_at, "
                    "off_event_id, on_event_id, state, updated_at) "
                    "SELECT u, m, f, o, fe, oe, 'new', %s FROM unnest(%s::bigint[], %s::bigint[], "
                    "%s::timestamptz[], %s::timestamptz[], %s::bigint[], %s::bigint[]) "
                    "AS r(u, m, f, o, fe, oe)",
                    [
                        now,
                        sql.array(u for _, u, _ in chunk),
                        sql.array(m for m, _, _ in chunk),
                        sql.array(sql.isoformats(p.off_at for _, _, p in chunk)),
                        sql.array(sql.isoformats(p.on_at for _, _, p in chunk)),
                        sql.array(p.off_event_id for _, _, p in chunk),
                        sql.array(p.on_event_id for _, _, p in chunk),
                    ],
                )
        return
    SupplyPeriod.objects.bulk_create(
        [
            SupplyPeriod(
                utility_id=utility_id,
                meter_id=meter_id,
                off_at=p.off_at,
                on_at=p.on_at,
                off_event_id=p.off_event_id,
                on_event_id=p.on_event_id,
                state=SupplyPeriod.State.NEW,
                updated_at=now,
            )
            for meter_id, utility_id, p in inserts
        ],
        batch_size=500,
    )


def timelines_load(earliest: dict[int, datetime]) -> dict[int, Timeline]:
    """Each meter's anchor, then its power events and periods from there, a chunk of meters per
    query: on PostgreSQL each meter's anchor is one backward step of supply_period_once
    (meter, off_at) and its events a range of meterevent_meter_time, never its whole history."""
    timelines: dict[int, Timeline] = {}
    items = sorted(earliest.items())
    for chunk in sql.chunks(items, sql.CHUNK):
        if connection.vendor == "postgresql":
            timelines.update(_timelines_load_pg(chunk))
        else:
            timelines.update(_timelines_load_orm(chunk))
    return timelines


def _timelines_load_pg(chunk: list[tuple[int, datetime]]) -> dict[int, Timeline]:
    """One statement: each meter's start (its anchor period's off_at, else its earliest time),
    then its power events and periods from there, tagged a, e and p."""
    timelines: dict[int, Timeline] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH k AS (SELECT k.m, COALESCE((SELECT p.off_at FROM meters_supplyperiod p "
            "WHERE p.meter_id = k.m AND p.off_at <= k.t ORDER BY p.off_at DESC LIMIT 1), k.t) AS s "
            "FROM unnest(%s::bigint[], %s::timestamptz[]) AS k(m, t)) "
            "SELECT 'a', k.m, NULL::bigint, NULL, (extract(epoch FROM k.s) * 1000000)::bigint, "
            "NULL::bigint, NULL, NULL::bigint FROM k "
            "UNION ALL SELECT 'e', e.meter_id, e.id, e.kind, "
            "(extract(epoch FROM e.occurred_at) * 1000000)::bigint, NULL, "
            "e.details ->> 'off_since', e.utility_id FROM k "
            "JOIN meters_meterevent e ON e.meter_id = k.m AND e.occurred_at >= k.s "
            "WHERE e.kind IN ('power_off', 'power_on') "
            "UNION ALL SELECT 'p', p.meter_id, p.id, NULL, "
            "(extract(epoch FROM p.off_at) * 1000000)::bigint, "
            "(extract(epoch FROM p.on_at) * 1000000)::bigint, "
            "p.off_event_id::text, p.on_event_id FROM k "
            "JOIN meters_supplyperiod p ON p.meter_id = k.m AND p.off_at >= k.s",
            [sql.array(m for m, _ in chunk), sql.array(sql.isoformats(t for _, t in chunk))],
        )
        rows = cursor.fetchall()
    for tag, meter_id, _, _, at, _, _, _ in rows:
        if tag == "a":
            timelines[meter_id] = Timeline(start=sql.moment(at))
    for tag, meter_id, pk, kind, at, on_at, text, number in rows:
        if tag == "e":
            timeline = timelines[meter_id]
            timeline.utility_id = number
            timeline.events.append(PowerEvent(pk, kind, sql.moment(at), _off_since(text)))
        elif tag == "p":
            off_event = int(text) if text is not None else None
            timelines[meter_id].periods.append(
                Period(sql.moment(at), sql.moment(on_at), off_event, number, pk)
            )
    return timelines


def _timelines_load_orm(chunk: list[tuple[int, datetime]]) -> dict[int, Timeline]:
    # The embedded SQLite default: one grouped query for the anchors, fine at its scale.
    timelines: dict[int, Timeline] = {}
    for part in sql.chunks(chunk, 300):
        anchors = dict(
            SupplyPeriod.objects.filter(
                reduce(or_, (Q(meter_id=m, off_at__lte=t) for m, t in part))
            )
            .values("meter_id")
            .annotate(anchor=Max("off_at"))
            .values_list("meter_id", "anchor")
        )
        for meter_id, at in part:
            timelines[meter_id] = Timeline(start=anchors.get(meter_id) or at)
        since = reduce(or_, (Q(meter_id=m, occurred_at__gte=timelines[m].start) for m, _ in part))
        events = (
            MeterEvent.objects.filter(since, kind__in=MeterEvent.SUPPLY_KINDS)
            .annotate(off_since=KT("details__off_since"))
            .values_list("meter_id", "id", "kind", "occurred_at", "off_since", "utility_id")
        )
        for meter_id, pk, kind, at, off_since, utility_id in events:
            timeline = timelines[meter_id]
            timeline.utility_id = utility_id
            timeline.events.append(PowerEvent(pk, kind, at, _off_since(off_since)))
        since = reduce(or_, (Q(meter_id=m, off_at__gte=timelines[m].start) for m, _ in part))
        for meter_id, pk, off_at, on_at, off_event, on_event in SupplyPeriod.objects.filter(
            since
        ).values_list("meter_id", "id", "off_at", "on_at", "off_event_id", "on_event_id"):
            timelines[meter_id].periods.append(Period(off_at, on_at, off_event, on_event, pk))
    return timelines


def _off_since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
