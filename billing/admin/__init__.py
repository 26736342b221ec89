from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from accounts.models import ConsumerAccount
from billing import charging, moves, payments
from billing.ledger import ledger_post
from billing.models import (
    Bill,
    BillingPolicy,
    Conversion,
    LedgerEntry,
    PaymentLink,
    PaymentPartner,
    RelayCommand,
    Tariff,
    TariffPeriod,
    TariffSlab,
    TopUp,
)
from core.admin import ReadOnlyMixin, UtilityScopedAdmin, scope_queryset
from core.errors import DomainError


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
        "amount",
        "balance_after",
        "currency",
        "created_at",
        "created_by",
    ]
    list_filter = ["kind", "currency", "account__utility"]
    search_fields = ["account__consumer_id", "key", "description"]
    list_select_related = ["account", "created_by"]
    change_list_template = "admin/billing/ledgerentry/change_list.html"

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
                self.message_user(
                    request,
                    f"Posted {amount} to {account}; balance now {posting.entry.balance_after}.",
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


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdmin):
    list_display = [
        "receipt_number",
        "account",
        "amount",
        "currency",
        "channel",
        "status",
        "created_at",
        "paid_at",
    ]
    list_filter = ["channel", "status", "currency", "account__utility"]
    search_fields = ["account__consumer_id", "receipt_number", "gateway_reference"]
    list_select_related = ["account"]
    change_list_template = "admin/billing/topup/change_list.html"

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
                return TemplateResponse(
                    request,
                    "admin/billing/receipt.html",
                    {
                        **self.admin_site.each_context(request),
                        "opts": self.model._meta,
                        "title": "Receipt",
                        "topup": topup,
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


class LinkForm(forms.ModelForm):
    class Meta:
        model = PaymentLink
        fields = ["account", "amount"]


@admin.register(PaymentLink)
class PaymentLinkAdmin(UtilityScopedAdmin):
    """Call centre: a link for an amount, sent by SMS to the account's registered mobile."""

    form = LinkForm
    list_display = ["account", "amount", "created_by", "created_at", "expires_at", "topup"]
    raw_id_fields = ["account"]
    search_fields = ["account__consumer_id"]

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


@admin.register(Tariff)
class TariffAdmin(UtilityScopedAdmin):
    list_display = [
        "name",
        "utility",
        "kind",
        "payment_mode",
        "valid_from",
        "valid_to",
        "flat_rate",
        "fixed_daily_charge",
    ]
    list_filter = ["utility", "kind", "payment_mode"]
    inlines = [SlabInline, PeriodInline]

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
        "amount",
        "fine_amount",
        "paid_amount",
        "due_date",
        "status",
    ]
    list_filter = ["status", "account__utility"]
    search_fields = ["account__consumer_id"]


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
    list_display = ["account", "status", "reason", "flagged_at", "done_at", "arrears", "new_meter"]
    list_filter = ["status", "account__utility"]
    search_fields = ["account__consumer_id"]
    change_form_template = "admin/billing/conversion/change_form.html"

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
                    f"holds meter {done.new_meter.serial} with {done.arrears} carried as debt.",
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


@admin.register(BillingPolicy)
class BillingPolicyAdmin(UtilityScopedAdmin):
    list_display = [
        "utility",
        "emergency_credit",
        "debt_recovery_percent",
        "friendly_night_start",
        "friendly_night_end",
    ]


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


from billing.admin import tenancy  # noqa: E402, F401  (registers the moves admin)
