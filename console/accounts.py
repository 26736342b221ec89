"""Consumer accounts as the console shows them, built on accounts' own admin:

- found by whatever staff have in hand (billing.admin.search: consumer ID, meter serial,
  registered mobile in any format, receipt number, payment code), in the list and in every
  autocomplete that chooses an account;
- a page staff answer a phone call from (console.account_page): balance and days left, meters and
  relay, use, ledger, holders (masked), alerts sent, open requests and compensation, with the
  actions the staff member may take (take cash, adjust, send a payment link) on the page.

Both read billing, meters, notifications, outages and service requests, so they sit here, above
those apps, and accounts' admin stays free of them.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.urls import reverse

from accounts.admin import AccountLinkAdmin, ConsumerAccountAdmin
from accounts.models import AccountLink, ConsumerAccount
from billing.admin.search import SEARCH_HELP, search_accounts
from console import account_page
from core.phone import phone_mask

# What each action on the page needs: the same permission its own page checks.
ACTIONS = {
    "cash": "billing.take_counter_payment",
    "adjust": "billing.add_ledgerentry",
    "payment_link": "billing.add_paymentlink",
}


class ConsoleAccountAdmin(ConsumerAccountAdmin):
    search_help_text = SEARCH_HELP
    account_path = "pk"
    change_form_template = "console/account_page.html"

    def get_search_results(self, request, queryset, search_term):
        return search_accounts(self, request, queryset, search_term)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        account = self.get_object(request, object_id)
        if account is not None and self.has_view_permission(request, account):
            extra_context = {
                **(extra_context or {}),
                "page": account_page.account_page(account=account),
                "account": account,
                "may": {name: request.user.has_perm(perm) for name, perm in ACTIONS.items()},
                "account_open": account.status != ConsumerAccount.Status.CLOSED,
                "back": reverse("admin:accounts_consumeraccount_change", args=[account.pk]),
            }
        return super().change_view(request, object_id, form_url, extra_context)


class ConsoleAccountLinkAdmin(AccountLinkAdmin):
    search_help_text = SEARCH_HELP

    def get_search_results(self, request, queryset, search_term):
        return search_accounts(self, request, queryset, search_term)


for model, console_admin in (
    (ConsumerAccount, ConsoleAccountAdmin),
    (AccountLink, ConsoleAccountLinkAdmin),
):
    admin.site.unregister(model)
    admin.site.register(model, console_admin)


class AccountAutocomplete(AutocompleteJsonView):
    """The admin's autocomplete, with an account offered as staff confirm it with the caller or
    at the counter: consumer ID, the holder's name and the registered mobile masked."""

    def serialize_result(self, obj, to_field_name):
        result = super().serialize_result(obj, to_field_name)
        if isinstance(obj, ConsumerAccount):
            result["text"] = f"{obj} · {obj.name} · {phone_mask(obj.registered_mobile)}"
        return result


def account_autocomplete(request):
    return AccountAutocomplete.as_view(admin_site=admin.site)(request)


# The site's URLs are built after every admin module is imported (config/urls.py).
admin.site.autocomplete_view = account_autocomplete
