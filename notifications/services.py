"""Writes for notifications: devices, the inbox, preferences, and creating alerts (one here; a
fan-out written at once, or a fan-out streamed a chunk at a time, in notifications.fanouts and
re-exported from here).

Sending them is in notifications.delivery; the push protocol in notifications.push.
"""

from __future__ import annotations

from datetime import datetime, time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import AccountLink, ConsumerAccount, User, Utility
from core.errors import DomainError, NotFound
from core.money import money_quantize
from notifications import categories as c
from notifications import delivery, selectors

# Re-exported: callers create fan-outs through `notifications.services`; alert_create checks
# its key by the fan-outs' rule.
from notifications.fanouts import (  # noqa: F401
    _check_key,
    fanout_create,
    fanout_finish,
    fanout_open,
    fanout_write,
)
from notifications.messages import message_render, push_data
from notifications.models import (
    BalanceAlertState,
    Device,
    Notification,
    NotificationPreference,
)

UNSET: Any = object()


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
