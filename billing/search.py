"""Finding a consumer account by what staff have in hand at a counter or on the phone: the consumer
ID printed on the bill, a meter's serial, the registered mobile in any common format, a receipt
number or an electronic payment code. Never an internal id, never a scan of every account.

Each key is an exact lookup on an index that starts with the utility (so the staff member's
utilities narrow it first): accounts (utility, consumer_id) and (utility, registered_mobile),
meters (utility, serial), top-ups' unique receipt_number, and a payment code's own digits (the
account's number with ISO 7064 check digits, billing.payments.payment_code_for).
"""

from __future__ import annotations

from stdnum.iso7064 import mod_97_10

from accounts.models import ConsumerAccount, Utility
from billing.models import TopUp
from core.phone import phone_candidates
from meters.models import Meter

# A search term longer than any key (a mobile of 15 digits written with spaces, a receipt number of
# 26 characters) is not one of them.
MAX_TERM = 40


def _spellings(term: str) -> list[str]:
    """The term as typed and in capitals (serials, receipt numbers and many consumer IDs are
    printed in capitals; staff type them as they come)."""
    return sorted({term, term.upper()})


def payment_code_account_id(term: str) -> int | None:
    """The account number in a payment code whose check digits hold (spaces and dashes allowed)."""
    digits = term.replace(" ", "").replace("-", "")
    if len(digits) != 12 or not digits.isdigit() or not mod_97_10.is_valid(digits):
        return None
    return int(digits[:10])


def account_ids_find(*, term: str, utility_ids: list[int] | None) -> list[int]:
    """The accounts of `utility_ids` (None: every utility) that `term` names by any key.

    1. The utilities searched are listed first (a short table), so every lookup below starts with
       the utility column of its index, for a superuser as for a cashier of one utility.
    2. One query per key, each an exact match on an index; the answer is at most a handful of ids.
    """
    term = " ".join((term or "").split())
    if not term or len(term) > MAX_TERM:
        return []
    utilities = Utility.objects.all()
    if utility_ids is not None:
        utilities = utilities.filter(pk__in=utility_ids)
    countries = {}
    for pk, country in utilities.values_list("pk", "country"):
        countries[pk] = country
    if not countries:
        return []
    in_scope = list(countries)
    spellings = _spellings(term)
    accounts = ConsumerAccount.objects.filter(utility_id__in=in_scope)
    found: set[int] = set(accounts.filter(consumer_id__in=spellings).values_list("pk", flat=True))
    found |= set(
        Meter.objects.filter(
            utility_id__in=in_scope, serial__in=spellings, account__isnull=False
        ).values_list("account_id", flat=True)
    )
    mobiles = phone_candidates(term=term, countries=set(countries.values()))
    if mobiles:
        found |= set(
            accounts.filter(registered_mobile__in=sorted(mobiles)).values_list("pk", flat=True)
        )
    found |= set(
        TopUp.objects.filter(
            receipt_number__in=spellings, account__utility_id__in=in_scope
        ).values_list("account_id", flat=True)
    )
    coded = payment_code_account_id(term)
    if coded is not None:
        found |= set(accounts.filter(pk=coded).values_list("pk", flat=True))
    return sorted(found)
