from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from core.admin import HistoryInline, UtilityScopedAdmin
from meters import selectors, services
from meters.models import (
    Feeder,
    GridArea,
    IngestBatch,
    Meter,
    MeterAssignment,
    ReadingCorrection,
    ServiceToken,
    Transformer,
)
from meters.storage import floor_to_interval


@admin.register(GridArea)
class GridAreaAdmin(UtilityScopedAdmin):
    list_display = ["code", "name", "utility"]
    list_filter = ["utility"]
    search_fields = ["code", "name"]


@admin.register(Feeder)
class FeederAdmin(UtilityScopedAdmin):
    list_display = ["code", "name", "area"]
    list_filter = ["area__utility", "area"]
    search_fields = ["code", "name"]


@admin.register(Transformer)
class TransformerAdmin(UtilityScopedAdmin):
    list_display = ["code", "name", "feeder"]
    list_filter = ["feeder__area__utility", "feeder"]
    search_fields = ["code", "name"]


class AssignmentInline(HistoryInline):
    model = MeterAssignment
    fields = ["account", "start", "end"]


def _load_chart(meter: Meter) -> str:
    """An inline SVG of the last 7 days, hourly kWh: no script, nothing fetched from elsewhere."""
    end = floor_to_interval(timezone.now())
    start = end - timedelta(days=7)
    series = selectors.meter_series(meter_id=meter.pk, start=start, end=end)
    hours = []
    for h in range(len(series) // 4):
        quality = series.quality[h * 4 : h * 4 + 4]
        present = sum(1 for q in quality if q in (1, 2))
        hours.append(sum(series.values[h * 4 : h * 4 + 4]) / 1000 if present else None)
    known = [v for v in hours if v is not None]
    if not known:
        return "No readings in the last 7 days."
    width, height, top = 840, 160, max(known) or 1
    points = " ".join(
        f"{i * width / len(hours):.1f},{height - v / top * (height - 10):.1f}"
        for i, v in enumerate(hours)
        if v is not None
    )
    labels = format_html_join(
        "",
        '<text x="{}" y="{}" font-size="10" fill="#666">{}</text>',
        (
            (
                d * width / 7 + 2,
                height + 12,
                (start + timedelta(days=d)).astimezone(meter.utility.zone).strftime("%a %d"),
            )
            for d in range(7)
        ),
    )
    return format_html(
        '<svg width="{}" height="{}" role="img" aria-label="Hourly energy, last 7 days">'
        '<polyline fill="none" stroke="#417690" stroke-width="1.5" points="{}"/>{}'
        '<text x="{}" y="10" font-size="10" text-anchor="end">peak {} kWh/h</text></svg>',
        width,
        height + 16,
        points,
        labels,
        width,
        f"{top:.2f}",
    )


@admin.register(Meter)
class MeterAdmin(UtilityScopedAdmin):
    list_display = [
        "serial",
        "utility",
        "account",
        "payment_mode",
        "status",
        "relay",
        "last_reading_at",
        "last_communication_at",
    ]
    list_filter = ["utility", "payment_mode", "status", "relay", "transformer__feeder__area"]
    search_fields = ["serial", "account__consumer_id", "account__name"]
    list_select_related = ["utility", "account"]
    raw_id_fields = ["account", "transformer"]
    readonly_fields = ["last_reading_at", "last_communication_at", "load_last_7_days"]
    inlines = [AssignmentInline]

    @admin.display(description="Load, last 7 days")
    def load_last_7_days(self, obj):
        return mark_safe(_load_chart(obj)) if obj.pk else "-"  # noqa: S308 - built with format_html

    def get_readonly_fields(self, request, obj=None):
        # A tenant changes by Move out and Move in (Billing → Moves), which settle the money and
        # tell the people concerned; the account here only sets a new meter's first tenancy.
        if obj is not None:
            return ["account", *self.readonly_fields]
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change and obj.account_id is not None:
            MeterAssignment.objects.create(meter=obj, account=obj.account, start=obj.installed_at)


@admin.register(ServiceToken)
class ServiceTokenAdmin(UtilityScopedAdmin):
    list_display = ["name", "utility", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["utility"]
    fields = ["utility", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    actions = ["revoke"]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        token, raw = services.service_token_create(utility=obj.utility, name=obj.name)
        obj.pk = token.pk
        self.audit(request, token, "add")
        self.message_user(
            request, f"Copy this token now; it is not shown again: {raw}", messages.WARNING
        )

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} tokens revoked.")


@admin.register(IngestBatch)
class IngestBatchAdmin(UtilityScopedAdmin):
    list_display = [
        "id",
        "utility",
        "source",
        "external_id",
        "received_at",
        "readings",
        "stored",
        "corrected",
        "unchanged",
        "rejected",
    ]
    list_filter = ["utility", "source"]
    search_fields = ["external_id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ReadingCorrection)
class ReadingCorrectionAdmin(UtilityScopedAdmin):
    list_display = [
        "meter",
        "interval_start",
        "old_wh",
        "old_quality",
        "new_wh",
        "new_quality",
        "corrected_at",
    ]
    search_fields = ["meter__serial"]
    raw_id_fields = ["meter", "batch"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
