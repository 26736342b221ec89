"""Money coming in, in the admin: top-ups (the counter, reconciliation with the gateway), payment
links, payment partners and the simulated gateway's own records."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from babel.numbers import get_currency_precision
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from billing import payments, reconcile
from billing.admin import ReadOnlyAdmin
from billing.admin.pages import account_field, accounts_scope, next_url
from billing.admin.search import SEARCH_HELP, search_accounts
from billing.models import (
    PaymentLink,
    PaymentPartner,
    SimulatedPayment,
    TopUp,
)
from core.admin import (
    MoneyForm,
    UtilityScopedAdmin,
    money_column,
    permission_require,
)
from core.errors import DomainError
from core.money import money_text, utility_money
from core.timebuckets import moment_text


class CounterForm(forms.Form):
    account = account_field(TopUp)
    amount = forms.CharField(
        max_length=20, help_text=_("In the utility's currency, e.g. 1.500 KWD.")
    )


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


# What each outcome of billing.reconcile.topups_reconcile means to staff.
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
        "created_local",
        "paid_local",
    ]
    list_filter = [PendingTooLongFilter, "channel", "status", "account__utility"]
    # Any key of the account (billing.search) or the gateway's reference, each an exact lookup.
    search_fields = ["=gateway_reference"]
    search_help_text = _(
        "Consumer ID, meter serial, registered mobile, receipt number, payment code or the "
        "gateway's reference."
    )
    account_path = "account"
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

    def get_search_results(self, request, queryset, search_term):
        found, _distinct = search_accounts(self, request, queryset, search_term)
        term = search_term.strip()
        if term:
            found = found | queryset.filter(gateway_reference=term)
        return found, False

    @admin.display(description=_("Created"), ordering="created_at")
    def created_local(self, topup: TopUp) -> str:
        return moment_text(topup.created_at, topup.account.utility.zone)

    @admin.display(description=_("Paid"), ordering="paid_at")
    def paid_local(self, topup: TopUp) -> str:
        return moment_text(topup.paid_at, topup.account.utility.zone)

    def has_reconcile_permission(self, request) -> bool:
        return request.user.has_perm("billing.reconcile_topup")

    @admin.action(
        description="Ask the gateway about the selected pending top-ups and settle them",
        permissions=["reconcile"],
    )
    def reconcile_selected(self, request, queryset):
        """The beat's reconciliation (billing.reconcile.topups_reconcile), now, for these rows:
        paid ones are credited once, failed and long-unpaid ones closed, the rest left pending."""
        counts = reconcile.topups_reconcile(topup_ids=queryset.values_list("pk", flat=True))
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
        permission_require(request, "billing.take_counter_payment")
        # The account page opens the counter with its account chosen (?account=<id>).
        form = CounterForm(request.POST or None, initial={"account": request.GET.get("account")})
        accounts_scope(form, request, "account")
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
                        "paid_at": moment_text(topup.paid_at, utility.zone),
                        "account_url": reverse(
                            "admin:accounts_consumeraccount_change", args=[topup.account_id]
                        ),
                    },
                )
        return TemplateResponse(
            request,
            "admin/billing/form.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": _("Record a cash payment"),
                "form": form,
                "submit_label": _("Take cash and print the receipt"),
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

    def clean(self):
        """The service's own amount rules (the utility's smallest top-up, the largest), beside
        the field, before anything is sent."""
        data = super().clean()
        account, amount = data.get("account"), data.get("amount")
        if account is not None and amount is not None and not self.errors:
            if account.status == account.Status.CLOSED:
                self.add_error("account", _("This account is closed: no payment link for it."))
            else:
                try:
                    payments.topup_amount_check(account=account, raw=amount)
                except DomainError as exc:
                    self.add_error("amount", exc.message)
        return data


@admin.register(PaymentLink)
class PaymentLinkAdmin(UtilityScopedAdmin):
    """Call centre: a link for an amount, sent by SMS to the account's registered mobile."""

    form = LinkForm
    list_display = [
        "account",
        "amount_text",
        "created_by",
        "created_local",
        "expires_local",
        "topup",
    ]
    list_select_related = ["account__utility", "created_by", "topup__account__utility"]
    autocomplete_fields = ["account"]
    search_fields = ["=account__consumer_id"]
    search_help_text = SEARCH_HELP
    account_path = "account"
    amount_text = money_column("amount", description="Amount", utility="account__utility")

    def get_search_results(self, request, queryset, search_term):
        return search_accounts(self, request, queryset, search_term)

    @admin.display(description=_("Created"), ordering="created_at")
    def created_local(self, link: PaymentLink) -> str:
        return moment_text(link.created_at, link.account.utility.zone)

    @admin.display(description=_("Expires"), ordering="expires_at")
    def expires_local(self, link: PaymentLink) -> str:
        return moment_text(link.expires_at, link.account.utility.zone)

    def has_change_permission(self, request, obj=None):
        return False

    def response_add(self, request, obj, post_url_continue=None):
        # Sent from the account page: back to it, with the message.
        target = next_url(request)
        if target and obj.pk:
            return redirect(target)
        return super().response_add(request, obj, post_url_continue)

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
