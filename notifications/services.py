"""Writes for notifications: device registration (push delivery arrives with the push module)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from core.errors import NotFound
from notifications.models import Device


def device_register(
    *,
    user: User,
    token: str,
    platform: str,
    app_version: str = "",
    language: str | None = None,
    replaces: str | None = None,
) -> tuple[Device, bool]:
    """Register or refresh a push token; return the device and whether it is new.

    1. A token already held by another user moves to this one: the phone changed hands or accounts,
       and the previous owner must stop getting this phone's alerts.
    2. `replaces` names this user's previous token for the same install (FCM rotates tokens); it is
       removed in the same transaction.
    3. Calling again with the same values changes nothing but last_seen_at: clients may retry freely.
    """
    now = timezone.now()
    with transaction.atomic():
        if replaces and replaces != token:
            Device.objects.filter(user=user, token=replaces).delete()
        # update_or_create locks the token's row; a concurrent first registration of the same
        # token is caught by the unique index and retried as an update.
        device, created = Device.objects.update_or_create(
            token=token,
            defaults={
                "user": user,
                "platform": platform,
                "app_version": app_version,
                "language": language or user.language,
                "last_seen_at": now,
            },
            create_defaults={
                "user": user,
                "platform": platform,
                "app_version": app_version,
                "language": language or user.language,
                "created_at": now,
                "last_seen_at": now,
            },
        )
    return device, created


def device_remove(*, user: User, device_id: int) -> None:
    deleted, _ = Device.objects.filter(pk=device_id, user=user).delete()
    if not deleted:
        raise NotFound("You have no such device.", code="device_not_found")
