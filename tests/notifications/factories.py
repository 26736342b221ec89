from __future__ import annotations

import factory
from django.utils import timezone

from notifications.models import Device, Notification, NotificationPreference
from tests.accounts.factories import UserFactory


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Device

    user = factory.SubFactory(UserFactory)
    token = factory.Sequence(lambda n: f"fcm-token-{n:06d}-" + "x" * 140)
    platform = Device.Platform.ANDROID
    language = factory.SelfAttribute("user.language")


class NotificationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Notification

    user = factory.SubFactory(UserFactory)
    category = "outage_restored"
    dedupe_key = factory.Sequence(lambda n: f"test:{n}")
    title = "Power is back"
    body = "Supply in Salmiya block 4 was restored."
    language = "en"
    data = factory.LazyFunction(lambda: {"type": "outage_restored"})
    created_at = factory.LazyFunction(timezone.now)
    push_status = Notification.PushStatus.SENT


class PreferenceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NotificationPreference

    user = factory.SubFactory(UserFactory)
