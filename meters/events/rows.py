"""A head-end batch's rows read and checked one by one: every rule but the one that needs the
stored events (restore_without_failure, meters.events.ingest)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
from rest_framework import status

from accounts.models import Utility
from core.errors import DomainError
from core.parsers import json_loads_bounded
from core.timebuckets import EARLIEST_DATE, LATEST_DATE
from meters.events import sql
from meters.events.codes import (
    CLOCK_SKEW,
    CODES,
    DETAILS_MAX_BYTES,
    EXTERNAL_ID_MAX,
    KINDS,
    POWER_ON,
    SERIAL_MAX,
)
from meters.ingest import TimestampCache
from meters.models import Meter

MAX_EVENTS = 100_000

MESSAGES = {
    "malformed": "This entry is not an event: send an object with meter, kind or code, and "
    "occurred_at.",
    "bad_id": f"id must be text of 1 to {EXTERNAL_ID_MAX} characters.",
    "bad_details": f"details must be an object of at most {DETAILS_MAX_BYTES} bytes as JSON.",
    "unknown_meter": "No meter with this serial at this utility.",
    "unknown_kind": "Send a kind ("
    + ", ".join(KINDS)
    + ") or an IEC 61968-9 EndDeviceEventType code listed in docs/events.md.",
    "conflicting_kind": "The kind and the code name different events; send one, or both alike.",
    "bad_timestamp": "occurred_at must be an ISO 8601 time with a UTC offset, e.g. "
    "2026-11-21T09:15:00+03:00.",
    "out_of_range": f"occurred_at must fall between {EARLIEST_DATE} and {LATEST_DATE}.",
    "in_future": "occurred_at is ahead of our clock by more than 2 minutes.",
    "meter_removed": "This meter has been removed from service; its events are not taken.",
    "before_installation": "occurred_at is before the meter was installed.",
    "duplicate_in_batch": "The same meter, kind and time, or the same event id, appear earlier "
    "in this batch.",
    "restore_without_failure": "A restoration with no failure before it: send the meter's "
    "power_off, or give off_since (when the meter says its supply failed).",
    "bad_off_since": "off_since must be an ISO 8601 time with a UTC offset, before occurred_at "
    "and not before the meter's installation, on a power_on only.",
}


class TooManyEvents(DomainError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "too_many_events"


@dataclass
class EventRejection:
    index: int
    meter: str
    kind: str
    occurred_at: str
    reason: str
    message: str

    def as_dict(self) -> dict:
        return {
            "index": self.index,
            "meter": self.meter,
            "kind": self.kind,
            "occurred_at": self.occurred_at,
            "reason": self.reason,
            "message": self.message,
        }


@dataclass(slots=True)
class MeterInfo:
    id: int
    installed_at: datetime
    removed: bool


@dataclass(slots=True)
class Row:
    """One good event of the batch, until it is stored (`id`) or found stored already."""

    index: int
    serial: str
    sent_kind: str
    sent_at: str
    meter_id: int
    kind: str
    occurred_at: datetime
    external_id: str
    code: str
    details: dict
    details_json: str
    off_since: datetime | None
    id: int | None = None


# ---- Reading the body ----------------------------------------------------------------------------


def events_body_parse(body: bytes) -> dict:
    """A JSON batch as events_ingest takes it. Too deep, NUL in text or more than MAX_EVENTS
    refuse the whole batch; anything else wrong is a row's rejection."""
    data = json_loads_bounded(body)
    if not isinstance(data, dict):
        raise DomainError("The body must be a JSON object with events.", code="malformed_batch")
    events = data.get("events", [])
    if not isinstance(events, list):
        raise DomainError("events must be a list.", code="malformed_batch")
    if len(events) > MAX_EVENTS:
        raise TooManyEvents(f"A batch may hold at most {MAX_EVENTS:,} events; split it.")
    external_id = data.get("batch_id")
    return {"events": events, "external_id": external_id if isinstance(external_id, str) else ""}


def _json_value(value: object) -> object:
    """json_loads_bounded reads numbers with a fraction as Decimal; JSON columns take numbers."""
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and abs(value) < 2**53:
            return int(value)
        number = float(value)
        return number if number not in (float("inf"), float("-inf")) else str(value)
    raise TypeError


def _details(raw: object, off_since: datetime | None) -> tuple[dict, str] | None:
    if raw is None:
        details: dict = {}
    elif isinstance(raw, dict):
        details = dict(raw)
        # off_since is read back as the meter's failure time: only the checked field sets it.
        details.pop("off_since", None)
    else:
        return None
    if off_since is not None:
        details["off_since"] = off_since.isoformat()
    if not details:
        return {}, "{}"
    try:
        text = json.dumps(details, default=_json_value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None
    if len(text.encode()) > DETAILS_MAX_BYTES:
        return None
    return json.loads(text), text


def meters_lookup(*, utility: Utility, serials: set[str]) -> dict[str, MeterInfo]:
    """The utility's meters by serial, a chunk at a time: another utility's serial is not found,
    exactly as an unknown one is."""
    wanted = sorted(s for s in serials if len(s) <= SERIAL_MAX)
    found: dict[str, MeterInfo] = {}
    for chunk in sql.chunks(wanted, sql.CHUNK):
        if connection.vendor == "postgresql":
            # One array parameter, not 10,000 placeholders: serial__in's cost at a storm's size.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT serial, id, (extract(epoch FROM installed_at) * 1000000)::bigint, "
                    "status FROM meters_meter WHERE utility_id = %s AND serial = ANY(%s::text[])",
                    [utility.pk, sql.array(chunk)],
                )
                rows = [(s, pk, sql.moment(us), st) for s, pk, us, st in cursor.fetchall()]
        else:
            rows = Meter.objects.filter(utility=utility, serial__in=chunk).values_list(
                "serial", "id", "installed_at", "status"
            )
        for serial, pk, installed_at, meter_status in rows:
            found[serial] = MeterInfo(pk, installed_at, meter_status == Meter.Status.REMOVED)
    return found


class _Checked:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.rejections: list[EventRejection] = []

    def reject(self, index: int, raw: object, reason: str, message_key: str | None = None) -> None:
        raw = raw if isinstance(raw, dict) else {}
        kind = raw.get("kind") if raw.get("kind") is not None else raw.get("code")
        self.rejections.append(
            EventRejection(
                index,
                _shown(raw.get("meter")),
                _shown(kind),
                _shown(raw.get("occurred_at")),
                reason,
                MESSAGES[message_key or reason],
            )
        )


def _shown(value: object) -> str:
    return "" if value is None else str(value)[:40]


def _kind_of(raw: dict) -> tuple[str, str] | str:
    """(kind, code as sent), or the reason the row is refused."""
    kind, code = raw.get("kind"), raw.get("code")
    if kind is None and code is None:
        return "unknown_kind"
    if kind is not None and (not isinstance(kind, str) or kind not in KINDS):
        return "unknown_kind"
    if code is not None:
        by_code = CODES.get(code) if isinstance(code, str) else None
        if by_code is None:
            return "unknown_kind"
        if kind is not None and kind != by_code:
            return "conflicting_kind"
        return by_code, code
    return kind, ""


def check(events: list, meters: dict[str, MeterInfo], now: datetime) -> _Checked:
    """Every row on its own (all but restore_without_failure, which needs the stored events)."""
    checked = _Checked()
    times = TimestampCache(quarter_hours=False)
    latest = now + CLOCK_SKEW
    seen_keys: set[tuple[int, str, datetime]] = set()
    seen_ids: set[tuple[int, str]] = set()
    for index, raw in enumerate(events):
        if not isinstance(raw, dict):
            checked.reject(index, raw, "malformed")
            continue
        serial = raw.get("meter")
        meter = meters.get(serial) if isinstance(serial, str) else None
        if meter is None:
            checked.reject(index, raw, "unknown_meter")
            continue
        kind_code = _kind_of(raw)
        if isinstance(kind_code, str):
            checked.reject(index, raw, kind_code)
            continue
        kind, code = kind_code
        at = times.parse(raw.get("occurred_at"))
        if isinstance(at, str):
            checked.reject(index, raw, at)
            continue
        if at > latest:
            checked.reject(index, raw, "in_future")
            continue
        if meter.removed:
            checked.reject(index, raw, "meter_removed")
            continue
        if at < meter.installed_at:
            checked.reject(index, raw, "before_installation")
            continue
        external_id = raw.get("id")
        if external_id is None:
            external_id = ""
        elif not isinstance(external_id, str) or not 0 < len(external_id) <= EXTERNAL_ID_MAX:
            checked.reject(index, raw, "malformed", "bad_id")
            continue
        off_since = None
        if raw.get("off_since") is not None:
            off_since = times.parse(raw["off_since"])
            if (
                kind != POWER_ON
                or isinstance(off_since, str)
                or off_since >= at
                or off_since < meter.installed_at
            ):
                checked.reject(index, raw, "bad_off_since")
                continue
        details = _details(raw.get("details"), off_since)
        if details is None:
            checked.reject(index, raw, "malformed", "bad_details")
            continue
        key = (meter.id, kind, at)
        if key in seen_keys or (external_id and (meter.id, external_id) in seen_ids):
            checked.reject(index, raw, "duplicate_in_batch")
            continue
        seen_keys.add(key)
        if external_id:
            seen_ids.add((meter.id, external_id))
        checked.rows.append(
            Row(
                index,
                serial,
                raw["kind"] if raw.get("kind") is not None else raw["code"],
                raw["occurred_at"],
                meter.id,
                kind,
                at,
                external_id,
                code,
                details[0],
                details[1],
                off_since,
            )
        )
    return checked
