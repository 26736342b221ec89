"""Admin for move-out and move-in: staff name the account by the consumer ID printed on the bill
and the meter by its serial, never by an internal id; every move is recorded and audited."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django import forms
from django.contrib import admin
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone

from accounts.models import ConsumerAccount, Utility
from billing import moves
from billing.admin.pages import FormPageMixin, form_errors_add
from billing.models import Move
from core.admin import ReadOnlyMixin, UtilityScopedAdmin, money_column, scope_queryset
from core.errors import DomainError
from core.money import money_digits, utility_money
from meters.models import Meter

WHEN_HELP = "Local time at the utility, YYYY-MM-DD HH:MM (a quarter-hour). Empty: now."


class MoveForm(forms.Form):
    utility = forms.ModelChoiceField(queryset=Utility.objects.all())
    at = forms.CharField(required=False, help_text=WHEN_HELP)

    def clean_at_for(self, utility: Utility) -> datetime | None:
        raw = (self.cleaned_data.get("at") or "").strip()
        if not raw:
            return None
        try:
            naive = datetime.fromisoformat(raw.replace(" ", "T"))
        except ValueError:
            self.add_error("at", "Write it as YYYY-MM-DD HH:MM.")
            return None
        if naive.year < 2000:  # far outside any tenancy; and year 1 cannot even move to UTC
            self.add_error(
                "at", f"A move can be dated at most {moves.MAX_BACKDATE.days} days back."
            )
            return None
        return naive.replace(tzinfo=utility.zone) if naive.tzinfo is None else naive


class MoveOutForm(MoveForm):
    consumer_id = forms.CharField(max_length=32, help_text="As printed on the bill.")
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
    carry_to = forms.CharField(
        max_length=32,
        required=False,
        help_text="The consumer ID of the consumer's new account, to carry credit or debt to.",
    )
    reason = forms.CharField(
        widget=forms.Textarea, required=False, help_text="Needed to write off."
    )


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
    search_fields = ["account__consumer_id", "meters__serial"]
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
        return f"{timezone.localtime(move.at, move.account.utility.zone):%Y-%m-%d %H:%M %Z}"

    def _may_move(self, request) -> bool:
        return request.user.has_perm("billing.add_move")

    def _form(self, request, form_class):
        form = form_class(request.POST or None)
        form.fields["utility"].queryset = scope_queryset(Utility.objects.all(), request.user)
        return form

    def _account(self, form, utility: Utility, field: str) -> ConsumerAccount | None:
        consumer_id = (form.cleaned_data.get(field) or "").strip()
        if not consumer_id:
            return None
        account = ConsumerAccount.objects.filter(utility=utility, consumer_id=consumer_id).first()
        if account is None:
            form.add_error(field, f"{utility.name} has no account {consumer_id}.")
        return account

    def move_out_view(self, request):
        """End a tenancy: final charging, the balance refunded or carried, debt carried or written
        off, the account closed and its holders told."""
        if not self._may_move(request):
            return redirect(reverse("admin:index"))
        form = self._form(request, MoveOutForm)
        if request.method == "POST" and form.is_valid():
            utility = form.cleaned_data["utility"]
            account = self._account(form, utility, "consumer_id")
            carry_to = self._account(form, utility, "carry_to")
            at = form.clean_at_for(utility)
            if account is not None and not form.errors:
                choice = moves.MoveOutChoice(
                    credit=form.cleaned_data["credit"] or None,
                    debt=form.cleaned_data["debt"] or None,
                    carry_to=carry_to,
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
                        f"{timezone.localtime(move.at, utility.zone):%Y-%m-%d %H:%M %Z}; "
                        f"final balance {_final_balance(move, utility)}.",
                    )
                    return redirect(reverse("admin:billing_move_changelist"))
        return self._render(request, form, "Move out: end a tenancy and close the account")

    def move_in_view(self, request):
        """Start a new account's tenancy of a vacant meter."""
        if not self._may_move(request):
            return redirect(reverse("admin:index"))
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
                        f"{timezone.localtime(move.at, utility.zone):%Y-%m-%d %H:%M %Z}.",
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
