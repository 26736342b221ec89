from __future__ import annotations

from django.contrib import admin

from notifications.models import Device


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "platform", "app_version", "language", "last_seen_at"]
    list_filter = ["platform", "language"]
    search_fields = ["user__phone", "user__username"]
    readonly_fields = ["created_at", "last_seen_at"]
    raw_id_fields = ["user"]
