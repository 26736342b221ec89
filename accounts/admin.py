from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db import transaction
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from accounts import services
from accounts.forms import ConsumerAccountForm, ConsumerImportForm, UtilityForm
from accounts.models import (
    AccountLink,
    ConsumerAccount,
    OneTimeCode,
    User,
    Utility,
    UtilityCalendarDay,
)
from core.admin import HistoryInline, UtilityScopedAdmin, scope_queryset
from core.workdays import country_holiday_names


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ["username", "phone", "first_name", "language", "is_staff", "last_login"]
    search_fields = ["username", "phone", "first_name", "last_name", "email"]
    fieldsets = (*BaseUserAdmin.fieldsets, ("Consumer", {"fields": ("phone", "language")}))


@admin.register(Utility)
class UtilityAdmin(UtilityScopedAdmin):
    form = UtilityForm
    list_display = ["code", "name", "country", "timezone", "currency", "helpline", "is_active"]
    search_fields = ["code", "name"]
    list_filter = ["country", "is_active"]
    fieldsets = (
        (None, {"fields": ("code", "name", "country", "timezone", "helpline", "is_active")}),
        ("Currency", {"fields": ("currency", "currency_minor_unit")}),
        ("Languages", {"fields": ("languages", "default_language")}),
        ("Calendar", {"fields": ("weekend_days", "week_starts_on", "holiday_subdivision")}),
        (
            "Policy",
            {
                "fields": (
                    "min_topup",
                    "late_fine_percent",
                    "unpaid_bills_for_prepaid_conversion",
                    "outage_notice_hours",
                )
            },
        ),
    )


class AccountLinkInline(HistoryInline):
    model = AccountLink
    fields = ["user", "verified_mobile", "visible_from", "created_at", "unlinked_at", "end_reason"]


@admin.register(ConsumerAccount)
class ConsumerAccountAdmin(UtilityScopedAdmin):
    list_display = ["consumer_id", "utility", "name", "registered_mobile", "status", "updated_at"]
    list_filter = ["utility", "status"]
    search_fields = ["consumer_id", "name", "registered_mobile", "premises_address"]
    list_select_related = ["utility"]
    form = ConsumerAccountForm
    readonly_fields = ["registered_mobile_since", "closed_at", "created_at", "updated_at"]
    inlines = [AccountLinkInline]
    change_list_template = "admin/accounts/consumeraccount/change_list.html"

    def save_model(self, request, obj, form, change):
        """A new registered mobile ends the old number's links (their holders are told); closing
        ends every link. Both go through the services every other path uses. To settle the money
        of a tenant leaving, use Move out (Billing → Moves)."""
        with transaction.atomic():
            if change:
                before = ConsumerAccount.objects.select_for_update().get(pk=obj.pk)
                services.account_mobile_change(account=before, mobile=obj.registered_mobile)
                if obj.status == ConsumerAccount.Status.CLOSED:
                    services.account_close(account=before)
                elif before.status == ConsumerAccount.Status.CLOSED:
                    before.closed_at = None
                obj.registered_mobile_since, obj.closed_at = (
                    before.registered_mobile_since,
                    before.closed_at,
                )
            super().save_model(request, obj, form, change)

    def get_urls(self):
        own = [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="accounts_consumeraccount_import",
            )
        ]
        return own + super().get_urls()

    def import_view(self, request):
        """Import master data from CSV; every row is checked first and nothing is written if one is wrong."""
        if not self.has_add_permission(request) or not self.has_change_permission(request):
            return redirect(reverse("admin:index"))
        report = None
        form = ConsumerImportForm(request.POST or None, request.FILES or None)
        form.fields["utility"].queryset = scope_queryset(
            form.fields["utility"].queryset, request.user
        )
        if request.method == "POST" and form.is_valid():
            utility = form.cleaned_data["utility"]
            rows, errors = services.consumer_accounts_read_csv(
                data=form.cleaned_data["file"].read()
            )
            if errors:
                report = services.ImportReport(errors=errors)
            else:
                report = services.consumer_accounts_import(utility=utility, rows=rows)
            if report.ok:
                self.audit(
                    request,
                    utility,
                    "import-consumers",
                    {"created": report.created, "updated": report.updated},
                )
                self.message_user(
                    request,
                    f"Imported into {utility}: {report.created} created, {report.updated} updated, "
                    f"{report.unchanged} unchanged.",
                    messages.SUCCESS,
                )
                return redirect(reverse("admin:accounts_consumeraccount_changelist"))
            self.message_user(
                request,
                f"Nothing was imported: {len(report.errors)} problems. Fix them and upload again.",
                messages.ERROR,
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import consumer accounts from CSV",
            "form": form,
            "report": report,
        }
        return TemplateResponse(request, "admin/accounts/consumeraccount/import.html", context)


@admin.register(AccountLink)
class AccountLinkAdmin(UtilityScopedAdmin):
    list_display = ["id", "user", "account", "created_at", "unlinked_at"]
    list_filter = ["account__utility"]
    search_fields = ["user__phone", "account__consumer_id"]
    raw_id_fields = ["user", "account"]
    readonly_fields = ["verified_mobile", "created_at"]


@admin.register(OneTimeCode)
class OneTimeCodeAdmin(UtilityScopedAdmin):
    """Read-only: support staff can see that a code was sent and spent, never the code."""

    list_display = ["id", "purpose", "phone", "created_at", "attempts", "used_at", "revoked_at"]
    list_filter = ["purpose"]
    search_fields = ["phone"]
    exclude = ["code_hash"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(UtilityCalendarDay)
class UtilityCalendarDayAdmin(UtilityScopedAdmin):
    """The days a utility's staff add to, or strike out of, the public holidays the package gives:
    every disconnection window and working-day deadline reads them (Utility.holidays_in)."""

    list_display = ["day", "name", "kind", "utility"]
    fields = ["utility", "day", "kind", "name"]
    list_filter = ["kind", "utility"]
    search_fields = ["name"]
    date_hierarchy = "day"
    change_list_template = "admin/accounts/utilitycalendarday/change_list.html"

    def changelist_view(self, request, extra_context=None):
        """Beside the staff's own days, the holidays the package gives each of the staff's
        utilities this year and next, so nobody adds a day that is already off."""
        year = timezone.now().year
        package = [
            (utility, day, name)
            for utility in scope_queryset(Utility.objects.all(), request.user)
            for y in (year, year + 1)
            for day, name in country_holiday_names(utility.country, y, utility.holiday_subdivision)
        ]
        extra_context = {**(extra_context or {}), "package_holidays": package}
        return super().changelist_view(request, extra_context=extra_context)
