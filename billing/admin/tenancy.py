"""Admin for move-out and move-in: staff name the account by the consumer ID printed on the bill
and the meter by its serial, never by an internal id; every move is recorded and audited."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.urls import path, reverse

from accounts.models import Utility
from billing import moves
from billing.admin.pages import FormPageMixin, account_field, accounts_scope, form_errors_add
from billing.admin.search import SEARCH_HELP, search_accounts
from billing.models import Move
from core.admin import ReadOnlyMixin, UtilityScopedAdmin, money_column, scope_queryset
from core.errors import DomainError
from core.money import money_digits, utility_money
from core.timebuckets import moment_text
from meters.models import Meter

WHEN_HELP = "Local time at the utility, YYYY-MM-DD HH:MM (a quarter-hour). Empty: now."


def local_at_clean(form: forms.Form, utility: Utility) -> datetime | None:
    """The form's `at`, written in the utility's local time, as an instant; None when empty."""
    raw = (form.cleaned_data.get("at") or "").strip()
    if not raw:
        return None
    try:
        naive = datetime.fromisoformat(raw.replace(" ", "T"))
    except ValueError:
        form.add_error("at", "Write it as YYYY-MM-DD HH:MM.")
        return None
    if naive.year < 2000:  # far outside any tenancy; and year 1 cannot even move to UTC
        form.add_error("at", f"A move can be dated at most {moves.MAX_BACKDATE.days} days back.")
        return None
    return naive.replace(tzinfo=utility.zone) if naive.tzinfo is None else naive


class MoveForm(forms.Form):
    utility = forms.ModelChoiceField(queryset=Utility.objects.all())
    at = forms.CharField(required=False, help_text=WHEN_HELP)

    def clean_at_for(self, utility: Utility) -> datetime | None:
        return local_at_clean(self, utility)


class MoveOutForm(forms.Form):
    account = account_field(Move)
    at = forms.CharField(required=False, help_text=WHEN_HELP)
    credit = forms.ChoiceField(
        choices=[("", "As the utility's policy says"), *Move.Credit.choices[1:]],
        required=False,
        help_text="What to do with a prepaid balance left on the account.",
    )
    debt = forms.ChoiceField(
        choices=[("", "Refuse if anything is owed"), *Move.Debt.choices[1:]],
        required=False,
        help_text="What to do with what the account owes.",
    )
    carry_to = account_field(
        Move,
        field="carried_to",
        required=False,
        help_text="The consumer's new account, to carry credit or debt to (any key finds it).",
    )
    reason = forms.CharField(
        widget=forms.Textarea, required=False, help_text="Needed to write off."
    )

    def clean(self):
        data = super().clean()
        account, carry_to = data.get("account"), data.get("carry_to")
        if account and carry_to and carry_to.utility_id != account.utility_id:
            self.add_error("carry_to", "Credit and debt stay within one utility.")
        return data


class MoveInForm(MoveForm):
    meter = forms.CharField(max_length=40, help_text="The meter's serial.")
    consumer_id = forms.CharField(max_length=32, help_text="The new account's consumer ID.")
    registered_mobile = forms.CharField(max_length=32)
    name = forms.CharField(max_length=200)
    premises_address = forms.CharField(widget=forms.Textarea, required=False)


@admin.register(Move)
class MoveAdmin(FormPageMixin, ReadOnlyMixin, UtilityScopedAdmin):
    list_display = [
        "kind",
        "account",
        "local_at",
        "credit",
        "credit_text",
        "debt",
        "debt_text",
        "source",
        "created_by",
    ]
    list_filter = ["kind", "account__utility", "source"]
    search_fields = ["=account__consumer_id"]
    search_help_text = SEARCH_HELP
    account_path = "account"
    list_select_related = ["account__utility", "created_by"]
    change_list_template = "admin/billing/move/change_list.html"
    # The stored amounts have 3 decimals whatever the currency: shown in the currency's own.
    fields = [
        "kind",
        "account",
        "meters",
        "local_at",
        "credit",
        "credit_text",
        "debt",
        "debt_text",
        "carried_to",
        "reason",
        "final_statement",
        "created_by",
        "source",
        "created_at",
    ]
    readonly_fields = fields
    credit_text = money_column(
        "credit_amount", description="Credit amount", utility="account__utility"
    )
    debt_text = money_column("debt_amount", description="Debt amount", utility="account__utility")

    def get_search_results(self, request, queryset, search_term):
        return search_accounts(self, request, queryset, search_term)

    def get_urls(self):
        return [
            path("out/", self.admin_site.admin_view(self.move_out_view), name="billing_move_out"),
            path("in/", self.admin_site.admin_view(self.move_in_view), name="billing_move_in"),
            *super().get_urls(),
        ]

    def has_view_permission(self, request, obj=None):
        return request.user.is_staff and request.user.has_perm("billing.view_move")

    @admin.display(description="At (utility's time)", ordering="at")
    def local_at(self, move: Move) -> str:
        return moment_text(move.at, move.account.utility.zone)

    def _may_move(self, request) -> bool:
        return request.user.has_perm("billing.add_move")

    def _form(self, request, form_class):
        form = form_class(request.POST or None)
        if "utility" in form.fields:
            form.fields["utility"].queryset = scope_queryset(Utility.objects.all(), request.user)
        if "account" in form.fields:
            accounts_scope(form, request, "account", "carry_to")
        return form

    def move_out_view(self, request):
        """End a tenancy: final charging, the balance refunded or carried, debt carried or written
        off, the account closed and its holders told."""
        if not self._may_move(request):
            raise PermissionDenied
        form = self._form(request, MoveOutForm)
        if request.method == "POST" and form.is_valid():
            account = form.cleaned_data["account"]
            utility = account.utility
            at = local_at_clean(form, utility)
            if not form.errors:
                choice = moves.MoveOutChoice(
                    credit=form.cleaned_data["credit"] or None,
                    debt=form.cleaned_data["debt"] or None,
                    carry_to=form.cleaned_data["carry_to"],
                    reason=form.cleaned_data["reason"],
                )
                try:
                    move = moves.move_out(account=account, at=at, choice=choice, staff=request.user)
                except DomainError as exc:
                    form_errors_add(form, exc)
                else:
                    self.audit(request, move, "move-out", _summary(move))
                    self.message_user(
                        request,
                        f"{account.consumer_id} moved out at "
                        f"{moment_text(move.at, utility.zone)}; "
                        f"final balance {_final_balance(move, utility)}.",
                    )
                    return redirect(reverse("admin:billing_move_changelist"))
        return self._render(request, form, "Move out: end a tenancy and close the account")

    def move_in_view(self, request):
        """Start a new account's tenancy of a vacant meter."""
        if not self._may_move(request):
            raise PermissionDenied
        form = self._form(request, MoveInForm)
        if request.method == "POST" and form.is_valid():
            utility = form.cleaned_data["utility"]
            serial = form.cleaned_data["meter"].strip()
            meter = Meter.objects.filter(utility=utility, serial=serial).first()
            if meter is None:
                form.add_error("meter", f"{utility.name} has no meter {serial}.")
            at = form.clean_at_for(utility)
            if meter is not None and not form.errors:
                try:
                    move = moves.move_in(
                        meter=meter,
                        consumer_id=form.cleaned_data["consumer_id"],
                        registered_mobile=form.cleaned_data["registered_mobile"],
                        name=form.cleaned_data["name"],
                        premises_address=form.cleaned_data["premises_address"],
                        at=at,
                        staff=request.user,
                    )
                except DomainError as exc:
                    form_errors_add(form, exc)
                else:
                    self.audit(request, move, "move-in", _summary(move))
                    self.message_user(
                        request,
                        f"{move.account.consumer_id} holds meter {meter.serial} from "
                        f"{moment_text(move.at, utility.zone)}.",
                    )
                    return redirect(reverse("admin:billing_move_changelist"))
        return self._render(request, form, "Move in: a new account on a vacant meter")


def _final_balance(move: Move, utility: Utility) -> str:
    return utility_money(Decimal(move.final_statement.get("balance", "0")), utility)


def _summary(move: Move) -> dict:
    minor_unit = move.account.utility.currency_minor_unit
    return {
        "at": move.at.isoformat(),
        "meters": sorted(move.meters.values_list("serial", flat=True)),
        "credit": [move.credit, money_digits(move.credit_amount, minor_unit=minor_unit)],
        "debt": [move.debt, money_digits(move.debt_amount, minor_unit=minor_unit)],
        "carried_to": move.carried_to_id,
    }
