"""Affordability in the admin (docs/affordability.md): the automatic top-ups consumers set and what
became of each firing, and the emergency credit they took. Consumers set and change these in the
app; staff answering a call read them here."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from billing.admin import ReadOnlyAdmin
from billing.models import AutoTopUp, AutoTopUpRun, EmergencyCredit
from core.admin import HistoryInline, money_column
from core.timebuckets import moment_text


class RunInline(HistoryInline):
    model = AutoTopUpRun
    fields = ["occurrence", "amount_text", "status", "attempts", "error", "created_local", "topup"]
    ordering = ["-created_at"]
    amount_text = money_column("amount", description="Amount", utility="rule__account__utility")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("rule__account__utility")

    @admin.display(description=_("Fired at"))
    def created_local(self, run: AutoTopUpRun) -> str:
        return moment_text(run.created_at, run.rule.account.utility.zone)


@admin.register(AutoTopUp)
class AutoTopUpAdmin(ReadOnlyAdmin):
    list_display = [
        "account",
        "trigger",
        "amount_text",
        "threshold_text",
        "monthly_cap_text",
        "next_run_local",
        "is_active",
    ]
    list_filter = ["trigger", "is_active", "account__utility"]
    search_fields = ["=account__consumer_id"]
    list_select_related = ["account__utility"]
    inlines = [RunInline]
    fields = [
        "account",
        "user",
        "payment_method",
        "trigger",
        "amount_text",
        "threshold_text",
        "frequency",
        "weekday",
        "day_of_month",
        "at_time",
        "next_run_local",
        "monthly_cap_text",
        "armed",
        "is_active",
        "created_local",
        "ended_local",
        "end_reason",
    ]
    readonly_fields = fields
    amount_text = money_column("amount", description="Amount", utility="account__utility")
    threshold_text = money_column(
        "threshold", description="At or below", utility="account__utility"
    )
    monthly_cap_text = money_column(
        "monthly_cap", description="Monthly cap", utility="account__utility"
    )

    @admin.display(description=_("Next run"), ordering="next_run_at")
    def next_run_local(self, rule: AutoTopUp) -> str:
        return moment_text(rule.next_run_at, rule.account.utility.zone)

    @admin.display(description=_("Set up at"), ordering="created_at")
    def created_local(self, rule: AutoTopUp) -> str:
        return moment_text(rule.created_at, rule.account.utility.zone)

    @admin.display(description=_("Ended at"))
    def ended_local(self, rule: AutoTopUp) -> str:
        return moment_text(rule.ended_at, rule.account.utility.zone)


@admin.register(EmergencyCredit)
class EmergencyCreditAdmin(ReadOnlyAdmin):
    list_display = ["account", "amount_text", "fee_text", "status", "taken_local", "repay_by_local"]
    list_filter = ["status", "account__utility"]
    search_fields = ["=account__consumer_id"]
    list_select_related = ["account__utility"]
    fields = [
        "account",
        "amount_text",
        "fee_text",
        "status",
        "taken_local",
        "taken_by",
        "repay_by_local",
        "ended_local",
        "fee_entry",
    ]
    readonly_fields = fields
    amount_text = money_column("amount", description="Amount", utility="account__utility")
    fee_text = money_column("fee", description="Fee", utility="account__utility")

    @admin.display(description=_("Taken at"), ordering="taken_at")
    def taken_local(self, credit: EmergencyCredit) -> str:
        return moment_text(credit.taken_at, credit.account.utility.zone)

    @admin.display(description=_("Repay by"), ordering="repay_by")
    def repay_by_local(self, credit: EmergencyCredit) -> str:
        return moment_text(credit.repay_by, credit.account.utility.zone)

    @admin.display(description=_("Ended at"))
    def ended_local(self, credit: EmergencyCredit) -> str:
        return moment_text(credit.ended_at, credit.account.utility.zone)
