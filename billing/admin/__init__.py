from __future__ import annotations

import uuid
from decimal import Decimal

from django import forms
from django.contrib import admin
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from billing import charging, moves
from billing.admin.pages import account_field, accounts_scope, next_url
from billing.admin.search import SEARCH_HELP, AccountSearchMixin, search_accounts
from billing.ledger import ledger_post
from billing.models import (
    Balance,
    Bill,
    BillingPolicy,
    Conversion,
    LedgerEntry,
    RelayCommand,
    Tariff,
    TariffPeriod,
    TariffSlab,
)
from core.admin import (
    MoneyForm,
    ReadOnlyMixin,
    UtilityScopedAdmin,
    money_column,
    permission_require,
)
from core.errors import DomainError
from core.money import utility_money
from core.timebuckets import moment_text


class ReadOnlyAdmin(ReadOnlyMixin, UtilityScopedAdmin):
    pass


class AdjustmentForm(forms.Form):
    account = account_field(LedgerEntry)
    amount = forms.DecimalField(
        max_digits=14, decimal_places=3, help_text=_("Positive credits, negative debits.")
    )
    reason = forms.CharField(
        widget=forms.Textarea,
        min_length=10,
        help_text=_("Why: the consumer sees it on the statement."),
    )


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    """The ledger cannot be edited; a correction is a new entry (Staff adjustment)."""

    list_display = [
        "created_local",
        "account",
        "kind",
        "amount_text",
        "balance_after_text",
        "created_by",
    ]
    list_display_links = ["created_local"]
    list_filter = ["kind", "account__utility"]
    search_fields = ["=account__consumer_id"]
    search_help_text = SEARCH_HELP
    account_path = "account"
    list_select_related = ["account__utility", "created_by"]
    change_list_template = "admin/billing/ledgerentry/change_list.html"
    # Amounts are stored with 3 decimals whatever the currency: shown in the currency's own.
    fields = [
        "account",
        "kind",
        "amount_text",
        "balance_after_text",
        "key",
        "description",
        "created_local",
        "period_start",
        "period_end",
        "kwh",
        "rate",
        "created_by",
        "reason",
        "meta",
    ]
    readonly_fields = fields
    amount_text = money_column("amount", description="Amount", utility="account__utility")
    balance_after_text = money_column(
        "balance_after", description="Balance after", utility="account__utility"
    )

    def get_search_results(self, request, queryset, search_term):
        return search_accounts(self, request, queryset, search_term)

    @admin.display(description=_("At"), ordering="created_at")
    def created_local(self, entry: LedgerEntry) -> str:
        return moment_text(entry.created_at, entry.account.utility.zone)

    def get_urls(self):
        return [
            path(
                "adjust/",
                self.admin_site.admin_view(self.adjust_view),
                name="billing_ledgerentry_adjust",
            ),
            *super().get_urls(),
        ]

    def has_view_permission(self, request, obj=None):
        return request.user.is_staff and request.user.has_perm("billing.view_ledgerentry")

    def adjust_view(self, request):
        """A staff adjustment: a new ledger entry (the ledger is never edited), with its reason.
        Posted from here or from the account page (which it then returns to)."""
        permission_require(request, "billing.add_ledgerentry")
        form = AdjustmentForm(request.POST or None, initial={"account": request.GET.get("account")})
        accounts_scope(form, request, "account")
        if request.method == "POST" and form.is_valid():
            account = form.cleaned_data["account"]
            amount = form.cleaned_data["amount"]
            minor = account.utility.currency_minor_unit
            if amount != amount.quantize(Decimal(1).scaleb(-minor)) or amount == 0:
                form.add_error(
                    "amount",
                    _("A non-zero amount with at most %(minor)s decimal places.")
                    % {"minor": minor},
                )
            else:
                posting = ledger_post(
                    account=account,
                    kind=LedgerEntry.Kind.ADJUSTMENT,
                    amount=amount,
                    key=f"adjustment:{uuid.uuid4()}",
                    description="Staff adjustment",
                    created_by=request.user,
                    reason=form.cleaned_data["reason"],
                )
                self.audit(request, posting.entry, "adjustment", {"amount": str(amount)})
                utility = account.utility
                self.message_user(
                    request,
                    _("Posted %(amount)s to %(account)s; balance now %(balance)s.")
                    % {
                        "amount": utility_money(amount, utility),
                        "account": account,
                        "balance": utility_money(posting.entry.balance_after, utility),
                    },
                )
                return redirect(
                    next_url(request) or reverse("admin:billing_ledgerentry_changelist")
                )
        return TemplateResponse(
            request,
            "admin/billing/form.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": _("Staff adjustment"),
                "form": form,
                "next": next_url(request),
            },
        )


class SlabInline(admin.TabularInline):
    model = TariffSlab
    extra = 1


class PeriodInline(admin.TabularInline):
    model = TariffPeriod
    extra = 1


class TariffForm(MoneyForm):
    # Rates per kWh keep their 6 decimals (2 fils/kWh is 0.002000 KWD): only the charge is money.
    money_fields = ("fixed_daily_charge",)


@admin.register(Tariff)
class TariffAdmin(UtilityScopedAdmin):
    form = TariffForm
    list_display = [
        "name",
        "utility",
        "kind",
        "payment_mode",
        "valid_from",
        "valid_to",
        "flat_rate",
        "fixed_daily_charge_text",
    ]
    list_filter = ["utility", "kind", "payment_mode"]
    list_select_related = ["utility"]
    inlines = [SlabInline, PeriodInline]
    fixed_daily_charge_text = money_column("fixed_daily_charge", description="Fixed daily charge")

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # Readings that waited for a tariff are charged on the next pass.
        charging.charges_rewind()


@admin.register(Bill)
class BillAdmin(AccountSearchMixin, ReadOnlyAdmin):
    list_display = [
        "account",
        "month",
        "kwh",
        "amount_text",
        "fine_amount_text",
        "paid_amount_text",
        "due_date",
        "status",
    ]
    list_filter = ["status", "account__utility"]
    list_select_related = ["account__utility"]
    fields = [
        "account",
        "month",
        "kwh",
        "energy_amount_text",
        "fixed_amount_text",
        "amount_text",
        "fine_amount_text",
        "paid_amount_text",
        "issued_at",
        "due_date",
        "reminded_at",
        "status",
        "fined_at",
    ]
    readonly_fields = fields
    energy_amount_text = money_column(
        "energy_amount", description="Energy", utility="account__utility"
    )
    fixed_amount_text = money_column(
        "fixed_amount", description="Fixed charges", utility="account__utility"
    )
    amount_text = money_column("amount", description="Amount", utility="account__utility")
    fine_amount_text = money_column("fine_amount", description="Fine", utility="account__utility")
    paid_amount_text = money_column("paid_amount", description="Paid", utility="account__utility")


@admin.register(Balance)
class BalanceAdmin(AccountSearchMixin, ReadOnlyAdmin):
    """Each account's balance and arrears, kept beside the ledger (billing.models.Balance)."""

    list_display = ["account", "amount_text", "held_text", "open_day", "debt_text", "updated_at"]
    list_filter = ["account__utility"]
    list_select_related = ["account__utility"]
    fields = [
        "account",
        "amount_text",
        "open_day",
        "held_text",
        "open_wh",
        "debt_text",
        "updated_at",
    ]
    readonly_fields = fields
    amount_text = money_column("amount", description="Balance", utility="account__utility")
    # The open day's energy: in the balance, posted to the ledger as one entry when the day ends
    # (billing.energy_days), so the balance is the last entry's running balance plus this.
    held_text = money_column(
        "open_amount", description="Energy held (open day)", utility="account__utility"
    )
    debt_text = money_column("debt", description="Arrears to recover", utility="account__utility")


class ConversionForm(forms.Form):
    new_meter_serial = forms.CharField(
        max_length=40, help_text="The serial of the prepaid meter installed."
    )
    new_consumer_id = forms.CharField(
        max_length=32,
        required=False,
        help_text="The prepaid account's consumer ID. Empty: the postpaid one followed by P.",
    )


@admin.register(Conversion)
class ConversionAdmin(AccountSearchMixin, ReadOnlyAdmin):
    list_display = [
        "account",
        "status",
        "reason",
        "flagged_at",
        "done_at",
        "arrears_text",
        "new_meter",
    ]
    list_filter = ["status", "account__utility"]
    list_select_related = ["account__utility", "new_meter"]
    change_form_template = "admin/billing/conversion/change_form.html"
    fields = [
        "account",
        "status",
        "reason",
        "flagged_at",
        "done_at",
        "done_by",
        "old_meter",
        "new_meter",
        "new_account",
        "arrears_text",
    ]
    readonly_fields = fields
    arrears_text = money_column("arrears", description="Arrears", utility="account__utility")

    def get_urls(self):
        return [
            path(
                "<int:pk>/convert/",
                self.admin_site.admin_view(self.convert_view),
                name="billing_conversion_convert",
            ),
            *super().get_urls(),
        ]

    def convert_view(self, request, pk: int):
        """Replaces the meter by a prepaid one and closes the account: an approver's act
        (billing.convert_meter), never a cashier's."""
        conversion = self.get_queryset(request).select_related("account").filter(pk=pk).first()
        if conversion is None:
            return redirect(reverse("admin:billing_conversion_changelist"))
        permission_require(request, "billing.convert_meter")
        form = ConversionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                done = moves.conversion_carry_out(
                    conversion=conversion,
                    new_meter_serial=form.cleaned_data["new_meter_serial"],
                    new_consumer_id=form.cleaned_data["new_consumer_id"],
                    staff=request.user,
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                self.audit(
                    request, done, "convert-to-prepaid", {"new_meter": done.new_meter.serial}
                )
                self.message_user(
                    request,
                    f"{done.account} is closed; prepaid account {done.new_account.consumer_id} "
                    f"holds meter {done.new_meter.serial} with "
                    f"{utility_money(done.arrears, done.account.utility)} carried as debt.",
                )
                return redirect(reverse("admin:billing_conversion_changelist"))
        return TemplateResponse(
            request,
            "admin/billing/form.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": f"Convert {conversion.account} to prepaid",
                "form": form,
            },
        )


@admin.register(RelayCommand)
class RelayCommandAdmin(AccountSearchMixin, ReadOnlyAdmin):
    list_display = [
        "meter",
        "account",
        "action",
        "reason",
        "status",
        "not_before",
        "sent_at",
        "completed_at",
        "payment_notified_at",
    ]
    list_filter = ["action", "status", "account__utility"]


class PolicyForm(MoneyForm):
    money_fields = (
        "emergency_credit",
        "max_topup",
        "emergency_credit_fee",
        "debt_recovery_daily_cap",
        "debt_recovery_daily_rate",
    )


@admin.register(BillingPolicy)
class BillingPolicyAdmin(UtilityScopedAdmin):
    form = PolicyForm
    list_display = [
        "utility",
        "emergency_credit_text",
        "max_topup_text",
        "debt_recovery_percent",
        "friendly_night_start",
        "friendly_night_end",
    ]
    list_select_related = ["utility"]
    emergency_credit_text = money_column("emergency_credit", description="Emergency credit")
    max_topup_text = money_column("max_topup", description="Largest top-up")
    # Each rule's fields together; docs/affordability.md says which regime uses which.
    fieldsets = [
        (None, {"fields": ["utility", "max_topup", "payment_link_hours", "move_out_credit"]}),
        (
            _("Disconnection and friendly hours"),
            {
                "fields": [
                    "friendly_night_start",
                    "friendly_night_end",
                    "no_disconnect_on_weekends",
                    "no_disconnect_on_holidays",
                ]
            },
        ),
        (
            _("Emergency credit"),
            {
                "fields": [
                    "emergency_credit",
                    "emergency_credit_on_request",
                    "emergency_credit_fee",
                    "emergency_credit_days",
                ]
            },
        ),
        (
            _("Debt and reconnection"),
            {
                "fields": [
                    "debt_recovery_percent",
                    "debt_recovery_daily_cap",
                    "debt_recovery_daily_rate",
                    "reconnect_min_payment_percent",
                ]
            },
        ),
        (
            _("Consumers' own tools"),
            {
                "fields": [
                    "auto_topup_enabled",
                    "shared_access_enabled",
                    "max_shares_per_account",
                    "pay_for_others_enabled",
                    "runout_cover_days",
                ]
            },
        ),
        (
            _("Postpaid bills"),
            {
                "fields": [
                    "bill_due_days",
                    "bill_due_reminder_days",
                    "removal_months_late",
                    "removal_notice_days",
                ]
            },
        ),
    ]


from billing.admin import affordability as _affordability  # noqa: E402, F401  (auto top-ups, credit)
from billing.admin import payments as _payments  # noqa: E402, F401  (registers the payments admin)
from billing.admin import removals as _removals  # noqa: E402, F401  (Egypt's late path admin)
from billing.admin import tamper as _tamper  # noqa: E402, F401  (the tamper work queue)
from billing.admin import tenancy  # noqa: E402, F401  (registers the moves admin)
