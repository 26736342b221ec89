"""Hand-written SQL for the few reads behind every screen of the app (the balance, a meter and its
tenancies). There the ORM's work to build a query, about a millisecond for a join with an
aggregate, costs more than all the rest of the request; a plain query costs a twentieth of that.

Each column is converted as the ORM converts the model field it comes from, so PostgreSQL and
SQLite give the same Python values (SQLite gives floats for decimals and text for an aggregate of
timestamps), and instances are made with Model.from_db, as the ORM makes them: a field not read is
deferred, never a silent default.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from django.db import connection, connections, router
from django.db.models import Field, Model, QuerySet


def select(sql: str, params: Sequence, fields: Sequence[Field | None]) -> list[list]:
    """The rows of `sql`, column i converted as the model field `fields[i]` (None: as read).
    Aware datetimes are the only parameters adapted; give others as the database takes them.
    Read where the router sends the first field's model (a standby, for a consumer's read)."""
    connection = _read_connection(fields)
    steps = _conversions(connection.vendor, tuple(fields))
    # Parameters as the ORM sends them: SQLite keeps timestamps as UTC text.
    params = [
        connection.ops.adapt_datetimefield_value(value) if isinstance(value, datetime) else value
        for value in params
    ]
    with _cursor(connection) as cursor:
        cursor.execute(sql, params)
        rows = [list(row) for row in cursor.fetchall()]
    for row in rows:
        for index, column, converters in steps:
            for convert in converters:
                row[index] = convert(row[index], column, connection)
    return rows


def _read_connection(fields: Sequence[Field | None]):
    """The connection the router reads the fields' model from (default without replicas)."""
    model = next((field.model for field in fields if field is not None), None)
    return connections[router.db_for_read(model)] if model is not None else connection


def _cursor(connection):
    """Django's cursor (logged, wrapped, counted by tests) over, on PostgreSQL, a server-binding
    psycopg cursor: the parameters travel apart from the text, so the database can keep each
    query's plan once the connection allows prepared statements (DATABASES OPTIONS
    "prepare_threshold"; Django leaves them off for connection poolers that cannot hold them)."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    import psycopg

    connection.ensure_connection()
    connection.validate_thread_sharing()
    cursor = psycopg.Cursor(connection.connection)
    if connection.queries_logged:
        return connection.make_debug_cursor(cursor)
    return connection.make_cursor(cursor)


@lru_cache(maxsize=128)
def _conversions(vendor: str, fields: tuple[Field | None, ...]) -> tuple:
    """The ORM's converters of each column (they depend on the backend and the field only)."""
    steps = []
    for index, field in enumerate(fields):
        if field is None:
            continue
        column = field.cached_col
        converters = [
            *connection.ops.get_db_converters(column),
            *field.get_db_converters(connection),
        ]
        if converters:
            steps.append((index, column, tuple(converters)))
    return tuple(steps)


def columns(model: type[Model], names: Sequence[str]) -> list[Field]:
    """The fields of `model` by attribute name (`utility_id` for a foreign key), in order."""
    by_attname = {field.attname: field for field in model._meta.concrete_fields}
    return [by_attname[name] for name in names]


def instance(model: type[Model], names: Sequence[str], values: Sequence) -> Model:
    """A model instance from converted values of the fields `names`, as the ORM loads one."""
    given = dict(zip(names, values, strict=True))
    ordered = [f.attname for f in model._meta.concrete_fields if f.attname in given]
    return model.from_db(connection.alias, ordered, [given[name] for name in ordered])


def insert_select(
    model: type[Model],
    columns: Sequence[str],
    values: str,
    queryset: QuerySet,
    params: Sequence = (),
    *,
    conflict: Sequence[str] = (),
) -> int:
    """INSERT INTO the model's table (`columns`) SELECT `values` FROM (`queryset`) AS src: rows
    made in the database from a query, none of them passing through Python. `values` names src's
    columns and takes `params` for its %s (before the query's own); with `conflict`, a row whose
    key is there already is skipped. Only the model's table name, these literal column lists and
    Django's own compiled SELECT are put in the text. Returns how many rows were inserted."""
    select, select_params = queryset.query.sql_with_params()
    table = connection.ops.quote_name(model._meta.db_table)
    sql = f"INSERT INTO {table} ({', '.join(columns)}) SELECT {values} FROM ({select}) src"  # noqa: S608
    if conflict:
        # "WHERE true" keeps SQLite from reading ON CONFLICT as the ON of a join.
        sql += f" WHERE true ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *select_params])
        return cursor.rowcount
