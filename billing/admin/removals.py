"""Admin for Egypt's late path: removal orders with their notice and due day; staff record a
ground for removal with its evidence, confirm a removal that is due (the meter replaced by a
prepaid one, the contract ended) or cancel an open order. The rules are billing.removals'."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.urls import path, reverse

from billing import removals
from billing.admin.pages import FormPageMixin, account_field, accounts_scope, form_errors_add
from billing.admin.search import SEARCH_HELP, search_accounts
from billing.models import RemovalOrder
from core.admin import ReadOnlyMixin, UtilityScopedAdmin, money_column
from core.errors import DomainError
from core.money import utility_money
from core.timebuckets import moment_text


class RecordForm(forms.Form):
    account = account_field(RemovalOrder)
    ground = forms.ChoiceField(
        choices=[(ground.value, ground.label) for ground in removals.IMMEDIATE_GROUNDS]
    )
    evidence = forms.CharField(
        widget=forms.Textarea, help_text="What was found, when, and by whom (the inspection)."
    )
    evidence_data = forms.JSONField(
        required=False,
        help_text='Optional, a JSON object: {"report": "INS-2026-114", "seal": "broken"}.',
    )


class ConfirmForm(forms.Form):
    new_meter_serial = forms.CharField(
        max_length=40, help_text="The serial of the prepaid meter installed in its place."
    )
    new_consumer_id = forms.CharField(
        max_length=32,
        required=False,
        help_text="The prepaid account's consumer ID. Empty: the postpaid one followed by P.",
    )


class CancelForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea, help_text="Why the order is withdrawn.")


def _local(moment, order: RemovalOrder) -> str:
    if moment is None:
        return "-"
    return moment_text(moment, order.account.utility.zone)


@admin.register(RemovalOrder)
class RemovalOrderAdmin(FormPageMixin, ReadOnlyMixin, UtilityScopedAdmin):
    utility_path = "account__utility"
    list_display = [
        "account",
        "ground",
        "status",
        "arrears_text",
        "notice_local",
        "removal_due_on",
        "confirmed_local",
    ]
    list_filter = ["status", "ground", "account__utility"]
    list_select_related = ["account__utility"]
    search_fields = ["=account__consumer_id"]
    search_help_text = SEARCH_HELP
    account_path = "account"
    change_list_template = "admin/billing/removalorder/change_list.html"
    change_form_template = "admin/billing/removalorder/change_form.html"
    fields = [
        "account",
        "ground",
        "status",
        "arrears_text",
        "arrears_due_before",
        "notice_local",
        "removal_due_on",
        "evidence",
        "evidence_data",
        "created_by",
        "confirmed_local",
        "confirmed_by",
        "conversion",
        "cancel_reason",
    ]
    readonly_fields = fields
    arrears_text = money_column(
        "arrears", description="Arrears in the notice", utility="account__utility"
    )

    def get_search_results(self, request, queryset, search_term):
        return search_accounts(self, request, queryset, search_term)

    @admin.display(description="Notice sent (utility's time)", ordering="notice_sent_at")
    def notice_local(self, order: RemovalOrder) -> str:
        return _local(order.notice_sent_at, order)

    @admin.display(description="Confirmed (utility's time)", ordering="confirmed_at")
    def confirmed_local(self, order: RemovalOrder) -> str:
        return _local(order.confirmed_at, order)

    def get_urls(self):
        return [
            path(
                "record/",
                self.admin_site.admin_view(self.record_view),
                name="billing_removalorder_record",
            ),
            path(
                "<int:pk>/confirm/",
                self.admin_site.admin_view(self.confirm_view),
                name="billing_removalorder_confirm",
            ),
            path(
                "<int:pk>/cancel/",
                self.admin_site.admin_view(self.cancel_view),
                name="billing_removalorder_cancel",
            ),
            *super().get_urls(),
        ]

    def _order(self, request, pk: int) -> RemovalOrder | None:
        return self.get_queryset(request).select_related("account__utility").filter(pk=pk).first()

    def record_view(self, request):
        """A ground other than arrears, with its evidence: the removal is due at once."""
        if not request.user.has_perm("billing.add_removalorder"):
            raise PermissionDenied
        form = RecordForm(request.POST or None)
        accounts_scope(form, request, "account")
        if request.method == "POST" and form.is_valid():
            account = form.cleaned_data["account"]
            try:
                order = removals.removal_record(
                    account=account,
                    ground=form.cleaned_data["ground"],
                    evidence=form.cleaned_data["evidence"],
                    evidence_data=form.cleaned_data["evidence_data"],
                    staff=request.user,
                )
            except DomainError as exc:
                form_errors_add(form, exc)
            else:
                self.audit(request, order, "removal-record", {"ground": order.ground})
                self.message_user(
                    request,
                    f"{order.get_ground_display()} recorded for {account.consumer_id}: the "
                    "removal is due; confirm it when the meter is replaced.",
                )
                return redirect(reverse("admin:billing_removalorder_changelist"))
        return self._render(request, form, "Record grounds for removing a meter")

    def confirm_view(self, request, pk: int):
        """The meter was taken out and a prepaid one put in: the contract ends, the arrears are
        carried as prepaid debt (unless they were paid since: then the order is cancelled)."""
        order = self._order(request, pk)
        if order is None or not request.user.has_perm("billing.change_removalorder"):
            return redirect(reverse("admin:billing_removalorder_changelist"))
        form = ConfirmForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                order = removals.removal_confirm(
                    order=order,
                    new_meter_serial=form.cleaned_data["new_meter_serial"],
                    new_consumer_id=form.cleaned_data["new_consumer_id"],
                    staff=request.user,
                )
            except DomainError as exc:
                form_errors_add(form, exc)
            else:
                if order.status == RemovalOrder.Status.CANCELLED:
                    self.audit(request, order, "removal-cancel", {"reason": order.cancel_reason})
                    self.message_user(
                        request, f"Nothing removed: {order.cancel_reason}", level="warning"
                    )
                else:
                    done = order.conversion
                    self.audit(
                        request, order, "removal-confirm", {"new_meter": done.new_meter.serial}
                    )
                    self.message_user(
                        request,
                        f"{order.account.consumer_id} is removed and its contract ended; prepaid "
                        f"account {done.new_account.consumer_id} holds meter "
                        f"{done.new_meter.serial} with "
                        f"{utility_money(done.arrears, order.account.utility)} carried as debt.",
                    )
                return redirect(reverse("admin:billing_removalorder_changelist"))
        return self._render(
            request, form, f"Confirm the removal: {order} (a prepaid meter replaces it)"
        )

    def cancel_view(self, request, pk: int):
        order = self._order(request, pk)
        if order is None or not request.user.has_perm("billing.change_removalorder"):
            return redirect(reverse("admin:billing_removalorder_changelist"))
        form = CancelForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                order = removals.removal_cancel(
                    order=order, staff=request.user, reason=form.cleaned_data["reason"]
                )
            except DomainError as exc:
                form_errors_add(form, exc)
            else:
                self.audit(request, order, "removal-cancel", {"reason": order.cancel_reason})
                self.message_user(request, f"Cancelled: {order}.")
                return redirect(reverse("admin:billing_removalorder_changelist"))
        return self._render(request, form, f"Cancel: {order}")
