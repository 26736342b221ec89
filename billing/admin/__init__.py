from __future__ import annotations

from collections import Counter
from datetime import timedelta
from decimal import Decimal

from babel.numbers import get_currency_precision
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from accounts.models import ConsumerAccount
from billing import charging, moves, payments
from billing.ledger import ledger_post
from billing.models import (
    Balance,
    Bill,
    BillingPolicy,
    Conversion,
    LedgerEntry,
    PaymentLink,
    PaymentPartner,
    RelayCommand,
    SimulatedPayment,
    Tariff,
    TariffPeriod,
    TariffSlab,
    TopUp,
)
from core.admin import MoneyForm, ReadOnlyMixin, UtilityScopedAdmin, money_column, scope_queryset
from core.errors import DomainError
from core.money import money_text, utility_money


class ReadOnlyAdmin(ReadOnlyMixin, UtilityScopedAdmin):
    pass


class AdjustmentForm(forms.Form):
    account = forms.ModelChoiceField(
        queryset=ConsumerAccount.objects.select_related("utility"),
        widget=forms.NumberInput,
        help_text="The account's id (see Consumer accounts).",
    )
    amount = forms.DecimalField(
        max_digits=14, decimal_places=3, help_text="Positive credits, negative debits."
    )
    reason = forms.CharField(
        widget=forms.Textarea,
        min_length=10,
        help_text="Why: the consumer sees it on the statement.",
    )


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    """The ledger cannot be edited; a correction is a new entry (Staff adjustment)."""

    list_display = [
        "id",
        "account",
        "kind",
        "amount_text",
        "balance_after_text",
        "created_at",
        "created_by",
    ]
    list_filter = ["kind", "currency", "account__utility"]
    search_fields = ["account__consumer_id", "key", "description"]
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
        "created_at",
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
        if not request.user.has_perm("billing.add_ledgerentry") and not request.user.is_superuser:
            return redirect(reverse("admin:index"))
        form = AdjustmentForm(request.POST or None)
        form.fields["account"].queryset = scope_queryset(
            form.fields["account"].queryset, request.user
        )
        if request.method == "POST" and form.is_valid():
            account = form.cleaned_data["account"]
            amount = form.cleaned_data["amount"]
            minor = account.utility.currency_minor_unit
            if amount != amount.quantize(Decimal(1).scaleb(-minor)) or amount == 0:
                form.add_error("amount", f"A non-zero amount with at most {minor} decimal places.")
            else:
                import uuid

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
                    f"Posted {utility_money(amount, utility)} to {account}; balance now "
                    f"{utility_money(posting.entry.balance_after, utility)}.",
                )
                return redirect(reverse("admin:billing_ledgerentry_changelist"))
        return TemplateResponse(
            request,
            "admin/billing/form.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Staff adjustment",
                "form": form,
            },
        )


class CounterForm(forms.Form):
    account = forms.ModelChoiceField(
        queryset=ConsumerAccount.objects.select_related("utility"),
        widget=forms.NumberInput,
        help_text="The account's id (search Consumer accounts by consumer ID).",
    )
    amount = forms.CharField(max_length=20, help_text="In the utility's currency, e.g. 1.500 KWD.")


class PendingTooLongFilter(admin.SimpleListFilter):
    """Pending top-ups past the reconciliation delay: their webhook is late, the gateway is asked."""

    title = "waiting for the gateway"
    parameter_name = "waiting"

    def lookups(self, request, model_admin):
        return [("late", f"Pending over {settings.PAYMENT_RECONCILE_AFTER_MINUTES} minutes")]

    def queryset(self, request, queryset):
        if self.value() != "late":
            return queryset
        since = timezone.now() - timedelta(minutes=settings.PAYMENT_RECONCILE_AFTER_MINUTES)
        return queryset.filter(status=TopUp.Status.PENDING, created_at__lt=since)


# What each outcome of billing.payments.topups_reconcile means to staff.
RECONCILE_OUTCOMES = {
    "credited": "credited to the account",
    "already_credited": "already credited",
    "failed": "failed at the gateway",
    "expired": "expired unpaid",
    "pending": "not paid yet (asked again later)",
    "settled_meanwhile": "settled meanwhile by the gateway's webhook",
    "skipped": "being checked by another worker",
    "error": "not settled: see the gateway note on the top-up",
}


def reconcile_message(counts: Counter) -> str:
    asked = sum(counts[outcome] for outcome in RECONCILE_OUTCOMES) + counts["unreachable"]
    parts = [f"{counts[o]} {text}" for o, text in RECONCILE_OUTCOMES.items() if counts[o]]
    if counts["unreachable"]:
        parts.append(
            f"{counts['due'] - asked + counts['unreachable']} not settled: the gateway is "
            "unreachable, try again later"
        )
    text = f"Asked the gateway about {counts['due']} pending top-up(s)"
    text += f": {'; '.join(parts)}." if parts else "."
    if counts["not_pending"]:
        text += f" {counts['not_pending']} chosen top-up(s) were already settled; nothing asked."
    return text


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdmin):
    list_display = [
        "receipt_number",
        "account",
        "amount_text",
        "channel",
        "status",
        "created_at",
        "paid_at",
    ]
    list_filter = [PendingTooLongFilter, "channel", "status", "currency", "account__utility"]
    search_fields = ["account__consumer_id", "receipt_number", "gateway_reference"]
    list_select_related = ["account__utility"]
    change_list_template = "admin/billing/topup/change_list.html"
    actions = ["reconcile_selected"]
    fields = [
        "account",
        "amount_text",
        "channel",
        "purpose",
        "status",
        "user",
        "gateway",
        "gateway_reference",
        "checkout_url",
        "reconcile_at",
        "reconcile_note",
        "receipt_number",
        "created_at",
        "paid_at",
        "ledger_entry",
    ]
    readonly_fields = fields
    amount_text = money_column("amount", description="Amount", utility="account__utility")

    def has_reconcile_permission(self, request) -> bool:
        return request.user.has_perm("billing.reconcile_topup")

    @admin.action(
        description="Ask the gateway about the selected pending top-ups and settle them",
        permissions=["reconcile"],
    )
    def reconcile_selected(self, request, queryset):
        """The beat's reconciliation (billing.payments.topups_reconcile), now, for these rows:
        paid ones are credited once, failed and long-unpaid ones closed, the rest left pending."""
        counts = payments.topups_reconcile(topup_ids=queryset.values_list("pk", flat=True))
        trouble = counts["unreachable"] or counts["error"]
        self.message_user(
            request, reconcile_message(counts), messages.WARNING if trouble else messages.SUCCESS
        )

    def get_urls(self):
        return [
            path(
                "counter/",
                self.admin_site.admin_view(self.counter_view),
                name="billing_topup_counter",
            ),
            *super().get_urls(),
        ]

    def counter_view(self, request):
        """A cashier records a cash payment; the receipt is shown to print and sent by SMS."""
        form = CounterForm(request.POST or None)
        form.fields["account"].queryset = scope_queryset(
            form.fields["account"].queryset, request.user
        )
        if request.method == "POST" and form.is_valid():
            try:
                topup = payments.counter_payment_record(
                    account=form.cleaned_data["account"],
                    amount=form.cleaned_data["amount"],
                    cashier=request.user,
                )
            except DomainError as exc:
                form.add_error("amount", exc.message)
            else:
                self.audit(request, topup, "counter-payment", {"amount": str(topup.amount)})
                utility = topup.account.utility
                return TemplateResponse(
                    request,
                    "admin/billing/receipt.html",
                    {
                        **self.admin_site.each_context(request),
                        "opts": self.model._meta,
                        "title": "Receipt",
                        "topup": topup,
                        "amount": utility_money(topup.amount, utility),
                        "paid_at": f"{timezone.localtime(topup.paid_at, utility.zone):%Y-%m-%d %H:%M %Z}",
                    },
                )
        return TemplateResponse(
            request,
            "admin/billing/form.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Record a cash payment",
                "form": form,
            },
        )


class LinkForm(MoneyForm):
    money_fields = ("amount",)

    class Meta:
        model = PaymentLink
        fields = ["account", "amount"]

    def minor_unit(self, data: dict) -> int | None:
        account = data.get("account")
        if account is None and self.instance.account_id:
            account = self.instance.account
        return account.utility.currency_minor_unit if account is not None else None


@admin.register(PaymentLink)
class PaymentLinkAdmin(UtilityScopedAdmin):
    """Call centre: a link for an amount, sent by SMS to the account's registered mobile."""

    form = LinkForm
    list_display = ["account", "amount_text", "created_by", "created_at", "expires_at", "topup"]
    list_select_related = ["account__utility", "created_by", "topup__account__utility"]
    raw_id_fields = ["account"]
    search_fields = ["account__consumer_id"]
    amount_text = money_column("amount", description="Amount", utility="account__utility")

    def has_change_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        try:
            link, _ = payments.payment_link_create(
                account=obj.account, amount=obj.amount, created_by=request.user
            )
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        obj.pk = link.pk
        self.audit(request, link, "add", {"amount": str(link.amount)})
        self.message_user(
            request, f"Payment link sent by SMS to the registered mobile of {obj.account}."
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
class BillAdmin(ReadOnlyAdmin):
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
    search_fields = ["account__consumer_id"]
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
class BalanceAdmin(ReadOnlyAdmin):
    """Each account's balance and arrears, kept beside the ledger (billing.models.Balance)."""

    list_display = ["account", "amount_text", "debt_text", "updated_at"]
    list_filter = ["account__utility"]
    list_select_related = ["account__utility"]
    search_fields = ["account__consumer_id"]
    fields = ["account", "amount_text", "debt_text", "updated_at"]
    readonly_fields = fields
    amount_text = money_column("amount", description="Balance", utility="account__utility")
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
class ConversionAdmin(ReadOnlyAdmin):
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
    search_fields = ["account__consumer_id"]
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

    def has_view_permission(self, request, obj=None):
        return request.user.is_staff

    def convert_view(self, request, pk: int):
        conversion = self.get_queryset(request).select_related("account").filter(pk=pk).first()
        if conversion is None:
            return redirect(reverse("admin:billing_conversion_changelist"))
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
class RelayCommandAdmin(ReadOnlyAdmin):
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
    search_fields = ["meter__serial", "account__consumer_id"]


class PolicyForm(MoneyForm):
    money_fields = ("emergency_credit", "max_topup")


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


@admin.register(PaymentPartner)
class PaymentPartnerAdmin(UtilityScopedAdmin):
    list_display = ["name", "utility", "prefix", "is_active", "created_at"]
    fields = ["utility", "name", "is_active", "prefix"]
    readonly_fields = ["prefix"]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        partner, raw = payments.partner_token_create(utility=obj.utility, name=obj.name)
        obj.pk = partner.pk
        self.audit(request, partner, "add")
        self.message_user(
            request,
            f"Give this token to the partner now; it is not shown again: {raw}",
            messages.WARNING,
        )


@admin.register(SimulatedPayment)
class SimulatedPaymentAdmin(ReadOnlyAdmin):
    """The simulated gateway's own books (its "dashboard"): superusers only, as no utility owns them."""

    list_display = [
        "reference",
        "amount_text",
        "outcome",
        "created_at",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "last_error",
    ]
    list_filter = ["outcome"]
    search_fields = ["reference"]

    @admin.display(description="Amount", ordering="amount")
    def amount_text(self, payment: SimulatedPayment) -> str:
        # The gateway knows no utility: ISO 4217's decimals for the currency, as a gateway uses.
        minor_unit = get_currency_precision(payment.currency)
        return money_text(payment.amount, currency=payment.currency, minor_unit=minor_unit)


from billing.admin import tenancy  # noqa: E402, F401  (registers the moves admin)
