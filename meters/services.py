"""Writes for meters: ingesting readings from head-ends, service tokens."""

from __future__ import annotations

import secrets
from array import array
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Utility
from core.errors import DomainError
from meters.ingest import MeterInfo, Parsed, Rejection, parse_blocks, parse_readings
from meters.models import (
    IngestBatch,
    Meter,
    MeterDay,
    ReadingCorrection,
    ServiceToken,
    token_digest,
)
from meters.partitions import retention_start
from meters.storage import (
    EMPTY_QUALITY,
    EMPTY_VALUES,
    Quality,
    slot_start,
    values_pack,
    values_unpack,
)

SERIAL_MAX = Meter._meta.get_field("serial").max_length


@dataclass
class IngestResult:
    batch_id: int
    readings: int
    stored: int = 0
    corrected: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.stored + self.corrected + self.unchanged


def service_token_create(*, utility: Utility, name: str) -> tuple[ServiceToken, str]:
    """A new head-end token. The raw value is returned once and never stored."""
    raw = "hes_" + secrets.token_urlsafe(32)
    token = ServiceToken.objects.create(
        utility=utility, name=name, digest=token_digest(raw), prefix=raw[:10]
    )
    return token, raw


def meters_lookup(*, utility: Utility, serials: set[str]) -> dict[str, MeterInfo]:
    rows = Meter.objects.filter(utility=utility, serial__in=serials).values_list(
        "serial", "id", "rated_capacity_kw"
    )
    return {serial: MeterInfo(id=pk, max_wh=int(capacity * 250)) for serial, pk, capacity in rows}


def readings_ingest(
    *,
    utility: Utility,
    readings: list | None = None,
    blocks: list | None = None,
    source: str,
    token: ServiceToken | None = None,
    external_id: str = "",
    now: datetime | None = None,
) -> IngestResult:
    """Validate a head-end batch and store its good readings.

    1. Look up the batch's meters in one query; check every reading (meter, boundary, future,
       sign, capacity, quality, duplicates) and keep a report of the refused ones.
    2. Merge the good ones into their MeterDay rows under row locks (_store): a new interval is
       stored, an identical one is left alone (so a batch sent twice stores nothing twice), a
       different one replaces the old value and is written to the audit trail.
    3. Record the batch and each meter's newest reading and last contact.
    """
    now = now or timezone.now()
    if "\x00" in external_id:
        raise DomainError.for_field(
            "batch_id", "Text may not contain the NUL character.", code="invalid_character"
        )
    serials: set[str] = set()
    for item in blocks or ():
        if isinstance(item, dict) and isinstance(item.get("meter"), str):
            serials.add(item["meter"])
    for _, serial, *_ in readings or ():
        if isinstance(serial, str):
            serials.add(serial)
    # No meter has a serial longer than the column or holding NUL (which PostgreSQL refuses even
    # in a comparison): such a reading is refused as an unknown meter, as any unknown serial is.
    serials = {s for s in serials if len(s) <= SERIAL_MAX and "\x00" not in s}
    meters = meters_lookup(utility=utility, serials=serials)
    parsed = Parsed()
    kept_from = (
        retention_start(months=utility.reading_retention_months, today=now.date())
        if utility.reading_retention_months is not None
        else None
    )
    if blocks:
        parsed = parse_blocks(enumerate(blocks), meters, now, kept_from=kept_from)
    if readings:
        parse_readings(readings, meters, now, parsed, kept_from=kept_from)

    batch = IngestBatch(
        utility=utility, token=token, source=source, external_id=external_id[:100], received_at=now
    )
    result = IngestResult(
        batch_id=0, readings=parsed.readings, rejected=parsed.rejected, rejections=parsed.rejections
    )
    with transaction.atomic():
        batch.save()
        result.batch_id = batch.pk
        if parsed.segments:
            _store(parsed, batch, result, now)
        batch.readings, batch.rejected = result.readings, result.rejected
        batch.stored, batch.corrected, batch.unchanged = (
            result.stored,
            result.corrected,
            result.unchanged,
        )
        batch.save(update_fields=["readings", "rejected", "stored", "corrected", "unchanged"])
    return result


@dataclass
class _Merged:
    """One MeterDay row after a batch's segments are merged into it, and what the merge counted."""

    values: bytes
    quality: bytes
    dirty: bool
    stored: int
    corrected: int
    unchanged: int
    corrections: list[ReadingCorrection]


def _merge(
    meter_id: int,
    day,
    segments: list,
    old: tuple[bytes, bytes] | None,
    batch: IngestBatch,
    now: datetime,
) -> _Merged:
    """Merge a batch's segments for one row into its stored content (None: no row yet). A new
    interval is stored, an identical one left alone, a different one replaces the old value and
    is recorded as a correction."""
    values = values_unpack(old[0]) if old else array("i", bytes(len(EMPTY_VALUES)))
    quality = bytearray(old[1]) if old else bytearray(EMPTY_QUALITY)
    dirty, stored, corrected, unchanged, corrections = False, 0, 0, 0, []
    for seg in segments:
        end = seg.slot + len(seg.values)
        if not any(quality[seg.slot : end]):  # all new: the common case, done by slices
            values[seg.slot : end] = seg.values
            quality[seg.slot : end] = seg.quality
            stored += len(seg.values)
            dirty = True
        elif values[seg.slot : end] == seg.values and quality[seg.slot : end] == seg.quality:
            unchanged += len(seg.values)
        else:
            for offset, (wh, q) in enumerate(zip(seg.values, seg.quality, strict=True)):
                slot = seg.slot + offset
                if quality[slot] == Quality.ABSENT:
                    stored += 1
                elif quality[slot] == q and values[slot] == wh:
                    unchanged += 1
                    continue
                else:
                    corrected += 1
                    corrections.append(
                        ReadingCorrection(
                            meter_id=meter_id,
                            interval_start=slot_start(day, slot),
                            old_wh=None if quality[slot] == Quality.MISSING else values[slot],
                            old_quality=Quality(quality[slot]).label,
                            new_wh=None if q == Quality.MISSING else wh,
                            new_quality=Quality(q).label,
                            batch=batch,
                            corrected_at=now,
                        )
                    )
                values[slot], quality[slot] = wh, q
                dirty = True
    return _Merged(
        values_pack(values), bytes(quality), dirty, stored, corrected, unchanged, corrections
    )


def _store(parsed: Parsed, batch: IngestBatch, result: IngestResult, now: datetime) -> None:
    """Merge the batch's segments into their MeterDay rows, in two steps that take no lock a
    batch could run out of (one PostgreSQL advisory lock per meter exhausted the shared lock table
    past about 12,000 meters in one transaction): row locks live in the rows themselves.

    1. Rows the batch creates: inserted in (meter, day) order with ON CONFLICT DO NOTHING. A
       concurrent batch inserting the same row makes this one wait for it to end, then skip it.
    2. Every other row: locked with SELECT … FOR UPDATE in (meter, day) order, merged, updated.
    Both steps go in one global order, so two batches for the same meters wait for each other
    and never deadlock, and neither can lose the other's slots (docs/storage.md).
    """
    by_row: dict[tuple[int, object], list] = defaultdict(list)
    for segment in parsed.segments:
        by_row[(segment.meter_id, segment.day)].append(segment)
    keys = sorted(by_row)
    newest: dict[int, datetime] = {}
    for (meter_id, day), segments in by_row.items():
        last = max(slot_start(day, seg.slot + len(seg.values) - 1) for seg in segments)
        if last > newest.get(meter_id, datetime.min.replace(tzinfo=UTC)):
            newest[meter_id] = last
    merged: dict[tuple[int, object], _Merged] = {}
    existing = _existing_keys(keys)
    fresh = {
        key: _merge(*key, by_row[key], None, batch, now) for key in keys if key not in existing
    }
    inserted = _insert_rows(fresh, now)
    merged.update({key: fresh[key] for key in inserted})
    rest = [key for key in keys if key not in inserted]
    rows = _fetch_rows(rest, lock=True)
    changed = {}
    for key in rest:
        merged[key] = _merge(*key, by_row[key], rows.get(key), batch, now)
        if merged[key].dirty:
            changed[key] = merged[key]
    _update_rows(changed, now, rows)
    corrections = []
    for row in merged.values():
        result.stored += row.stored
        result.corrected += row.corrected
        result.unchanged += row.unchanged
        corrections.extend(row.corrections)
    ReadingCorrection.objects.bulk_create(corrections, batch_size=2000)
    _touch_meters(newest, now)


def _existing_keys(keys: list[tuple[int, object]]) -> set[tuple[int, object]]:
    """Of these (meter, day) keys, those with a row already (read without locking)."""
    if not keys:
        return set()
    if connection.vendor == "postgresql":
        found = set()
        with connection.cursor() as cursor:
            for chunk in _chunks(keys, 50_000):
                cursor.execute(
                    "SELECT d.meter_id, d.day FROM meters_meterday d "
                    "JOIN unnest(%s::bigint[], %s::date[]) AS k(meter_id, day) "
                    "ON d.meter_id = k.meter_id AND d.day = k.day",
                    [[k[0] for k in chunk], [k[1] for k in chunk]],
                )
                found.update(cursor.fetchall())
        return found
    return set(_fetch_rows(keys))


def _row_arrays(rows: dict[tuple[int, object], _Merged], keys: list) -> list[list]:
    """Columns of these rows as arrays, for one unnest(…) on PostgreSQL."""
    return [
        [k[0] for k in keys],
        [k[1] for k in keys],
        [rows[k].values for k in keys],
        [rows[k].quality for k in keys],
    ]


def _insert_rows(rows: dict[tuple[int, object], _Merged], now: datetime) -> set:
    """Insert rows the batch creates, in key order, skipping any a concurrent batch made first;
    the keys actually inserted."""
    if not rows:
        return set()
    keys = sorted(rows)
    if connection.vendor == "postgresql":
        inserted = set()
        with connection.cursor() as cursor:
            for chunk in _chunks(keys, 5000):
                cursor.execute(
                    # Stamped by the database as the statement starts: after its transaction
                    # began, which charging relies on (billing.charging._horizon).
                    "INSERT INTO meters_meterday (meter_id, day, values, quality, updated_at) "
                    "SELECT m, d, v, q, statement_timestamp() FROM unnest(%s::bigint[], "
                    "%s::date[], %s::bytea[], %s::bytea[]) WITH ORDINALITY AS r(m, d, v, q, n) "
                    "ORDER BY n ON CONFLICT (meter_id, day) DO NOTHING RETURNING meter_id, day",
                    _row_arrays(rows, chunk),
                )
                inserted.update(cursor.fetchall())
        return inserted
    # SQLite: write transactions run one at a time, so nothing was inserted meanwhile.
    stamp = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.executemany(
            'INSERT INTO meters_meterday (meter_id, day, "values", quality, updated_at) '
            "VALUES (%s, %s, %s, %s, %s)",
            [(k[0], k[1], rows[k].values, rows[k].quality, stamp) for k in keys],
        )
    return set(keys)


_READ_ROWS_SQL = (
    "SELECT d.meter_id, d.day, d.values, d.quality FROM meters_meterday d "
    "JOIN unnest(%s::bigint[], %s::date[]) AS k(meter_id, day) "
    "ON d.meter_id = k.meter_id AND d.day = k.day"
)
_LOCK_ROWS_SQL = _READ_ROWS_SQL + " ORDER BY d.meter_id, d.day FOR UPDATE OF d"


def _fetch_rows(
    keys: list[tuple[int, object]], *, lock: bool = False
) -> dict[tuple[int, object], tuple[bytes, bytes]]:
    """The stored content of these rows; `lock`: locked FOR UPDATE in (meter, day) order (on
    PostgreSQL; SQLite's write transactions already run one at a time)."""
    if not keys:
        return {}
    out = {}
    if connection.vendor == "postgresql":
        keys = sorted(keys)
        with connection.cursor() as cursor:
            for chunk in _chunks(keys, 50_000):
                cursor.execute(
                    _LOCK_ROWS_SQL if lock else _READ_ROWS_SQL,
                    [[k[0] for k in chunk], [k[1] for k in chunk]],
                )
                for meter_id, day, values, quality in cursor:
                    out[(meter_id, day)] = (bytes(values), bytes(quality))
        return out
    wanted = set(keys)
    rows = MeterDay.objects.filter(
        meter_id__in={k[0] for k in keys}, day__in={k[1] for k in keys}
    ).values_list("meter_id", "day", "values", "quality", "updated_at")
    for meter_id, day, values, quality, updated_at in rows:
        if (meter_id, day) in wanted:
            # SQLite's rows carry their change time too: _update_rows moves it forward in Python.
            out[(meter_id, day)] = (bytes(values), bytes(quality), updated_at)
    return out


def _update_rows(
    rows: dict[tuple[int, object], _Merged],
    now: datetime,
    stored: dict[tuple[int, object], tuple] | None = None,
) -> None:
    """Write merged rows back (already locked by _fetch_rows). A row's change time only moves
    forward: a batch stamped before another (its request began first) that commits after it
    writes a moment just past the row's, never an earlier one. Charging finds and diffs a day by
    that time (billing.charging), so an earlier one would hide the change from it for good."""
    if not rows:
        return
    keys = sorted(rows)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for chunk in _chunks(keys, 5000):
                # The statement's start, not the request's: after the transaction began, as
                # charging relies on (it reads only rows stamped before the oldest open
                # transaction began: billing.charging._horizon).
                cursor.execute(
                    "UPDATE meters_meterday d SET values = r.v, quality = r.q, updated_at = "
                    "GREATEST(statement_timestamp(), d.updated_at + interval '1 microsecond') "
                    "FROM unnest(%s::bigint[], %s::date[], %s::bytea[], %s::bytea[]) "
                    "AS r(m, d, v, q) WHERE d.meter_id = r.m AND d.day = r.d",
                    _row_arrays(rows, chunk),
                )
        return

    # SQLite: one prepared UPDATE run for every row (bulk_update's CASE per row grows badly).
    def stamp(key) -> str:
        before = (stored or {}).get(key)
        moment = now if before is None else max(now, before[2] + timedelta(microseconds=1))
        return connection.ops.adapt_datetimefield_value(moment)

    with connection.cursor() as cursor:
        cursor.executemany(
            'UPDATE meters_meterday SET "values" = %s, quality = %s, updated_at = %s '
            "WHERE meter_id = %s AND day = %s",
            [(rows[k].values, rows[k].quality, stamp(k), k[0], k[1]) for k in keys],
        )


# A meter's row records its newest reading and last contact to within this: a head-end pushing
# every 15 minutes rewrites the row (and its meter_last_reading index entry) every other push,
# not every push. Communication health (ok within an hour) and "not reporting" (a day) read
# these; the consumption screens read the readings themselves.
TOUCH_EVERY = timedelta(minutes=30)


def _touch_meters(newest: dict[int, datetime], now: datetime) -> None:
    """Record each meter's newest interval and last contact, where either has moved on by
    TOUCH_EVERY (or was never recorded); late data never moves the newest interval back."""
    if not newest:
        return
    stale = now - TOUCH_EVERY
    if connection.vendor == "postgresql":
        # The rows are locked in id order first: two batches over the same meters but different
        # days share no meter-day row, so only this order keeps their updates from deadlocking.
        with connection.cursor() as cursor:
            cursor.execute(
                "WITH n AS (SELECT * FROM unnest(%s::bigint[], %s::timestamptz[]) AS n(id, ts)), "
                "due AS MATERIALIZED (SELECT m.id, n.ts FROM meters_meter m JOIN n ON m.id = n.id "
                "WHERE m.last_communication_at IS NULL OR m.last_communication_at <= %s "
                "OR m.last_reading_at IS NULL OR m.last_reading_at <= n.ts - %s "
                "ORDER BY m.id FOR NO KEY UPDATE OF m) "
                "UPDATE meters_meter m SET last_communication_at = %s, "
                "last_reading_at = GREATEST(m.last_reading_at, due.ts) FROM due WHERE m.id = due.id",
                [list(newest), list(newest.values()), stale, TOUCH_EVERY, now],
            )
        return
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE meters_meter SET last_communication_at = %s, last_reading_at = CASE "
            "WHEN last_reading_at IS NULL OR last_reading_at < %s THEN %s "
            "ELSE last_reading_at END WHERE id = %s AND (last_communication_at IS NULL "
            "OR last_communication_at <= %s OR last_reading_at IS NULL OR last_reading_at <= %s)",
            [
                (adapt(now), adapt(ts), adapt(ts), pk, adapt(stale), adapt(ts - TOUCH_EVERY))
                for pk, ts in newest.items()
            ],
        )


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]
