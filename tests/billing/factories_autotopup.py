"""Saved cards and automatic top-ups for tests (billing.autotopup)."""

from __future__ import annotations

from django.utils import timezone

from billing import gateway
from billing.autotopup import payment_method_save
from tests.billing.factories import ledger_credit, ledger_spend

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


credit = ledger_credit
spend = ledger_spend
