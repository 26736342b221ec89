"""Insight in the admin (docs/insight-alerts.md): each utility's insight policy, edited as its
other policies are, and the baselines the daily pass keeps, for staff answering "why was I told
my use is high?"."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from core.admin import ReadOnlyMixin, UtilityScopedAdmin
from insight.models import InsightPolicy, UsageBaseline


@admin.register(InsightPolicy)
class InsightPolicyAdmin(UtilityScopedAdmin):
    list_display = [
        "utility",
        "high_usage_percent",
        "high_usage_days",
        "baseline_days",
        "sanctioned_load_alerts",
        "bill_forecast_min_coverage_percent",
        "tod_shift_percent",
    ]
    list_select_related = ["utility"]
    # Each rule's fields together; docs/insight-alerts.md says which regime uses which.
    fieldsets = [
        (None, {"fields": ["utility"]}),
        (
            _("High-usage alert"),
            {
                "fields": ["high_usage_percent", "high_usage_days", "baseline_days"],
                "description": _(
                    "A household is told once per streak when its daily use stays this many "
                    "percent above the average of its own known days before the streak. Empty "
                    "percent: no alert."
                ),
            },
        ),
        (
            _("Sanctioned load"),
            {
                "fields": ["sanctioned_load_alerts"],
                "description": _(
                    "Once a day, when a 15-minute demand exceeded the account's sanctioned load "
                    "(set on the consumer account)."
                ),
            },
        ),
        (
            _("Bill forecast and time of day"),
            {
                "fields": [
                    "bill_forecast_min_coverage_percent",
                    "bill_forecast_coverage_days",
                    "tod_shift_percent",
                ]
            },
        ),
    ]

    def get_readonly_fields(self, request, obj=None):
        # A policy stays with its utility; another utility gets its own row.
        return ["utility"] if obj is not None else []


@admin.register(UsageBaseline)
class UsageBaselineAdmin(ReadOnlyMixin, UtilityScopedAdmin):
    """Written only by the daily pass (insight.daily): staff look, never edit."""

    utility_path = "account__utility"
    list_display = [
        "account",
        "last_day",
        "streak",
        "alerted_streak_from",
        "peak_demand_w",
        "updated_at",
    ]
    list_filter = ["account__utility"]
    search_fields = ["=account__consumer_id"]
    list_select_related = ["account__utility"]
    fields = [
        "account",
        "last_day",
        "daily_wh",
        "streak",
        "alerted_streak_from",
        "peak_demand_w",
        "updated_at",
    ]
    readonly_fields = fields
