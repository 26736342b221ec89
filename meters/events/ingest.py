"""Storing a checked batch: new events once, restorations against the stored failures, the
supply periods they change and the receivers of meter_events_stored, in one transaction."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models.base import ModelState
from django.utils import timezone

from accounts.models import Utility
from meters.events import sql
from meters.events.codes import MAX_REJECTIONS_LISTED, POWER_OFF, POWER_ON
from meters.events.periods import (
    PowerEvent,
    Timeline,
    event_order,
)
from meters.events.rows import MESSAGES, EventRejection, Row, check, meters_lookup
from meters.models import IngestBatch, MeterEvent, ServiceToken
from meters.signals import meter_events_stored


@dataclass
class EventsResult:
    batch_id: int
    events: int
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[EventRejection] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.stored + self.duplicates


# ---- Ingest ---------------------------------------------------------------------------------------


def events_ingest(
    *,
    utility: Utility,
    events: list,
    token: ServiceToken | None = None,
    external_id: str = "",
    now: datetime | None = None,
) -> EventsResult:
    """Validate a head-end batch of meter events and store the new ones.

    1. Look up the batch's meters in bulk; check every row (meter, kind or code, time, id,
       off_since, duplicates within the batch).
    2. In one transaction: insert the rows (a row stored before is a duplicate and changes
       nothing); a power_on without off_since is stored only when the meter's last power event
       before it, stored or in this batch, is a power_off.
    3. Record the batch (with `supply_pending` when it brought failures or restorations: the
       detector's run folds them into supply periods, supply_periods_fold) and send
       meter_events_stored with the new events.
    """
    now = now or timezone.now()
    serials = {
        e["meter"] for e in events if isinstance(e, dict) and isinstance(e.get("meter"), str)
    }
    meters = meters_lookup(utility=utility, serials=serials)
    checked = check(events, meters, now)
    result = EventsResult(batch_id=0, events=len(events))
    rejections = checked.rejections
    batch = IngestBatch(
        utility=utility,
        token=token,
        source="events",
        external_id=external_id[:100],
        received_at=now,
    )
    with transaction.atomic():
        batch.save()
        result.batch_id = batch.pk
        new_rows: list[Row] = []
        if checked.rows:
            new_rows = _store(checked.rows, utility.pk, batch.pk, now, rejections)
        result.stored = len(new_rows)
        result.duplicates = len(checked.rows) - result.stored - _restore_refusals(rejections)
        result.rejected = len(rejections)
        batch.readings, batch.stored = result.events, result.stored
        batch.unchanged, batch.rejected = result.duplicates, result.rejected
        batch.supply_pending = any(r.kind in MeterEvent.SUPPLY_KINDS for r in new_rows)
        batch.save(update_fields=["readings", "stored", "unchanged", "rejected", "supply_pending"])
        if new_rows:
            meter_events_stored.send(
                sender=MeterEvent,
                utility=utility,
                events=[_instance(row, utility.pk, batch.pk, now) for row in new_rows],
            )
    rejections.sort(key=lambda r: r.index)
    result.rejections = rejections[:MAX_REJECTIONS_LISTED]
    return result


def _restore_refusals(rejections: list[EventRejection]) -> int:
    return sum(1 for r in rejections if r.reason == "restore_without_failure")


def _store(
    rows: list[Row], utility_id: int, batch_id: int, now: datetime, rejections: list
) -> list[Row]:
    """Insert the rows and check restorations against the stored events. Returns the rows stored
    for the first time, with their ids.

    No lock is taken: ON CONFLICT makes two batches with the same event store it once, and the
    supply periods are folded from the stored events after commit, by one run per utility at a
    time (supply_periods_fold), so batches of any size ingest side by side. A restoration whose
    failure is in a batch committing at the same moment may be refused; the head-end sends it
    again (a refused row is listed with its reason)."""
    rows.sort(key=lambda r: (r.meter_id, r.occurred_at, r.kind))
    # A power_on without off_since needs the meter's failure before it: decided below, once the
    # batch's own failures are stored beside the older ones.
    restores = [r for r in rows if r.kind == POWER_ON and r.off_since is None]
    direct = [r for r in rows if not (r.kind == POWER_ON and r.off_since is None)]
    _insert(direct, utility_id, batch_id, now)

    restores = _without_stored_ids(restores)
    accepted: list[Row] = []
    if restores:
        timelines = _power_events_before(restores)
        by_meter: dict[int, list[Row]] = defaultdict(list)
        for row in restores:
            by_meter[row.meter_id].append(row)
        for meter_id, candidates in by_meter.items():
            ok, refused = _restores_decide(timelines[meter_id], candidates)
            accepted.extend(ok)
            for row in refused:
                rejections.append(
                    EventRejection(
                        row.index,
                        row.serial[:40],
                        row.sent_kind[:40],
                        row.sent_at[:40],
                        "restore_without_failure",
                        MESSAGES["restore_without_failure"],
                    )
                )
        _insert(accepted, utility_id, batch_id, now)
    new_rows = [r for r in direct + accepted if r.id is not None]
    new_rows.sort(key=lambda r: r.index)
    return new_rows


# How far back a restoration without off_since looks for its failure: a meter off longer than
# this sends its own failure time (off_since) with the restoration.
RESTORE_LOOKBACK = timedelta(days=35)


def _power_events_before(restores: list[Row]) -> dict[int, Timeline]:
    """Per meter of `restores`, its stored failures and restorations from RESTORE_LOOKBACK
    before its first restoration up to its last (the batch's own failures are stored already):
    what decides whether each restoration has a failure before it."""
    spans: dict[int, list[datetime]] = {}
    for row in restores:
        span = spans.setdefault(row.meter_id, [row.occurred_at, row.occurred_at])
        span[0], span[1] = min(span[0], row.occurred_at), max(span[1], row.occurred_at)
    timelines = {m: Timeline(start=span[0] - RESTORE_LOOKBACK) for m, span in spans.items()}
    meter_ids = list(spans)
    for chunk in sql.chunks(meter_ids, sql.CHUNK):
        low = min(spans[m][0] for m in chunk) - RESTORE_LOOKBACK
        high = max(spans[m][1] for m in chunk)
        for meter_id, pk, kind, at in (
            MeterEvent.objects.filter(
                meter_id__in=chunk,
                kind__in=MeterEvent.SUPPLY_KINDS,
                occurred_at__gte=low,
                occurred_at__lte=high,
            )
            .order_by("meter_id", "occurred_at")
            .values_list("meter_id", "pk", "kind", "occurred_at")
        ):
            if spans[meter_id][0] - RESTORE_LOOKBACK <= at <= spans[meter_id][1]:
                timelines[meter_id].events.append(PowerEvent(pk, kind, at, None))
    return timelines


def _without_stored_ids(rows: list[Row]) -> list[Row]:
    """Restorations whose event id is stored already are duplicates, whatever their time."""
    with_ids = [r for r in rows if r.external_id]
    if not with_ids:
        return rows
    stored: set[tuple[int, str]] = set()
    for chunk in sql.chunks(with_ids, sql.CHUNK):
        stored.update(
            MeterEvent.objects.filter(
                meter_id__in={r.meter_id for r in chunk},
                external_id__in={r.external_id for r in chunk},
            ).values_list("meter_id", "external_id")
        )
    return [r for r in rows if (r.meter_id, r.external_id) not in stored]


def _restores_decide(timeline: Timeline, candidates: list[Row]) -> tuple[list[Row], list[Row]]:
    """Walk the meter's power events in time order: a restoration is kept when the meter's last
    power event before it is a failure; one stored already is a duplicate (neither)."""
    stored = {(e.kind, e.at) for e in timeline.events}
    merged: list[tuple[tuple, PowerEvent | Row]] = [
        (event_order(e.kind, e.at, 0), e) for e in timeline.events
    ]
    merged.extend((event_order(POWER_ON, r.occurred_at, 1), r) for r in candidates)
    merged.sort(key=lambda item: item[0])
    off = False
    accepted: list[Row] = []
    refused: list[Row] = []
    for _, item in merged:
        if isinstance(item, PowerEvent):
            off = item.kind == POWER_OFF
        elif (POWER_ON, item.occurred_at) in stored:
            continue
        elif off:
            accepted.append(item)
            off = False
        else:
            refused.append(item)
    return accepted, refused


def _insert(rows: list[Row], utility_id: int, batch_id: int, now: datetime) -> None:
    """ON CONFLICT DO NOTHING: a row already stored (same meter, kind and time, or same meter and
    event id) is left as it was. Sets `id` on the rows stored now."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for chunk in sql.chunks(rows, sql.CHUNK):
                cursor.execute(
                    "INSERT INTO meters_meterevent (utility_id, meter_id, kind, occurred_at, "
                    "received_at, external_id, code, details, batch_id) "
                    "SELECT %s, m, k, t, %s, x, c, d::jsonb, %s FROM unnest(%s::bigint[], "
                    "%s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::text[]) "
                    "AS r(m, k, t, x, c, d) ON CONFLICT DO NOTHING "
                    "RETURNING id, meter_id, kind, (extract(epoch FROM occurred_at) * 1000000)::bigint",
                    [
                        utility_id,
                        now,
                        batch_id,
                        sql.array(r.meter_id for r in chunk),
                        sql.array(r.kind for r in chunk),
                        sql.array(r.occurred_at.isoformat() for r in chunk),
                        sql.array(r.external_id for r in chunk),
                        sql.array(r.code for r in chunk),
                        sql.array(r.details_json for r in chunk),
                    ],
                )
                ids = {(m, k, t): pk for pk, m, k, t in cursor.fetchall()}
                for row in chunk:
                    row.id = ids.get((row.meter_id, row.kind, sql.micros(row.occurred_at)))
        return
    # SQLite: INSERT OR IGNORE, row by row at C speed (model instances for 100,000 rows take
    # seconds), then the batch's own rows are the new ones: it tells nothing back.
    adapt = connection.ops.adapt_datetimefield_value
    received = adapt(now)
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT OR IGNORE INTO meters_meterevent (utility_id, meter_id, kind, occurred_at, "
            "received_at, external_id, code, details, batch_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    utility_id,
                    r.meter_id,
                    r.kind,
                    adapt(r.occurred_at),
                    received,
                    r.external_id,
                    r.code,
                    r.details_json,
                    batch_id,
                )
                for r in rows
            ],
        )
    ids = {
        (m, k, t): pk
        for pk, m, k, t in MeterEvent.objects.filter(
            batch_id=batch_id, meter_id__in={r.meter_id for r in rows}
        ).values_list("id", "meter_id", "kind", "occurred_at")
    }
    for row in rows:
        row.id = ids.get((row.meter_id, row.kind, row.occurred_at))


def _instance(row: Row, utility_id: int, batch_id: int, now: datetime) -> MeterEvent:
    """A stored event as a model instance, built as Model.from_db would but without running
    __init__ over every field: a storm's 100,000 events are sent to the receivers at once."""
    event = MeterEvent.__new__(MeterEvent)
    event.__dict__.update(
        id=row.id,
        utility_id=utility_id,
        meter_id=row.meter_id,
        kind=row.kind,
        occurred_at=row.occurred_at,
        received_at=now,
        external_id=row.external_id,
        code=row.code,
        details=row.details,
        batch_id=batch_id,
    )
    event._state = ModelState()
    event._state.adding, event._state.db = False, "default"
    return event
