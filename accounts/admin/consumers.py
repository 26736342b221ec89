"""Consumer accounts in the admin: the list, the form and the CSV import. The console
(console/accounts.py) builds on this admin: the search by every key staff hold and the page they
answer a call from, which read every domain app and so sit above them."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from accounts import services
from accounts.forms import ConsumerAccountForm, ConsumerImportForm
from accounts.models import AccountShare, ConsumerAccount
from core.admin import HistoryInline, UtilityScopedAdmin, scope_queryset
from core.phone import phone_mask
from core.timebuckets import moment_text


class ShareInline(HistoryInline):
    """Who the holder shared the account with, and what each may do (accounts.shares): staff
    answering a call see it; only the holder changes it, in the app."""

    model = AccountShare
    fk_name = "account"
    fields = [
        "phone_masked",
        "status",
        "can_view",
        "can_pay",
        "receives_alerts",
        "created_local",
        "ended_local",
    ]
    verbose_name_plural = _("Shared with")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("account__utility")

    @admin.display(description=_("Mobile"))
    def phone_masked(self, share: AccountShare) -> str:
        return phone_mask(share.phone)

    @admin.display(description=_("Invited at"))
    def created_local(self, share: AccountShare) -> str:
        return moment_text(share.created_at, share.account.utility.zone)

    @admin.display(description=_("Ended at"))
    def ended_local(self, share: AccountShare) -> str:
        return moment_text(share.ended_at, share.account.utility.zone)


@admin.register(ConsumerAccount)
class ConsumerAccountAdmin(UtilityScopedAdmin):
    list_display = ["consumer_id", "name", "utility_code", "mobile_masked", "status"]
    list_display_links = ["consumer_id", "name"]
    list_filter = ["utility", "status"]
    # Exact keys only: a search that could not use an index would scan a million accounts.
    search_fields = ["=consumer_id"]
    list_select_related = ["utility"]
    list_per_page = 50
    form = ConsumerAccountForm
    inlines = [ShareInline]
    change_list_template = "admin/accounts/consumeraccount/change_list.html"
    fields = [
        "utility",
        "consumer_id",
        "registered_mobile",
        "name",
        "premises_address",
        "sanctioned_load_kw",
        "status",
        "registered_mobile_since_local",
        "closed_local",
        "created_local",
        "updated_local",
    ]
    readonly_fields = [
        "registered_mobile_since_local",
        "closed_local",
        "created_local",
        "updated_local",
        "mobile_masked",
    ]

    @admin.display(description=_("Utility"), ordering="utility__code")
    def utility_code(self, account: ConsumerAccount) -> str:
        return account.utility.code

    @admin.display(description=_("Registered mobile"))
    def mobile_masked(self, account: ConsumerAccount) -> str:
        return phone_mask(account.registered_mobile)

    def _local(self, account: ConsumerAccount, field: str) -> str:
        return moment_text(getattr(account, field), account.utility.zone)

    @admin.display(description=_("Registered mobile since"))
    def registered_mobile_since_local(self, account: ConsumerAccount) -> str:
        return self._local(account, "registered_mobile_since")

    @admin.display(description=_("Closed at"))
    def closed_local(self, account: ConsumerAccount) -> str:
        return self._local(account, "closed_at")

    @admin.display(description=_("Created at"))
    def created_local(self, account: ConsumerAccount) -> str:
        return self._local(account, "created_at")

    @admin.display(description=_("Updated at"))
    def updated_local(self, account: ConsumerAccount) -> str:
        return self._local(account, "updated_at")

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        if obj is None:
            return [f for f in fields if not f.endswith("_local")]
        if not self.has_change_permission(request, obj):
            # Read-only staff see the number masked, as everywhere else on the page.
            fields[fields.index("registered_mobile")] = "mobile_masked"
        return fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("utility")

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
            raise PermissionDenied
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
