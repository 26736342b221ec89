"""Writes for meters: ingesting readings from head-ends, service tokens."""

from __future__ import annotations

import secrets
from array import array
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

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
from meters.storage import (
    EMPTY_QUALITY,
    EMPTY_VALUES,
    Quality,
    slot_start,
    values_pack,
    values_unpack,
)

SERIAL_MAX = Meter._meta.get_field("serial").max_length
# Namespace of our PostgreSQL advisory locks on meters (the second key is the meter id).
METER_LOCK_CLASS = 7301


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
    2. Under per-meter locks, merge the good ones into their MeterDay rows: a new interval is
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
    if blocks:
        parsed = parse_blocks(enumerate(blocks), meters, now)
    if readings:
        parse_readings(readings, meters, now, parsed)

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


def _store(parsed: Parsed, batch: IngestBatch, result: IngestResult, now: datetime) -> None:
    by_row: dict[tuple[int, object], list] = defaultdict(list)
    for segment in parsed.segments:
        by_row[(segment.meter_id, segment.day)].append(segment)
    meter_ids = sorted({meter_id for meter_id, _ in by_row})
    _lock_meters(meter_ids)
    existing = _fetch_rows(list(by_row))

    changed: list[tuple[int, object, bytes, bytes]] = []
    corrections: list[ReadingCorrection] = []
    newest: dict[int, datetime] = {}
    for (meter_id, day), segments in by_row.items():
        old = existing.get((meter_id, day))
        values = values_unpack(old[0]) if old else array("i", bytes(len(EMPTY_VALUES)))
        quality = bytearray(old[1]) if old else bytearray(EMPTY_QUALITY)
        dirty = False
        for seg in segments:
            end = seg.slot + len(seg.values)
            if not any(quality[seg.slot : end]):  # all new: the common case, done by slices
                values[seg.slot : end] = seg.values
                quality[seg.slot : end] = seg.quality
                result.stored += len(seg.values)
                dirty = True
            elif values[seg.slot : end] == seg.values and quality[seg.slot : end] == seg.quality:
                result.unchanged += len(seg.values)
            else:
                for offset, (wh, q) in enumerate(zip(seg.values, seg.quality, strict=True)):
                    slot = seg.slot + offset
                    if quality[slot] == Quality.ABSENT:
                        result.stored += 1
                    elif quality[slot] == q and values[slot] == wh:
                        result.unchanged += 1
                        continue
                    else:
                        result.corrected += 1
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
            last = slot_start(day, end - 1)
            if last > newest.get(meter_id, datetime.min.replace(tzinfo=UTC)):
                newest[meter_id] = last
        if dirty:
            changed.append((meter_id, day, values_pack(values), bytes(quality)))
    _upsert_rows(changed, now)
    ReadingCorrection.objects.bulk_create(corrections, batch_size=2000)
    _touch_meters(newest, now)


def _lock_meters(meter_ids: list[int]) -> None:
    """Serialise writers of the same meter: two batches merging into one MeterDay row would
    otherwise each read the old row and the second write would drop the first one's intervals.
    SQLite needs nothing: its write transactions already run one at a time."""
    if connection.vendor != "postgresql" or not meter_ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, k) FROM (SELECT unnest(%s::int[]) AS k ORDER BY 1) AS ids",
            [METER_LOCK_CLASS, meter_ids],
        )


def _fetch_rows(keys: list[tuple[int, object]]) -> dict[tuple[int, object], tuple[bytes, bytes]]:
    if not keys:
        return {}
    out = {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT d.meter_id, d.day, d.values, d.quality FROM meters_meterday d "
                "JOIN unnest(%s::bigint[], %s::date[]) AS k(meter_id, day) "
                "ON d.meter_id = k.meter_id AND d.day = k.day",
                [[k[0] for k in keys], [k[1] for k in keys]],
            )
            for meter_id, day, values, quality in cursor:
                out[(meter_id, day)] = (bytes(values), bytes(quality))
        return out
    wanted = set(keys)
    rows = MeterDay.objects.filter(
        meter_id__in={k[0] for k in keys}, day__in={k[1] for k in keys}
    ).values_list("meter_id", "day", "values", "quality")
    for meter_id, day, values, quality in rows:
        if (meter_id, day) in wanted:
            out[(meter_id, day)] = (bytes(values), bytes(quality))
    return out


def _upsert_rows(rows: list[tuple[int, object, bytes, bytes]], now: datetime) -> None:
    if not rows:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for chunk in _chunks(rows, 5000):
                cursor.execute(
                    "INSERT INTO meters_meterday (meter_id, day, values, quality, updated_at) "
                    "SELECT m, d, v, q, %s FROM unnest(%s::bigint[], %s::date[], %s::bytea[], %s::bytea[]) "
                    "AS r(m, d, v, q) "
                    "ON CONFLICT (meter_id, day) DO UPDATE SET values = EXCLUDED.values, "
                    "quality = EXCLUDED.quality, updated_at = EXCLUDED.updated_at",
                    [
                        now,
                        [r[0] for r in chunk],
                        [r[1] for r in chunk],
                        [r[2] for r in chunk],
                        [r[3] for r in chunk],
                    ],
                )
        return
    MeterDay.objects.bulk_create(
        [MeterDay(meter_id=m, day=d, values=v, quality=q, updated_at=now) for m, d, v, q in rows],
        update_conflicts=True,
        unique_fields=["meter", "day"],
        update_fields=["values", "quality", "updated_at"],
        batch_size=500,
    )


def _touch_meters(newest: dict[int, datetime], now: datetime) -> None:
    if not newest:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE meters_meter m SET last_communication_at = %s, "
                "last_reading_at = GREATEST(m.last_reading_at, n.ts) "
                "FROM unnest(%s::bigint[], %s::timestamptz[]) AS n(id, ts) WHERE m.id = n.id",
                [now, list(newest), list(newest.values())],
            )
        return
    for meter in Meter.objects.filter(pk__in=newest):
        meter.last_communication_at = now
        if meter.last_reading_at is None or meter.last_reading_at < newest[meter.pk]:
            meter.last_reading_at = newest[meter.pk]
        meter.save(update_fields=["last_communication_at", "last_reading_at"])


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]
