"""The packed layout of readings: one MeterDay row per meter per UTC day, 96 quarter-hours in it.

Slot k of day d holds the interval that starts at d 00:00 UTC + k × 15 minutes. Values are Wh as
little-endian int32; quality is one byte a slot. See docs/storage.md for the reasons.
"""

from __future__ import annotations

import sys
from array import array
from datetime import UTC, date, datetime, time, timedelta
from enum import IntEnum

SLOTS_PER_DAY = 96
INTERVAL = timedelta(minutes=15)
INTERVAL_SECONDS = 900
_LITTLE = sys.byteorder == "little"


class Quality(IntEnum):
    ABSENT = 0  # nothing received for this interval
    ACTUAL = 1
    ESTIMATED = 2
    MISSING = 3  # the head-end reported that the meter has no value for it
    # Never stored: an interval outside the reader's tenancy, masked when a consumer reads.
    OUTSIDE = 4

    @property
    def label(self) -> str:
        return self.name.lower()


QUALITY_BY_NAME = {q.label: q for q in (Quality.ACTUAL, Quality.ESTIMATED, Quality.MISSING)}
# Quality codes that carry energy.
PRESENT = (Quality.ACTUAL, Quality.ESTIMATED)
EMPTY_VALUES = bytes(4 * SLOTS_PER_DAY)
EMPTY_QUALITY = bytes(SLOTS_PER_DAY)


def values_unpack(raw: bytes) -> array:
    values = array("i")
    values.frombytes(bytes(raw))
    if not _LITTLE:
        values.byteswap()
    return values


def values_pack(values: array) -> bytes:
    if _LITTLE:
        return values.tobytes()
    copy = array("i", values)
    copy.byteswap()
    return copy.tobytes()


def slot_of(start: datetime) -> tuple[date, int]:
    """(UTC day, slot) of an aware interval start already checked to be on a 15-minute boundary."""
    utc = start.astimezone(UTC)
    return utc.date(), (utc.hour * 60 + utc.minute) // 15


def slot_start(day: date, slot: int) -> datetime:
    return datetime.combine(day, time(0), UTC) + slot * INTERVAL


def floor_to_interval(moment: datetime) -> datetime:
    utc = moment.astimezone(UTC)
    return utc.replace(minute=utc.minute - utc.minute % 15, second=0, microsecond=0)


def utc_days(start: datetime, end: datetime) -> list[date]:
    """The UTC days that [start, end) touches."""
    first = start.astimezone(UTC).date()
    last = (end.astimezone(UTC) - timedelta(microseconds=1)).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


class Series:
    """Readings of one meter over [start, end), slot-aligned: values (Wh) and quality, one per interval."""

    __slots__ = ("end", "quality", "start", "values")

    def __init__(
        self, start: datetime, end: datetime, rows: dict[date, tuple[bytes, bytes]]
    ) -> None:
        self.start, self.end = start, end
        days = utc_days(start, end)
        values = array("i")
        quality = bytearray()
        for day in days:
            raw_values, raw_quality = rows.get(day, (EMPTY_VALUES, EMPTY_QUALITY))
            values.extend(values_unpack(raw_values))
            quality += raw_quality
        skip = (
            int((start - datetime.combine(days[0], time(0), UTC)).total_seconds())
            // INTERVAL_SECONDS
        )
        count = int((end - start).total_seconds()) // INTERVAL_SECONDS
        self.values = values[skip : skip + count]
        self.quality = bytes(quality[skip : skip + count])

    def __len__(self) -> int:
        return len(self.quality)

    def index_of(self, moment: datetime) -> int:
        return int((moment - self.start).total_seconds()) // INTERVAL_SECONDS

    def keep_only(self, windows: list[tuple[datetime, datetime | None]]) -> Series:
        """Mark every interval outside the half-open windows as OUTSIDE (its value zeroed): what a
        reader sees of a meter is bounded by their own tenancy of it."""
        count = len(self)
        inside = bytearray(count)

        def first_at_or_after(moment: datetime) -> int:  # an interval belongs where it starts
            return -(-int((moment - self.start).total_seconds()) // INTERVAL_SECONDS)

        for start, end in windows:
            i0 = max(0, first_at_or_after(start))
            i1 = count if end is None else min(count, first_at_or_after(end))
            if i1 > i0:
                inside[i0:i1] = b"\x01" * (i1 - i0)
        if all(inside):
            return self
        quality = bytearray(self.quality)
        for i in range(count):
            if not inside[i]:
                quality[i] = Quality.OUTSIDE
                self.values[i] = 0
        self.quality = bytes(quality)
        return self
