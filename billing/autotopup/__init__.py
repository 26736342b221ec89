"""Automatic top-ups from a saved card (issue 18; docs/auto-topup.md).

A consumer saves a card with the gateway (we keep only its reusable reference, brand, last four
digits and expiry) and sets a rule on an account: top up `amount` when the balance falls to
`threshold`, or on a weekly or monthly schedule at a local time; never more than `monthly_cap` in
one local month. Each firing is an AutoTopUpRun, charged once however often it is retried (its id
is the gateway's idempotency key), then succeeded (credited through payments.topup_confirm),
failed and reported, or skipped (cap reached, rule or access ended, policy off).
"""

from __future__ import annotations

from billing.autotopup.cards import (
    payment_method_remove,
    payment_method_save,
    payment_methods_for_user,
)
from billing.autotopup.rules import (
    COMMITTED,
    OPEN,
    SCHEDULE_START_WITHIN,
    RuleInput,
    auto_topup_create,
    auto_topup_end,
    auto_topup_get,
    auto_topup_update,
    auto_topups_for_account,
    month_bounds,
    month_totals,
    schedule_next,
)
from billing.autotopup.runs import (
    CHARGE_LEASE,
    DUE_BATCH,
    RETRY_DELAYS,
    auto_topup_charge,
    auto_topups_due,
    auto_topups_on_balance,
)

__all__ = [
    "CHARGE_LEASE",
    "COMMITTED",
    "DUE_BATCH",
    "OPEN",
    "RETRY_DELAYS",
    "SCHEDULE_START_WITHIN",
    "RuleInput",
    "auto_topup_charge",
    "auto_topup_create",
    "auto_topup_end",
    "auto_topup_get",
    "auto_topup_update",
    "auto_topups_due",
    "auto_topups_for_account",
    "auto_topups_on_balance",
    "month_bounds",
    "month_totals",
    "payment_method_remove",
    "payment_method_save",
    "payment_methods_for_user",
    "schedule_next",
]
