from __future__ import annotations

from django.contrib import admin

from notifications import selectors
from notifications.models import Device, Fanout, Notification, NotificationPreference


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "platform", "app_version", "language", "last_seen_at"]
    list_filter = ["platform", "language"]
    search_fields = ["user__phone", "user__username"]
    readonly_fields = ["created_at", "last_seen_at"]
    raw_id_fields = ["user"]


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "category", "title", "push_status", "created_at", "read_at"]
    list_filter = ["category", "push_status", "language"]
    search_fields = ["user__phone", "dedupe_key"]
    raw_id_fields = ["user", "fanout"]
    readonly_fields = [f.name for f in Notification._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(Fanout)
class FanoutAdmin(admin.ModelAdmin):
    """Staff follow a large alert here: how many are sent, held, waiting or unreachable."""

    list_display = ["id", "category", "utility", "audience_size", "progress", "created_at"]
    list_filter = ["category", "utility"]
    readonly_fields = [
        "dedupe_key",
        "category",
        "utility",
        "audience_size",
        "created_at",
        "progress",
    ]

    def has_add_permission(self, request):
        return False

    @admin.display(description="progress")
    def progress(self, fanout: Fanout) -> str:
        p = selectors.fanout_progress(fanout=fanout)
        state = "done" if p["done"] else "in progress"
        return (
            f"{state}: {p['sent']} sent, {p['pending'] + p['sending']} waiting, {p['held']} held "
            f"for quiet hours, {p['no_device']} without a device, {p['off']} turned off, "
            f"{p['failed']} failed"
        )


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    list_display = ["user", "quiet_start", "quiet_end", "low_balance_amount", "low_balance_days"]
    raw_id_fields = ["user"]
