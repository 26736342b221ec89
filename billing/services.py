"""The billing app's public writes, for views, tasks and other apps.

The work is split by concern: ledger.py (posting), charging.py (readings → charges), payments.py
(money in), bills.py (postpaid), relay.py (disconnect and reconnect). This module names what the
rest of the project may call, and what happens after an account's balance moves.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from accounts.models import AccountLink, ConsumerAccount
from billing import autotopup, relay, selectors
from billing.ledger import ledger_post
from billing.models import RelayCommand, TopUp
from billing.payments import (
    counter_payment_record,
    partner_payment_record,
    payment_link_create,
    topup_confirm,
    topup_start,
    webhook_receive,
)
from billing.relay import reconnect_request

__all__ = [
    "account_balance_changed",
    "counter_payment_record",
    "ledger_post",
    "partner_payment_record",
    "payment_link_create",
    "reconnect_request",
    "topup_confirm",
    "topup_start",
    "webhook_receive",
]


def account_balance_changed(*, account_id: int, topup_id: str | None = None) -> None:
    """After charges or a top-up: order a disconnection if the credit is used up, and tell the
    account's users what they need to know (top-up received, low or zero balance, days left,
    disconnection pending), each once."""
    from notifications import categories
    from notifications.services import alert_create, balance_alerts_evaluate

    account = ConsumerAccount.objects.select_related("utility").get(pk=account_id)
    with transaction.atomic():
        relay.disconnect_evaluate(account=account)
        summary = selectors.balance_summary(account=account)
        pending = (
            RelayCommand.objects.filter(
                account=account,
                action=RelayCommand.Action.DISCONNECT,
                status=RelayCommand.Status.WAITING,
            )
            .order_by("not_before")
            .first()
        )
        if summary["payment_mode"] == "postpaid":
            # Bills, not a running balance: no low-balance, days-left or zero alerts; a payment
            # is told against what is still owed.
            balance = Decimal(summary["credit"]) - Decimal(summary["amount_due"])
        else:
            balance = Decimal(summary["balance"])
            days_left = summary["projected_days_left"]
            # The run-out forecast (billing.forecast): when the supply could first be cut, and
            # what to top up by then; the balance alerts say both.
            runout = summary["runout"] or {}
            topup_amount = runout.get("topup_amount")
            balance_alerts_evaluate(
                account=account,
                balance=balance,
                days_left=Decimal(days_left) if days_left is not None else None,
                disconnect_at=pending.not_before if pending else None,
                disconnect_earliest=runout.get("disconnect_earliest"),
                topup_amount=Decimal(topup_amount) if topup_amount is not None else None,
            )
            # An automatic top-up at a balance level fires (or re-arms) here (billing.autotopup).
            autotopup.auto_topups_on_balance(account=account, balance=balance)
        if topup_id:
            topup = TopUp.objects.get(pk=topup_id)
            for link in AccountLink.objects.filter(
                account=account, unlinked_at__isnull=True, receives_alerts=True
            ).select_related("user"):
                alert_create(
                    user=link.user,
                    category=categories.TOPUP_RECEIVED,
                    dedupe_key=f"topup:{topup.pk}",
                    context={
                        "amount": topup.amount,
                        "balance": balance,
                        "consumer_id": account.consumer_id,
                        "account_id": account.pk,
                    },
                    utility=account.utility,
                )
