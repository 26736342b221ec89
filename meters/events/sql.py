"""PostgreSQL arrays and instants for the set-based statements of meters.events.

Instants cross the wire as text one way and as microseconds since 1970 (extract(epoch …) *
1000000) the other, and arrays as one literal each: psycopg's adapters, in Python, cost more
than the queries themselves for a storm's 10,000 meters.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# Rows per statement, and meters per lookup.
CHUNK = 10_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // MICROSECOND


def moment(us: int | None) -> datetime | None:
    return None if us is None else EPOCH + timedelta(microseconds=us)


def isoformats(moments) -> list[str | None]:
    return [None if m is None else m.isoformat() for m in moments]


def array(values) -> str:
    """A PostgreSQL array literal, cast where it is used (%s::bigint[]): one text parameter
    instead of psycopg adapting thousands of list items one by one in Python. Whole arrays of
    numbers, or of text without quotes or backslashes (ids, kinds, instants), are joined at C
    speed; anything else goes item by item."""
    values = list(values)
    if not values:
        return "{}"
    if None not in values:
        if isinstance(values[0], int):
            return "{" + ",".join(map(str, values)) + "}"
        text = '","'.join(values)
        if '"' not in text and "\\" not in text:
            return '{"' + text + '"}'
    return "{" + ",".join(_item(v) for v in values) + "}"


def _item(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]
