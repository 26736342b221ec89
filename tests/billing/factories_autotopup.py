"""Saved cards and automatic top-ups for tests (billing.autotopup)."""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone

from billing import gateway
from billing.autotopup import payment_method_save
from billing.ledger import ledger_post

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
TRANSIENT_CARD = "4000000000000119"


def card_token(number: str = GOOD_CARD) -> str:
    """What the app gets from the gateway's tokenisation (tests of it post to /pay/simulated/tokens/)."""
    card = gateway.simulated_card_tokenise(
        number=number, exp_month=12, exp_year=timezone.now().year + 3, cvc="123"
    )
    return card.single_use_token


def saved_card(user, number: str = GOOD_CARD):
    return payment_method_save(user=user, gateway_token=card_token(number))[0]


def credit(account, amount: str, key: str) -> None:
    ledger_post(
        account=account, kind="adjustment", amount=Decimal(amount), key=key, description="test"
    )


def spend(account, amount: str, key: str) -> None:
    """A charge as a charging pass posts it."""
    now = timezone.now()
    ledger_post(
        account=account,
        kind="energy_charge",
        amount=-Decimal(amount),
        key=key,
        description="Energy",
        period_start=now,
        period_end=now,
    )
