"""Writes for notifications: devices, the inbox, preferences, and creating alerts (one, a
fan-out written at once, or a fan-out streamed a chunk at a time).

Sending them is in notifications.delivery; the push protocol in notifications.push.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, time
from decimal import Decimal
from itertools import islice
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from accounts.models import AccountLink, ConsumerAccount, Language, User, Utility
from core.errors import DomainError, NotFound
from core.money import money_quantize
from notifications import categories as c
from notifications import delivery, selectors
from notifications.messages import message_render, push_data
from notifications.models import (
    BalanceAlertState,
    Device,
    Fanout,
    Notification,
    NotificationPreference,
)

UNSET: Any = object()
INSERT_CHUNK = 5000


def device_register(
    *,
    user: User,
    token: str,
    platform: str,
    app_version: str = "",
    language: str | None = None,
    replaces: str | None = None,
    fid: str | None = None,
) -> tuple[Device, bool]:
    """Register or refresh a push token; return the device and whether it is new.

    1. A token already held by another user moves to this one: the phone changed hands or accounts,
       and the previous owner must stop getting this phone's alerts.
    2. `replaces` names this user's previous token for the same install (FCM rotates tokens); it is
       removed in the same transaction.
    3. Calling again with the same values changes nothing but last_seen_at: clients may retry freely.
    """
    now = timezone.now()
    values = {
        "user": user,
        "platform": platform,
        "app_version": app_version,
        "language": language or user.language,
        "last_seen_at": now,
    }
    if fid is not None:
        values["fid"] = fid
    with transaction.atomic():
        if replaces and replaces != token:
            Device.objects.filter(user=user, token=replaces).delete()
        # update_or_create locks the token's row; a concurrent first registration of the same
        # token is caught by the unique index and retried as an update.
        device, created = Device.objects.update_or_create(
            token=token, defaults=values, create_defaults={**values, "created_at": now}
        )
    return device, created


def device_remove(*, user: User, device_id: int) -> None:
    deleted, _ = Device.objects.filter(pk=selectors.id_or_none(device_id), user=user).delete()
    if not deleted:
        raise NotFound("You have no such device.", code="device_not_found")


# --- Creating alerts ------------------------------------------------------------------------


def _check_key(dedupe_key: str) -> str:
    if not isinstance(dedupe_key, str) or not dedupe_key or len(dedupe_key) > 200:
        raise DomainError.for_field(
            "dedupe_key", "Give a key of 1 to 200 characters.", code="invalid_dedupe_key"
        )
    return dedupe_key


def alert_create(
    *,
    user: User,
    category: str,
    dedupe_key: str,
    context: dict[str, Any],
    utility: Utility | None = None,
) -> tuple[Notification, bool]:
    """Put an alert in the user's inbox and push it once the caller's transaction commits.

    1. The title and body are rendered now, in the user's language (amounts in the utility's
       currency, times in its zone); the inbox shows them as sent.
    2. One row per (user, dedupe_key): a repeat of the same event returns the first row and sends
       nothing more. Pick keys that name the event: `outage:41:planned`, not a timestamp.
    3. The push is queued on commit (a rolled-back event sends nothing); if the broker is down
       then, the sweeper sends it later.
    Returns the row and whether it is new.
    """
    kind = c.category_get(category)
    _check_key(dedupe_key)
    rendered = message_render(
        category=category, language=user.language, context=context, utility=utility
    )
    with transaction.atomic():
        notification, created = Notification.objects.get_or_create(
            user=user,
            dedupe_key=dedupe_key,
            defaults={
                "category": kind.code,
                "title": rendered.title,
                "body": rendered.body,
                "language": user.language,
                "data": push_data(category=category, context=context),
                "utility": utility,
                "dispatched_at": timezone.now(),
            },
        )
        if created:
            transaction.on_commit(
                lambda: delivery.push_dispatch(notification_ids=[notification.pk], bulk=False)
            )
    return notification, created


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


# --- Balance alerts (called by billing after each charge and top-up) -------------------------


def _low_balance_levels(
    *, preference: NotificationPreference | None, utility: Utility
) -> tuple[Decimal, int]:
    amount = preference.low_balance_amount if preference else None
    if amount is None:
        amount = Decimal(settings.LOW_BALANCE_DEFAULT_AMOUNTS.get(utility.currency, "0"))
    days = preference.low_balance_days if preference else None
    if days is None:
        days = settings.LOW_BALANCE_DEFAULT_DAYS
    return amount, days


def balance_alerts_evaluate(
    *,
    account: ConsumerAccount,
    balance: Decimal,
    days_left: Decimal | None = None,
    disconnect_at: datetime | None = None,
    disconnect_earliest: datetime | None = None,
    topup_amount: Decimal | None = None,
) -> list[Notification]:
    """Alert every user linked to `account` whose balance thresholds were just crossed.

    Call it after each charge and top-up, inside the transaction that changed the balance.
    1. Per (user, account) a state row remembers which thresholds are armed; it is locked
       (select_for_update) because two charges evaluated at once would both see "armed" and alert twice.
    2. balance <= 0: a zero-balance alert (urgent), once until the balance is above zero again.
       Otherwise at or below the user's amount: a low-balance alert, re-armed only when the balance
       is back above it. days_left at or below the user's days: "about N days left", re-armed
       when the projection is back above.
    3. disconnect_at: a disconnection-pending alert naming when, once per announced time.
    The run-out forecast (billing.forecast), when given, goes into the low, days-left and zero
    alerts: their text then says when the supply could first be cut and what to top up by then.
    Returns the alerts created.
    """
    utility = account.utility
    created: list[Notification] = []
    runout = (
        {"disconnect_earliest": disconnect_earliest, "topup_amount": topup_amount}
        if disconnect_earliest is not None and topup_amount is not None
        else {}
    )
    links = AccountLink.objects.filter(
        account=account, unlinked_at__isnull=True, receives_alerts=True
    ).select_related("user")
    with transaction.atomic():
        for link in links:
            user = link.user
            BalanceAlertState.objects.get_or_create(user=user, account=account)
            state = BalanceAlertState.objects.select_for_update().get(user=user, account=account)
            preference = NotificationPreference.objects.filter(user=user).first()
            amount, days = _low_balance_levels(preference=preference, utility=utility)
            context = {"account_id": account.pk, "consumer_id": account.consumer_id}
            fire: list[tuple[str, str, dict[str, Any]]] = []

            if balance <= 0:
                if state.zero_armed:
                    fire.append((c.ZERO_BALANCE, "zero", {"balance": balance}))
                state.zero_armed = state.low_armed = state.days_armed = False
            else:
                state.zero_armed = True
                if balance <= amount:
                    if state.low_armed:
                        fire.append(
                            (c.LOW_BALANCE, "low", {"balance": balance, "threshold": amount})
                        )
                    state.low_armed = False
                else:
                    state.low_armed = True
                if days_left is not None:
                    if days_left <= days:
                        if state.days_armed:
                            fire.append(
                                (
                                    c.BALANCE_DAYS_LEFT,
                                    "days",
                                    {"balance": balance, "days": days_left},
                                )
                            )
                        state.days_armed = False
                    else:
                        state.days_armed = True

            if disconnect_at is None:
                state.disconnect_alerted_for = None
            elif state.disconnect_alerted_for != disconnect_at:
                state.disconnect_alerted_for = disconnect_at
                key = f"balance:{account.pk}:disconnect:{disconnect_at.isoformat()}"
                notification, new = alert_create(
                    user=user,
                    category=c.DISCONNECTION_PENDING,
                    dedupe_key=key,
                    context={**context, "disconnect_at": disconnect_at},
                    utility=utility,
                )
                if new:
                    created.append(notification)

            for category, kind, extra in fire:
                state.crossings += 1
                notification, new = alert_create(
                    user=user,
                    category=category,
                    dedupe_key=f"balance:{account.pk}:{kind}:{state.crossings}",
                    context={**context, **runout, **extra},
                    utility=utility,
                )
                if new:
                    created.append(notification)
            state.save()
    return created


# --- The inbox ------------------------------------------------------------------------------


def notification_mark_read(*, user: User, notification_id: object) -> Notification:
    notification = selectors.notification_get(user=user, notification_id=notification_id)
    if notification.read_at is None:
        notification.read_at = timezone.now()
        Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(
            read_at=notification.read_at
        )
    return notification


def notifications_mark_all_read(*, user: User) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).update(
        read_at=timezone.now()
    )


# --- Preferences ----------------------------------------------------------------------------


def preferences_update(
    *,
    user: User,
    categories: dict[str, bool] | None = None,
    low_balance_amount: Decimal | None = UNSET,
    low_balance_days: int | None = UNSET,
    quiet_hours: tuple[time, time] | None = UNSET,
) -> NotificationPreference:
    """Change what was given, leave the rest. Urgent categories cannot be turned off; quiet hours
    need a start and an end that differ (start after end spans midnight)."""
    with transaction.atomic():
        # A row lock: two settings screens saving at once must not lose each other's categories.
        NotificationPreference.objects.get_or_create(user=user)
        preference = NotificationPreference.objects.select_for_update().get(user=user)
        if categories is not None:
            disabled = set(preference.disabled_categories)
            for code, enabled in categories.items():
                category = c.category_get(code, field=f"categories.{code}")
                if category.urgent and not enabled:
                    raise DomainError.for_field(
                        f"categories.{code}",
                        "Urgent alerts cannot be turned off.",
                        code="category_is_urgent",
                    )
                (disabled.discard if enabled else disabled.add)(code)
            preference.disabled_categories = sorted(disabled)
        if low_balance_amount is not UNSET:
            if low_balance_amount is not None and low_balance_amount < 0:
                raise DomainError.for_field(
                    "low_balance_amount", "Give zero or more.", code="negative_threshold"
                )
            utility = selectors.preferences_utility(user=user)
            if low_balance_amount is not None and utility is not None:
                minor_unit = utility.currency_minor_unit
                if low_balance_amount != money_quantize(low_balance_amount, minor_unit=minor_unit):
                    raise DomainError.for_field(
                        "low_balance_amount",
                        f"At most {minor_unit} decimal places for this currency.",
                        code="too_many_decimals",
                    )
            preference.low_balance_amount = low_balance_amount
        if low_balance_days is not UNSET:
            if low_balance_days is not None and low_balance_days < 0:
                raise DomainError.for_field(
                    "low_balance_days", "Give zero or more.", code="negative_threshold"
                )
            preference.low_balance_days = low_balance_days
        if quiet_hours is not UNSET:
            if quiet_hours is None:
                preference.quiet_start = preference.quiet_end = None
            else:
                start, end = quiet_hours
                if start == end:
                    raise DomainError.for_field(
                        "quiet_hours",
                        "Quiet hours need a start and an end that differ.",
                        code="invalid_quiet_hours",
                    )
                preference.quiet_start, preference.quiet_end = start, end
        preference.save()
    return preference
