"""Room on each page for a row's next version, on the tables a 15-minute push rewrites rows of:
an account's Balance and month total, and a meter-day's charged copy. None of the columns a push
changes is indexed, so PostgreSQL writes the new version on the same page (a HOT update) and
prunes the old one, without a new index entry or table growth, while the page has room.

Storage parameters belong to each partition of a partitioned table (billing_chargedday): the
month partitions made later get theirs from meters.partitions.FILLFACTOR."""

from django.db import migrations

TABLES = {"billing_balance": 70, "billing_chargemonth": 70}
PARTITIONED = {"billing_chargedday": 60}


def _tables(cursor):
    found = dict(TABLES)
    for table, fillfactor in PARTITIONED.items():
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s)",
            [table],
        )
        found.update({name: fillfactor for (name,) in cursor.fetchall()})
    return found


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table, fillfactor in _tables(cursor).items():
            cursor.execute(f"ALTER TABLE {table} SET (fillfactor = {int(fillfactor)})")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table in _tables(cursor):
            cursor.execute(f"ALTER TABLE {table} RESET (fillfactor)")


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0021_open_energy_day'),
        ('meters', '0008_charge_keyset'),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
