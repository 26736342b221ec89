"""Head-end batches → validated writes into the packed layout.

Two shapes arrive: single readings (JSON `readings`, or CSV rows `meter,start,wh,quality`) and
load-profile blocks (JSON `blocks`: a meter, the start of its first interval, and consecutive
values). Both become Segments: runs of consecutive slots of one meter on one UTC day.
"""

from __future__ import annotations

import csv
import io
import re
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from core.errors import DomainError
from core.parsers import json_loads_bounded
from core.timebuckets import EARLIEST_DATE, LATEST_DATE, date_in_range
from meters.storage import INTERVAL, QUALITY_BY_NAME, SLOTS_PER_DAY, Quality, slot_of

# A reading may start at most this far into the future of our clock (head-end clocks drift).
CLOCK_SKEW = timedelta(minutes=2)
MAX_REJECTIONS_LISTED = 1000


@dataclass
class Rejection:
    ref: dict
    meter: str
    start: str
    reason: str
    message: str

    def as_dict(self) -> dict:
        return {
            **self.ref,
            "meter": self.meter,
            "start": self.start,
            "reason": self.reason,
            "message": self.message,
        }


@dataclass
class Segment:
    meter_id: int
    day: object  # date
    slot: int
    values: array
    quality: bytes


@dataclass
class MeterInfo:
    id: int
    max_wh: int


@dataclass
class Parsed:
    segments: list[Segment] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    readings: int = 0
    rejected: int = 0

    def reject(self, ref: dict, meter: str, start: object, reason: str, message: str) -> None:
        self.rejected += 1
        if len(self.rejections) < MAX_REJECTIONS_LISTED:
            self.rejections.append(
                Rejection(ref, str(meter)[:40], str(start)[:40], reason, message)
            )


MESSAGES = {
    "unknown_meter": "No meter with this serial at this utility.",
    "bad_timestamp": "The start must be an ISO 8601 time with a UTC offset, e.g. 2026-11-21T09:15:00+03:00.",
    "not_on_boundary": "The start is not on a 15-minute boundary.",
    "in_future": "This interval has not ended yet.",
    "negative": "Energy cannot be negative.",
    "above_capacity": "More energy than the meter's rated capacity allows in 15 minutes.",
    "bad_value": "The energy must be a whole number of Wh (or null when the quality is missing).",
    "bad_quality": "The quality must be actual, estimated or missing.",
    "duplicate_in_batch": "The same meter and start appear earlier in this batch.",
    "malformed": "This entry is not a reading.",
    "past_retention": (
        "The utility keeps readings for a set number of months, and this interval is older."
    ),
    "out_of_range": (
        f"The start must fall between {EARLIEST_DATE} and {LATEST_DATE}: no meter read earlier."
    ),
}


class TimestampCache:
    """Many meters share the same 96 starts a day (and a storm's events a few instants): parse
    each text once. `quarter_hours`: an interval's start must be on a 15-minute boundary."""

    def __init__(self, *, quarter_hours: bool = True) -> None:
        self._seen: dict[str, datetime | str] = {}
        self._quarter_hours = quarter_hours

    def parse(self, text: object) -> datetime | str:
        """An aware UTC datetime, or the reason it is refused."""
        if not isinstance(text, str):
            return "bad_timestamp"
        cached = self._seen.get(text)
        if cached is not None:
            return cached
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            result: datetime | str = "bad_timestamp"
        else:
            if moment.tzinfo is None:
                result = "bad_timestamp"
            elif not date_in_range(moment.date()):
                # Before converting: year 1 or 9999 overflows on the way to UTC.
                result = "out_of_range"
            elif self._quarter_hours and (
                moment.second or moment.microsecond or moment.astimezone(UTC).minute % 15
            ):
                result = "not_on_boundary"
            else:
                result = moment.astimezone(UTC)
        if len(self._seen) < 100_000:
            self._seen[text] = result
        return result


def _quality(raw: object) -> Quality | None:
    if raw is None:
        return Quality.ACTUAL
    return QUALITY_BY_NAME.get(raw) if isinstance(raw, str) else None


_WH_TEXT = re.compile(r"-?[0-9]{1,12}")


def _energy(raw: object, quality: Quality) -> int | str:
    """Wh as an int, or a rejection reason."""
    if quality is Quality.MISSING:
        return 0 if raw in (None, 0) else "bad_value"
    if isinstance(raw, bool) or not isinstance(raw, int):
        if (isinstance(raw, float) and raw.is_integer()) or (
            # ASCII digits, and few: int() refuses over 4,300 digits (and "²" passes isdigit).
            isinstance(raw, str) and _WH_TEXT.fullmatch(raw.strip())
        ):
            raw = int(raw)
        else:
            return "bad_value"
    return "negative" if raw < 0 else raw


def parse_readings(
    rows: Iterable[tuple[dict, object, object, object, object]],
    meters: dict[str, MeterInfo],
    now: datetime,
    parsed: Parsed | None = None,
    *,
    kept_from: date | None = None,
) -> Parsed:
    """Single readings: (ref, meter serial, start, wh, quality) each. `kept_from`: the first UTC
    day the utility's retention keeps (an older reading would bring back a deleted day)."""
    parsed = parsed or Parsed()
    latest = now + CLOCK_SKEW - INTERVAL
    times = TimestampCache()
    seen: set[tuple[int, datetime]] = set()
    for ref, serial, start_raw, wh_raw, quality_raw in rows:
        parsed.readings += 1
        if serial is None and start_raw is None:
            parsed.reject(ref, "", "", "malformed", MESSAGES["malformed"])
            continue
        meter = meters.get(serial) if isinstance(serial, str) else None
        if meter is None:
            parsed.reject(ref, serial, start_raw, "unknown_meter", MESSAGES["unknown_meter"])
            continue
        start = times.parse(start_raw)
        if isinstance(start, str):
            parsed.reject(ref, serial, start_raw, start, MESSAGES[start])
            continue
        if start > latest:
            parsed.reject(ref, serial, start_raw, "in_future", MESSAGES["in_future"])
            continue
        if kept_from is not None and start.date() < kept_from:
            parsed.reject(ref, serial, start_raw, "past_retention", MESSAGES["past_retention"])
            continue
        quality = _quality(quality_raw)
        if quality is None:
            parsed.reject(ref, serial, start_raw, "bad_quality", MESSAGES["bad_quality"])
            continue
        wh = _energy(wh_raw, quality)
        if isinstance(wh, str):
            parsed.reject(ref, serial, start_raw, wh, MESSAGES[wh])
            continue
        if wh > meter.max_wh:
            parsed.reject(ref, serial, start_raw, "above_capacity", MESSAGES["above_capacity"])
            continue
        key = (meter.id, start)
        if key in seen:
            parsed.reject(
                ref, serial, start_raw, "duplicate_in_batch", MESSAGES["duplicate_in_batch"]
            )
            continue
        seen.add(key)
        day, slot = slot_of(start)
        parsed.segments.append(Segment(meter.id, day, slot, array("i", (wh,)), bytes((quality,))))
    return parsed


def parse_blocks(
    blocks: Iterable[tuple[int, object]],
    meters: dict[str, MeterInfo],
    now: datetime,
    *,
    kept_from: date | None = None,
) -> Parsed:
    """Load-profile blocks: {"meter", "start", "values": [...], "quality": name or [names]}.

    The common case (a known meter, every value a sane whole number, one quality) is checked with a
    few builtin calls over the whole block; only a block that fails them is walked value by value.
    """
    parsed = Parsed()
    latest = now + CLOCK_SKEW - INTERVAL
    times = TimestampCache()
    seen: set[tuple[int, datetime]] = set()
    for number, block in blocks:
        if not isinstance(block, dict) or not isinstance(block.get("values"), list):
            parsed.readings += 1
            parsed.reject({"block": number}, "", "", "malformed", MESSAGES["malformed"])
            continue
        serial, start_raw, values, quality_raw = (
            block.get("meter"),
            block.get("start"),
            block["values"],
            block.get("quality"),
        )
        meter = meters.get(serial) if isinstance(serial, str) else None
        start = times.parse(start_raw)
        uniform = quality_raw is None or isinstance(quality_raw, str)
        quality = _quality(quality_raw) if uniform else None
        last = (
            start + (len(values) - 1) * INTERVAL if isinstance(start, datetime) and values else None
        )
        fast = (
            meter is not None
            and isinstance(start, datetime)
            and quality in PRESENT_QUALITIES
            and values
            and last <= latest
            and (kept_from is None or start.date() >= kept_from)
            and (start, meter.id) not in seen
            and all(type(v) is int for v in values)
            and min(values) >= 0
            and max(values) <= meter.max_wh
        )
        if fast:
            seen.add((start, meter.id))
            parsed.readings += len(values)
            _add_run(parsed, meter.id, start, array("i", values), bytes((quality,)) * len(values))
            continue
        # The slow path: one reading at a time, each refused or kept on its own.
        qualities = quality_raw if isinstance(quality_raw, list) else [quality_raw] * len(values)
        if len(qualities) != len(values):
            parsed.readings += len(values)
            for position in range(len(values)):
                parsed.reject(
                    {"block": number, "position": position},
                    serial,
                    start_raw,
                    "bad_quality",
                    "The block's quality list must be as long as its values.",
                )
            continue
        rows = []
        for position, (wh, q) in enumerate(zip(values, qualities, strict=True)):
            moment = start + position * INTERVAL if isinstance(start, datetime) else start_raw
            rows.append(
                (
                    {"block": number, "position": position},
                    serial,
                    moment.isoformat() if isinstance(moment, datetime) else moment,
                    wh,
                    q,
                )
            )
        parse_readings(rows, meters, now, parsed, kept_from=kept_from)
    return parsed


PRESENT_QUALITIES = (Quality.ACTUAL, Quality.ESTIMATED)


def _add_run(parsed: Parsed, meter_id: int, start: datetime, values: array, quality: bytes) -> None:
    """Split a run of consecutive intervals at UTC midnights into segments."""
    day, slot = slot_of(start)
    offset = 0
    while offset < len(values):
        take = min(SLOTS_PER_DAY - slot, len(values) - offset)
        parsed.segments.append(
            Segment(
                meter_id, day, slot, values[offset : offset + take], quality[offset : offset + take]
            )
        )
        offset += take
        day, slot = day + timedelta(days=1), 0


CSV_COLUMNS = ("meter", "start", "wh", "quality")


def csv_rows(text: str) -> Iterator[tuple[dict, object, object, object, object]]:
    """CSV with a header naming meter, start, wh and optionally quality; refs carry line numbers.

    A file the csv module cannot read on (a field over its limit of 131,072 characters, a quote
    left open) refuses the whole batch with DomainError before anything is stored: the reader
    cannot resynchronise, so no row after it could be trusted.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        yield from _csv_rows(reader)
    except csv.Error as exc:
        too_large = "field limit" in str(exc)
        raise DomainError(
            f"Unreadable CSV at line {reader.line_num}: "
            + ("a field is longer than 131,072 characters." if too_large else str(exc)),
            code="csv_field_too_large" if too_large else "malformed_csv",
            extra={"line": reader.line_num},
        ) from None


def _csv_rows(reader) -> Iterator[tuple[dict, object, object, object, object]]:
    header = next(reader, None)
    if header is None:
        return
    columns = [h.strip().lower() for h in header]
    missing = [c for c in CSV_COLUMNS[:3] if c not in columns]
    if missing:
        raise ValueError(f"The CSV header lacks {', '.join(missing)}.")
    at = {name: columns.index(name) for name in CSV_COLUMNS if name in columns}
    q_at = at.get("quality")
    width = len(columns)
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != width:
            yield {"line": line}, None, None, None, None
            continue
        wh = row[at["wh"]].strip()
        quality = row[q_at].strip().lower() if q_at is not None and row[q_at].strip() else None
        yield (
            {"line": line},
            row[at["meter"]].strip(),
            row[at["start"]].strip(),
            None if wh == "" else wh,
            quality,
        )


def json_batch_parse(body: bytes) -> dict:
    """A JSON batch's body as readings_ingest takes it. Read with json_loads_bounded: too deep or
    text with NUL refuses the whole batch (400 too_deep, invalid_character), not a reading."""
    data = json_loads_bounded(body)
    if not isinstance(data, dict):
        raise DomainError(
            "The body must be a JSON object with readings or blocks.", code="malformed_batch"
        )
    readings, blocks = data.get("readings", []), data.get("blocks", [])
    if not isinstance(readings, list) or not isinstance(blocks, list):
        raise DomainError("readings and blocks must be lists.", code="malformed_batch")
    rows = [
        ({"index": i}, r.get("meter"), r.get("start"), r.get("wh"), r.get("quality"))
        if isinstance(r, dict)
        else ({"index": i}, None, None, None, None)
        for i, r in enumerate(readings)
    ]
    external_id = data.get("batch_id")
    return {
        "readings": rows,
        "blocks": blocks,
        "source": "json",
        "external_id": external_id if isinstance(external_id, str) else "",
    }
