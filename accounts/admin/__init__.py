from __future__ import annotations

from datetime import UTC

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.forms import UtilityForm
from accounts.models import (
    AccountLink,
    OneTimeCode,
    User,
    Utility,
    UtilityCalendarDay,
)
from core.admin import UtilityScopedAdmin, scope_queryset
from core.phone import phone_mask
from core.timebuckets import moment_text
from core.workdays import country_holiday_names


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ["username", "phone", "first_name", "language", "is_staff", "last_login"]
    search_fields = ["username", "phone", "first_name", "last_name", "email"]
    # A person belongs to no one utility: their dates are shown in UTC, saying so, and are the
    # system's to keep (sign-ins set one, joining the other).
    fieldsets = (
        *[
            fieldset
            for fieldset in BaseUserAdmin.fieldsets
            if "last_login" not in fieldset[1]["fields"]
        ],
        (_("Important dates"), {"fields": ("last_login_text", "date_joined_text")}),
        ("Consumer", {"fields": ("phone", "language")}),
    )
    readonly_fields = ["last_login_text", "date_joined_text"]

    @admin.display(description=_("Last login"))
    def last_login_text(self, user: User) -> str:
        return moment_text(user.last_login, UTC)

    @admin.display(description=_("Date joined"))
    def date_joined_text(self, user: User) -> str:
        return moment_text(user.date_joined, UTC)


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
                    "reading_retention_months",
                )
            },
        ),
    )


@admin.register(AccountLink)
class AccountLinkAdmin(UtilityScopedAdmin):
    list_display = ["account", "mobile_masked", "created_local", "ended_local", "end_reason"]
    list_filter = ["account__utility"]
    list_select_related = ["account__utility"]
    # By consumer id here; the console (console/accounts.py) widens it to every key staff hold.
    search_fields = ["=account__consumer_id"]
    account_path = "account"
    raw_id_fields = ["user"]
    autocomplete_fields = ["account"]
    readonly_fields = ["verified_mobile", "created_at"]

    @admin.display(description=_("Mobile"))
    def mobile_masked(self, link: AccountLink) -> str:
        return phone_mask(link.verified_mobile)

    @admin.display(description=_("Linked at"), ordering="created_at")
    def created_local(self, link: AccountLink) -> str:
        return moment_text(link.created_at, link.account.utility.zone)

    @admin.display(description=_("Ended at"), ordering="unlinked_at")
    def ended_local(self, link: AccountLink) -> str:
        return moment_text(link.unlinked_at, link.account.utility.zone)


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


# The consumer account's admin and its page live beside this module; imported last so that they
# may use what is above.
from accounts.admin.consumers import ConsumerAccountAdmin  # noqa: E402

__all__ = ["ConsumerAccountAdmin"]
