"""Monthly range partitions of the tables that grow with meters × days, and the readings' retention.

On PostgreSQL `meters_meterday` and `billing_chargedday` are partitioned by `day`, one partition per
UTC calendar month (`<table>_pYYYY_MM`), plus a DEFAULT partition for days outside every month
partition (meters/migrations/0006_partitions.py). Once a day (meters.tasks.reading_partitions_maintain):

1. the months from the current one to MONTHS_AHEAD ahead get their partitions, rows of such a
   month already in the DEFAULT partition moved into it;
2. a month every utility's retention has passed is detached (kept as a plain table, an archive
   to dump or drop by hand, never dropped here);
3. a utility whose retention is shorter than another's has its own expired meter-days deleted
   from the months still attached, in batches of its meters through the (meter_id, day) key.

The rule and its costs: docs/storage.md, Growth. SQLite, the embedded default, is not partitioned
and keeps every reading: everything here does nothing there.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, timedelta

from django.db import connection, transaction

from accounts.models import Utility

logger = logging.getLogger(__name__)

TABLES = ("meters_meterday", "billing_chargedday")
# Room on each page of a partition for its rows' next versions (HOT updates): a meter-day's
# charged copy is rewritten by every push (billing/migrations/0022_hot_updates.py).
FILLFACTOR = {"billing_chargedday": 60}
MONTHS_AHEAD = 3
# DDL on a partitioned table waits for every query reading it: give up rather than queue the
# readers behind us; the next day's run tries again.
LOCK_TIMEOUT = "5s"
PURGE_METERS_PER_BATCH = 1000
PURGE_BATCHES_PER_STEP = 50
PURGE_DEFAULT_ROWS_PER_BATCH = 5000
# Serialises the read-modify-write of a partition's purge marker (its comment).
MARKER_LOCK_CLASS = 7302

# S608 below: only table names are put in SQL text, each one of TABLES or a partition name read from
# the catalogue, never one a caller or a task passes.
_BOUND = re.compile(r"FOR VALUES FROM \('(\d{4}-\d{2}-\d{2})'\) TO \('(\d{4}-\d{2}-\d{2})'\)")
_PURGED = re.compile(r"^purged for utilities:((?: \d+)*)$")


@dataclass(frozen=True)
class Partition:
    table: str  # the partitioned table
    name: str
    start: date | None  # None: the DEFAULT partition
    end: date | None
    bytes: int  # table, indexes and TOAST
    rows: int  # PostgreSQL's estimate (pg_class.reltuples): counting would read it whole
    attached: bool
    purged_for: frozenset[int]  # utilities whose expired rows are already deleted from it

    @property
    def is_default(self) -> bool:
        return self.attached and self.start is None


def month_start(day: date) -> date:
    return day.replace(day=1)


def month_add(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def retention_start(*, months: int, today: date) -> date:
    """The first UTC day kept under a retention of `months`: the whole months before the current
    one, and the UTC day before them, where a local month east of UTC begins (Kuwait's 1 February
    is 31 January 21:00 UTC), so a consumer always keeps at least that many complete local months."""
    return month_add(month_start(today), -months) - timedelta(days=1)


def partitioned(table: str) -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
    return bool(row) and row[0] == "p"


def partitions_list(*, table: str) -> list[Partition]:
    """The table's partitions, attached (month ones by start, then DEFAULT) and detached."""
    if not partitioned(table):
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), pg_total_relation_size(c.oid), "
            "c.reltuples, obj_description(c.oid, 'pg_class') "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [table],
        )
        attached = cursor.fetchall()
        # Detached months keep their names: <table>_pYYYY_MM, no longer a partition.
        cursor.execute(
            "SELECT c.relname, NULL, pg_total_relation_size(c.oid), c.reltuples, "
            "obj_description(c.oid, 'pg_class') FROM pg_class c "
            "WHERE c.relkind = 'r' AND NOT c.relispartition AND c.relname ~ %s "
            "AND c.relnamespace = current_schema()::regnamespace",
            [rf"^{table}_p\d{{4}}_\d{{2}}$"],
        )
        detached = cursor.fetchall()
    out = []
    for rows, is_attached in ((attached, True), (detached, False)):
        for name, bound, size, tuples, comment in rows:
            start = end = None
            if is_attached and (match := _BOUND.search(bound or "")):
                start, end = date.fromisoformat(match[1]), date.fromisoformat(match[2])
            elif not is_attached:
                start = date(int(name[-7:-3]), int(name[-2:]), 1)
                end = month_add(start, 1)
            purged = _PURGED.match(comment or "")
            out.append(
                Partition(
                    table=table,
                    name=name,
                    start=start,
                    end=end,
                    bytes=size,
                    rows=max(int(tuples), 0),
                    attached=is_attached,
                    purged_for=frozenset(int(n) for n in purged[1].split())
                    if purged
                    else frozenset(),
                )
            )
    return sorted(out, key=lambda p: (not p.attached, p.start is None, p.start or date.min))


def partitions_ensure(
    *, table: str, today: date, months_ahead: int = MONTHS_AHEAD, first_month: date | None = None
) -> list[str]:
    """Make the month partitions from `first_month` (default: the current month) through
    `months_ahead` months after the current one; return the names made. Idempotent.

    A month whose rows already sit in the DEFAULT partition (written before its partition existed)
    is made as a plain table, filled with those rows, emptied out of DEFAULT and attached, in one
    transaction with writes to DEFAULT held off: PostgreSQL would refuse to create it otherwise."""
    if not partitioned(table):
        return []
    existing = partitions_list(table=table)
    covered = {p.start for p in existing if p.attached}
    names = {p.name for p in existing}
    default = next((p.name for p in existing if p.is_default), None)
    made = []
    month = month_start(first_month or today)
    last = month_add(month_start(today), months_ahead)
    while month <= last:
        name, end = f"{table}_p{month:%Y_%m}", month_add(month, 1)
        if month in covered:
            pass
        elif name in names:
            # An archived month of the past: attach it again by hand if it is wanted back.
            logger.warning("%s is detached; not making it again", name)
        else:
            _partition_create(table=table, name=name, start=month, end=end, default=default)
            made.append(name)
        month = end
    return made


def _partition_create(
    *, table: str, name: str, start: date, end: date, default: str | None
) -> None:
    bounds = f"FROM ('{start:%Y-%m-%d}') TO ('{end:%Y-%m-%d}')"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        moving = False
        if default:
            # Writes routed to DEFAULT wait (reads do not) until the month is attached: a row of
            # the month written meanwhile would make the attach fail.
            cursor.execute(f"LOCK TABLE {default} IN EXCLUSIVE MODE")
            cursor.execute(
                f"SELECT EXISTS (SELECT 1 FROM {default} WHERE day >= %s AND day < %s)",  # noqa: S608
                [start, end],
            )
            moving = cursor.fetchone()[0]
        storage = f" WITH (fillfactor = {FILLFACTOR[table]})" if table in FILLFACTOR else ""
        if not moving:
            cursor.execute(f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES {bounds}{storage}")
            logger.info("partition %s made", name)
            return
        cursor.execute(
            f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS){storage}"
        )
        cursor.execute(
            f"WITH moved AS (DELETE FROM {default} WHERE day >= %s AND day < %s RETURNING *) "  # noqa: S608
            f"INSERT INTO {name} SELECT * FROM moved",
            [start, end],
        )
        count = cursor.rowcount
        # The bounds as a CHECK let the attach trust the rows instead of reading them again.
        cursor.execute(
            f"ALTER TABLE {name} ADD CONSTRAINT {name}_bounds "
            f"CHECK (day >= '{start:%Y-%m-%d}' AND day < '{end:%Y-%m-%d}')"
        )
        # Attaching builds the table's share of the parent's keys and indexes, and its foreign key.
        cursor.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES {bounds}")
        cursor.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_bounds")
        logger.info("partition %s made with %s rows moved from %s", name, count, default)


def archive_before(*, today: date) -> date | None:
    """The first day every utility keeps: months wholly before it may be detached. None when a
    utility keeps its readings forever (or there is none), as a month is shared by all."""
    retentions = list(Utility.objects.values_list("reading_retention_months", flat=True))
    if not retentions or None in retentions:
        return None
    return retention_start(months=max(retentions), today=today)


def partitions_detach_expired(*, table: str, today: date) -> list[str]:
    """Detach (never drop) the month partitions that every utility's retention has passed; their
    foreign key to the meters goes, so that the archive stands alone. Return their names."""
    horizon = archive_before(today=today)
    if horizon is None or not partitioned(table):
        return []
    detached = []
    for part in partitions_list(table=table):
        if not part.attached or part.end is None or part.end > horizon:
            continue
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            # Not CONCURRENTLY: PostgreSQL refuses that beside a DEFAULT partition. A plain detach
            # holds the table only for the catalogue change.
            cursor.execute(f"ALTER TABLE {table} DETACH PARTITION {part.name}")
            cursor.execute(
                "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
                [part.name],
            )
            for (constraint,) in cursor.fetchall():
                cursor.execute(f'ALTER TABLE {part.name} DROP CONSTRAINT "{constraint}"')
        logger.info("partition %s detached (%s bytes)", part.name, part.bytes)
        detached.append(part.name)
    return detached


@dataclass(frozen=True)
class Purge:
    """One utility's expired rows of one month (None: of the DEFAULT partitions), in both tables."""

    utility_id: int
    month: date | None


def _attached_by_month(table: str) -> dict[date | None, Partition]:
    return {p.start: p for p in partitions_list(table=table) if p.attached}


def purges_pending(*, today: date) -> list[Purge]:
    """Per utility with a retention: each attached month it has passed and whose partitions it has
    not yet been deleted from, and the DEFAULT partitions (a few odd days; see retention_purge_step)."""
    if connection.vendor != "postgresql":
        return []
    months: dict[date | None, list[Partition]] = {}
    for table in TABLES:
        for month, part in _attached_by_month(table).items():
            months.setdefault(month, []).append(part)
    out = []
    utilities = Utility.objects.filter(reading_retention_months__isnull=False).order_by("pk")
    for utility in utilities:
        start = retention_start(months=utility.reading_retention_months, today=today)
        for month in sorted(months, key=lambda m: m or date.min):
            parts = months[month]
            if month is None or (
                parts[0].end <= start and any(utility.pk not in p.purged_for for p in parts)
            ):
                out.append(Purge(utility_id=utility.pk, month=month))
    return out


def partitions_maintain(*, today: date) -> list[Purge]:
    """The daily pass: partitions made ahead and expired months detached, on both tables; return
    the deletions of single utilities' expired rows still to do, one task each."""
    if connection.vendor != "postgresql":
        return []
    for table in TABLES:
        partitions_ensure(table=table, today=today)
        partitions_detach_expired(table=table, today=today)
    return purges_pending(today=today)


def retention_purge_step(
    *,
    utility_id: int,
    month: date | None,
    today: date,
    after_meter_id: int = 0,
    max_batches: int | None = None,
) -> int | None:
    """Delete one utility's expired meter-days of one month, with what was charged for them, at
    most `max_batches` batches, each its own transaction. Return the meter id to go on after, or
    None when the month is done.

    A month is walked by the utility's meters, PURGE_METERS_PER_BATCH at a time in id order; each
    batch is one `DELETE … WHERE meter_id = ANY(…)` on each table's partition of the month, served
    by that partition's (meter_id, day) primary key, in one transaction (a reading and its charged
    copy go together, so charging never sees one without the other). The cost is the utility's
    meters and rows, never the rows of other utilities. When the walk ends each partition's
    comment records the utility, so later passes skip the month. The DEFAULT partitions hold only
    odd days and are read whole (no marker: a back-dated reading may land there any day)."""
    max_batches = max_batches or PURGE_BATCHES_PER_STEP
    utility = Utility.objects.filter(pk=utility_id).first()
    if utility is None or utility.reading_retention_months is None:
        return None
    start = retention_start(months=utility.reading_retention_months, today=today)
    parts = [p for t in TABLES if (p := _attached_by_month(t).get(month)) is not None]
    if month is None:
        _purge_default(parts=parts, utility_id=utility_id, start=start, max_batches=max_batches)
        return None
    # Retention lengthened meanwhile, the month detached, or another task did it.
    parts = [p for p in parts if p.end <= start and utility_id not in p.purged_for]
    if not parts:
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM meters_meter WHERE utility_id = %s AND id > %s ORDER BY id LIMIT %s",
            [utility_id, after_meter_id, PURGE_METERS_PER_BATCH * max_batches],
        )
        meter_ids = [row[0] for row in cursor.fetchall()]
    for first in range(0, len(meter_ids), PURGE_METERS_PER_BATCH):
        batch = meter_ids[first : first + PURGE_METERS_PER_BATCH]
        with transaction.atomic(), connection.cursor() as cursor:
            for part in parts:
                cursor.execute(f"DELETE FROM {part.name} WHERE meter_id = ANY(%s)", [batch])  # noqa: S608
                logger.info(
                    "%s: %s rows of utility %s deleted (meters %s-%s)",
                    part.name,
                    cursor.rowcount,
                    utility_id,
                    batch[0],
                    batch[-1],
                )
    if len(meter_ids) == PURGE_METERS_PER_BATCH * max_batches:
        return meter_ids[-1]
    for part in parts:
        _mark_purged(partition=part.name, utility_id=utility_id)
    return None


def _purge_default(
    *, parts: list[Partition], utility_id: int, start: date, max_batches: int
) -> None:
    for part in parts:
        for _ in range(max_batches):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    f"DELETE FROM {part.name} WHERE ctid = ANY(ARRAY("  # noqa: S608
                    f"SELECT d.ctid FROM {part.name} d JOIN meters_meter m ON m.id = d.meter_id "
                    "WHERE m.utility_id = %s AND d.day < %s LIMIT %s))",
                    [utility_id, start, PURGE_DEFAULT_ROWS_PER_BATCH],
                )
                if cursor.rowcount < PURGE_DEFAULT_ROWS_PER_BATCH:
                    break


def _mark_purged(*, partition: str, utility_id: int) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        # Two utilities' purges of one month may end together: one marker write at a time.
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [MARKER_LOCK_CLASS, partition]
        )
        cursor.execute("SELECT obj_description(%s::regclass, 'pg_class')", [partition])
        purged = _PURGED.match(cursor.fetchone()[0] or "")
        ids = {int(n) for n in purged[1].split()} if purged else set()
        ids.add(utility_id)
        comment = "purged for utilities:" + "".join(f" {n}" for n in sorted(ids))
        cursor.execute(f"COMMENT ON TABLE {partition} IS %s", [comment])
