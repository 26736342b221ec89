"""Reads for notifications. Every consumer-facing read is scoped to the asking user."""

from __future__ import annotations

from datetime import time
from typing import TypedDict

from django.db.models import Count, QuerySet

from accounts.models import AccountLink, User, Utility
from core.errors import NotFound
from notifications.models import Device, Fanout, Notification, NotificationPreference

MAX_ID = 2**63 - 1  # bigint: a larger id in a URL is simply not there, not a database error


def id_or_none(value: object) -> int | None:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= MAX_ID else None


def devices_for_user(*, user: User) -> QuerySet[Device]:
    return Device.objects.filter(user=user)


def notifications_for_user(*, user: User, unread_only: bool = False) -> QuerySet[Notification]:
    queryset = Notification.objects.filter(user=user).order_by("-created_at", "-id")
    if unread_only:
        queryset = queryset.filter(read_at__isnull=True)
    return queryset


def notification_get(*, user: User, notification_id: object) -> Notification:
    pk = id_or_none(notification_id)
    notification = Notification.objects.filter(user=user, pk=pk).first() if pk else None
    if notification is None:
        raise NotFound("You have no such notification.", code="notification_not_found")
    return notification


def unread_count(*, user: User) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()


def preferences_get(*, user: User) -> NotificationPreference:
    """The user's preferences, or the defaults (unsaved) when they never changed any."""
    return NotificationPreference.objects.filter(user=user).first() or NotificationPreference(
        user=user
    )


def preferences_utility(*, user: User) -> Utility | None:
    """The utility whose currency the user's low-balance amount is in: that of the accounts the
    user holds (live links), when they share one currency. None when the user holds none, or
    holds accounts in several currencies."""
    links = AccountLink.objects.filter(user=user, unlinked_at__isnull=True)
    utilities = list(Utility.objects.filter(consumer_accounts__links__in=links).distinct())
    if len({(u.currency, u.currency_minor_unit) for u in utilities}) != 1:
        return None
    return utilities[0]


def quiet_hours_active(*, start: time | None, end: time | None, now: time) -> bool:
    if start is None or end is None or start == end:
        return False
    if start < end:
        return start <= now < end
    return now >= start or now < end  # spans midnight


class FanoutProgress(TypedDict):
    audience: int
    pending: int
    held: int
    sending: int
    sent: int
    no_device: int
    no_config: int
    off: int
    failed: int
    done: bool


def fanout_progress(*, fanout: Fanout) -> FanoutProgress:
    counts = dict(
        Notification.objects.filter(fanout=fanout)
        .values_list("push_status")
        .annotate(n=Count("id"))
        .values_list("push_status", "n")
    )
    progress: FanoutProgress = {
        "audience": fanout.audience_size,
        **{status: counts.get(status, 0) for status in Notification.PushStatus.values},  # type: ignore[typeddict-item]
        "done": False,
    }
    # A stream still writing its audience has more to send than its rows show yet.
    progress["done"] = (
        fanout.state != Fanout.State.WRITING and progress["pending"] + progress["sending"] == 0
    )
    return progress
