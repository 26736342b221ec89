"""The admin's search by what staff have in hand (billing.search), for every list whose rows are
accounts or reach one: the account list, links, top-ups, the ledger, moves …"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from billing.search import account_ids_find
from core.admin import staff_utility_ids

SEARCH_HELP = _(
    "Consumer ID, meter serial, registered mobile (any format), receipt number or payment code."
)


def search_accounts(model_admin, request, queryset, search_term: str):
    """get_search_results for an admin whose rows are accounts or reach one (its `account_path`:
    "pk", "account"): the rows of the accounts the term names by any key, within the staff
    member's utilities. Exact keys on indexes: no scan of the table whatever its size."""
    if not search_term.strip():
        # A list shows its first page unsearched; an autocomplete waits for a key (listing a
        # million accounts to pick from helps nobody, and counting them costs a scan).
        autocomplete = getattr(request.resolver_match, "url_name", None) == "autocomplete"
        return (queryset.none() if autocomplete else queryset), False
    ids = account_ids_find(term=search_term, utility_ids=staff_utility_ids(request.user))
    return queryset.filter(**{f"{model_admin.account_path}__in": ids}), False


class AccountSearchMixin:
    """For an admin whose rows reach an account by `account_path`: its search box takes every
    key in SEARCH_HELP. Django's admin needs search_fields to show the box; they are not used."""

    account_path = "account"
    search_fields = ["=account__consumer_id"]
    search_help_text = SEARCH_HELP

    def get_search_results(self, request, queryset, search_term):
        return search_accounts(self, request, queryset, search_term)
