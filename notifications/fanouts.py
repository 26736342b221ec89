"""Fan-outs: one alert to a large audience, its texts rendered once per language and its inbox
rows written set-based; whole in the caller's transaction (fanout_create), or streamed a chunk at
a time after the event commits (fanout_open, fanout_write, fanout_finish). Sending them is in
notifications.delivery. Callers import them from notifications.services.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from accounts.models import Language, User, Utility
from core.errors import DomainError
from notifications import categories as c
from notifications import delivery
from notifications.messages import message_render, push_data
from notifications.models import Fanout, Notification

INSERT_CHUNK = 5000


# A fan-out's key and an alert's (alert_create) follow one rule.
def _check_key(dedupe_key: str) -> str:
    if not isinstance(dedupe_key, str) or not dedupe_key or len(dedupe_key) > 200:
        raise DomainError.for_field(
            "dedupe_key", "Give a key of 1 to 200 characters.", code="invalid_dedupe_key"
        )
    return dedupe_key


def _chunks(values: Iterable[int], size: int) -> Iterator[list[int]]:
    iterator = iter(values)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _texts(
    *, category: str, context: dict[str, Any], utility: Utility | None
) -> dict[str, dict[str, str]]:
    """The alert's title and body in every language, rendered once for the whole audience."""
    texts = {}
    for language in Language.values:
        rendered = message_render(
            category=category, language=language, context=context, utility=utility
        )
        texts[language] = {"title": rendered.title, "body": rendered.body}
    return texts


def _inbox_insert(*, fanout: Fanout, users: QuerySet[User]) -> list[int]:
    """Write the fan-out's inbox row of each of `users` in one INSERT … SELECT, each in the
    user's language (English when the fan-out has no text in it); a user who already has an alert
    under the key keeps it and is left out. Returns the new rows' ids.

    Set-based on purpose: the Python objects of a city's rows (bulk_create) were most of the
    minutes a city's outage took to publish (issue 19)."""
    select, select_params = users.values_list("id", "language").order_by().query.sql_with_params()
    ops = connection.ops
    table, quote = ops.quote_name(Notification._meta.db_table), ops.quote_name
    now = ops.adapt_datetimefield_value(timezone.now())
    fallback = fanout.texts["en"]

    def in_language(part: str) -> tuple[str, list[Any]]:
        whens = [(language, text[part]) for language, text in fanout.texts.items()]
        sql = "CASE chosen.language " + "WHEN %s THEN %s " * len(whens) + "ELSE %s END"
        return sql, [*(value for pair in whens for value in pair), fallback[part]]

    title_sql, title_params = in_language("title")
    body_sql, body_params = in_language("body")
    # Column → (SQL, params). Nullable columns left out are NULL (a bare NULL in a SELECT list is
    # text to PostgreSQL, which a timestamp column refuses).
    values: dict[str, tuple[str, list[Any]]] = {
        "user_id": ("chosen.id", []),
        "category": ("%s", [fanout.category]),
        "dedupe_key": ("%s", [fanout.dedupe_key]),
        "title": (title_sql, title_params),
        "body": (body_sql, body_params),
        "language": ("chosen.language", []),
        "data": ("%s", [ops.adapt_json_value(fanout.data, DjangoJSONEncoder)]),
        "fanout_id": ("%s", [fanout.pk]),
        "created_at": ("%s", [now]),
        "push_status": ("%s", [Notification.PushStatus.PENDING]),
        # Queued right after commit: the sweeper re-queues what a broker outage left, after grace.
        "dispatched_at": ("%s", [now]),
        "next_attempt_at": ("%s", [now]),
        "push_attempts": ("0", []),
        "devices_done": ("%s", [ops.adapt_json_value([], DjangoJSONEncoder)]),
        "sms_status": ("%s", [Notification.SmsStatus.NONE]),
    }
    if fanout.utility_id is not None:
        values["utility_id"] = ("%s", [fanout.utility_id])
    columns = ", ".join(quote(column) for column in values)
    expressions = ", ".join(sql for sql, _ in values.values())
    params = [param for _, column_params in values.values() for param in column_params]
    # Only the model's own names and Django's compiled SELECT are put in; values are params.
    # "WHERE true" keeps SQLite from reading ON CONFLICT as a join's ON.
    statement = (
        f"INSERT INTO {table} ({columns}) SELECT {expressions} "  # noqa: S608
        f"FROM ({select}) chosen WHERE true "
        f"ON CONFLICT ({quote('user_id')}, {quote('dedupe_key')}) DO NOTHING "
        f"RETURNING {quote('id')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [*params, *select_params])
        return sorted(row[0] for row in cursor.fetchall())


def fanout_create(
    *,
    user_ids: Iterable[int],
    category: str,
    dedupe_key: str,
    context: dict[str, Any],
    utility: Utility | None = None,
) -> tuple[Fanout, bool]:
    """One alert to a large audience, written whole in the caller's transaction (an unplanned
    outage's notice to a transformer's households; a city's goes by fanout_open instead).

    1. The Fanout row is unique per dedupe_key: calling again (a retried publish) adds nothing.
    2. Inbox rows are written set-based in the caller's transaction (one statement for a
       queryset of ids, one per INSERT_CHUNK ids of a list), rendered once per language; a user
       who already has an alert under this key keeps it (and is not pushed twice).
    3. On commit a task splits the rows into push batches of NOTIFY_BATCH_SIZE that any worker
       takes; progress is visible in the admin (Fanouts) and through selectors.fanout_progress.
    `user_ids` may be any iterable of ids, a values_list queryset included; unknown ids are skipped.
    """
    c.category_get(category)
    _check_key(dedupe_key)
    texts = _texts(category=category, context=context, utility=utility)
    data = push_data(category=category, context=context)
    now = timezone.now()
    with transaction.atomic():
        fanout, created = Fanout.objects.get_or_create(
            dedupe_key=dedupe_key,
            defaults={
                "category": category,
                "utility": utility,
                "created_at": now,
                "texts": texts,
                "data": data,
            },
        )
        if not created:
            return fanout, False
        if isinstance(user_ids, QuerySet):
            chunks: Iterable[Any] = [user_ids]
        else:
            chunks = _chunks(user_ids, INSERT_CHUNK)
        written = 0
        for chunk in chunks:
            users = User.objects.filter(pk__in=chunk)
            written += len(_inbox_insert(fanout=fanout, users=users))
        fanout.audience_size = written
        fanout.progressed_at = timezone.now()
        fanout.save(update_fields=["audience_size", "progressed_at"])
        transaction.on_commit(lambda: delivery.fanout_dispatch_safely(fanout_id=fanout.pk))
    return fanout, True


# --- Streamed fan-outs: the audience written a chunk at a time after the event commits ---------
# A city's outage notice (a million people) is not written in the publishing transaction: staff
# would wait minutes, and the first push would leave only after the last row. The caller (here
# outages.services) opens the fan-out in its transaction, writes chunks in its own order with
# fanout_write, each chunk committed and its pushes queued at once, and closes or stops it.


def fanout_open(
    *,
    category: str,
    dedupe_key: str,
    context: dict[str, Any],
    utility: Utility | None = None,
) -> tuple[Fanout, bool]:
    """Open a streamed fan-out (`writing`, nobody written yet), its texts rendered once; returns
    it and whether it is new. An existing key (a retried step) returns that one, in whatever state
    it is: the caller writes nothing more for it."""
    c.category_get(category)
    _check_key(dedupe_key)
    now = timezone.now()
    return Fanout.objects.get_or_create(
        dedupe_key=dedupe_key,
        defaults={
            "category": category,
            "utility": utility,
            "created_at": now,
            "progressed_at": now,
            "state": Fanout.State.WRITING,
            "texts": _texts(category=category, context=context, utility=utility),
            "data": push_data(category=category, context=context),
        },
    )


def fanout_write(*, fanout: Fanout, user_ids: QuerySet | list[int], through: int) -> int:
    """Write one chunk of a streamed fan-out: the inbox rows of `user_ids` (a values_list
    queryset, put in the statement as a subquery, or a list) in one statement, `written_through` moved to `through` (the caller's cursor), and the chunk's pushes
    queued as soon as the caller's transaction commits. The caller holds the fan-out's row lock
    (select_for_update) and has checked that it is still `writing` at the cursor it expected.
    Returns how many rows are new."""
    if fanout.state != Fanout.State.WRITING:
        raise ValueError(f"Fan-out {fanout.pk} is {fanout.state}, not writing.")
    ids = _inbox_insert(fanout=fanout, users=User.objects.filter(pk__in=user_ids))
    Fanout.objects.filter(pk=fanout.pk).update(
        audience_size=F("audience_size") + len(ids),
        written_through=through,
        progressed_at=timezone.now(),
    )
    fanout.refresh_from_db(fields=["audience_size", "written_through", "progressed_at"])
    if ids:
        transaction.on_commit(lambda: delivery.fanout_rows_dispatch(notification_ids=ids))
    return len(ids)


def fanout_finish(*, fanout: Fanout, state: str = Fanout.State.WRITTEN) -> None:
    """The streamed fan-out's audience is all written (`written`), or what it says no longer
    holds and nobody more is told (`stopped`; rows already written still go)."""
    Fanout.objects.filter(pk=fanout.pk, state=Fanout.State.WRITING).update(
        state=state, progressed_at=timezone.now()
    )
    fanout.refresh_from_db(fields=["state", "progressed_at"])
