from __future__ import annotations

from datetime import UTC, date, datetime

from django.db import migrations

# On PostgreSQL the two tables that grow with meters × days become range-partitioned by `day`, one
# partition per calendar month (docs/storage.md, Growth). Columns, primary key, foreign key and
# indexes keep their names, so Django's model state is unchanged and nothing in the code changes.
# SQLite, the embedded default, keeps plain tables.
#
# Self-contained on purpose (a migration must not follow later edits of meters.partitions); the
# daily task meters.tasks.reading_partitions_maintain keeps making partitions ahead from here on.
TABLES = ("meters_meterday", "billing_chargedday")
MONTHS_AHEAD = 3


def _month_add(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _keys_and_indexes(cursor, table: str) -> tuple[list[str], list[str]]:
    """The statements that re-create the table's primary and foreign keys and its other indexes,
    under the names they have now."""
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('p', 'f') ORDER BY contype DESC, conname",
        [table],
    )
    keys = [
        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}' for name, definition in cursor
    ]
    cursor.execute(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "WHERE i.indrelid = %s::regclass "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) "
        "ORDER BY i.indexrelid",
        [table],
    )
    # pg_get_indexdef names the table as it is now; it is run against the new table of that name.
    indexes = [row[0].replace(" ONLY ", " ") for row in cursor]
    return keys, indexes


def _rebuild(cursor, table: str, *, partitioned: bool, today: date) -> None:
    """Re-create `table` (partitioned by month or plain) with the same columns, keys and indexes,
    and its rows. Keys and indexes are added after the copy: one build, not a row at a time."""
    keys, indexes = _keys_and_indexes(cursor, table)
    old = f"{table}_rebuilt_from"
    cursor.execute(f"ALTER TABLE {table} RENAME TO {old}")
    clause = " PARTITION BY RANGE (day)" if partitioned else ""
    cursor.execute(
        f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS){clause}"
    )
    if partitioned:
        # A partition for each month holding rows and for the current one through MONTHS_AHEAD:
        # one reading back-dated years makes one small partition, not one for every month since.
        cursor.execute(f"SELECT DISTINCT date_trunc('month', day)::date FROM {old}")  # noqa: S608 - TABLES only
        months = {row[0] for row in cursor.fetchall()}
        current = today.replace(day=1)
        months.update(_month_add(current, n) for n in range(MONTHS_AHEAD + 1))
        for month in sorted(months):
            cursor.execute(
                f"CREATE TABLE {table}_p{month:%Y_%m} PARTITION OF {table} "
                f"FOR VALUES FROM ('{month:%Y-%m-%d}') TO ('{_month_add(month, 1):%Y-%m-%d}')"
            )
        # Days outside every month partition (a reading back-dated years, a month not yet made)
        # land here instead of being refused.
        cursor.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
    cursor.execute(f"INSERT INTO {table} SELECT * FROM {old}")  # noqa: S608 - TABLES only
    # On the way back, the month partitions go with their parent (their rows are copied).
    cursor.execute(f"DROP TABLE {old}")
    for statement in keys + indexes:
        cursor.execute(statement)


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    today = datetime.now(UTC).date()
    with schema_editor.connection.cursor() as cursor:
        for table in TABLES:
            _rebuild(cursor, table, partitioned=True, today=today)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    today = datetime.now(UTC).date()
    with schema_editor.connection.cursor() as cursor:
        for table in TABLES:
            _rebuild(cursor, table, partitioned=False, today=today)


class Migration(migrations.Migration):
    dependencies = [("meters", "0005_meter_events"), ("billing", "0018_affordability_roles")]
    operations = [migrations.RunPython(forward, backward, elidable=False)]
