from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import User
from notifications.models import Device


def devices_for_user(*, user: User) -> QuerySet[Device]:
    return Device.objects.filter(user=user)
