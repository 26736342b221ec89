"""What the affordability tests share: a prepaid household of India's discom (7 days of emergency
credit, reconnection at 50 % of the dues) or of an Egyptian distribution company converted to
prepaid with arrears, money moved through the ledger, and a top-up paid as the gateway pays it."""

from __future__ import annotations

from decimal import Decimal

from rest_framework.test import APIClient

from billing.gateway import GATEWAYS
from billing.ledger import ledger_post
from billing.models import Balance, TopUp
from tests.accounts.factories import AccountLinkFactory
from tests.billing.factories import policy
from tests.meters.factories import MeterFactory, egypt, india

SIM = GATEWAYS["simulated"]


def household(utility=None, **policy_values):
    """A holder's link to an account with a prepaid meter; the utility's policy set as given."""
    utility = utility or india()
    meter = MeterFactory(utility=utility)
    link = AccountLinkFactory(account=meter.account)
    policy(utility, **policy_values)
    return link, meter


def egypt_household(**policy_values):
    return household(egypt(), **policy_values)


def india_household(**policy_values):
    return household(india(), **policy_values)


def charge(account, amount: str, key: str):
    """Energy charged: the balance falls by `amount`."""
    ledger_post(
        account=account,
        kind="energy_charge",
        amount=-Decimal(amount),
        key=key,
        description="energy",
    )


def credit(account, amount: str, key: str):
    """Money in without a top-up row (an opening balance)."""
    ledger_post(
        account=account, kind="topup", amount=Decimal(amount), key=key, description="top-up"
    )


def arrears(account, amount: str, key: str = "arrears"):
    """Arrears carried as debt (a conversion to prepaid): the debt rises, the balance does not."""
    ledger_post(
        account=account,
        kind="debt_transfer",
        amount=Decimal(0),
        key=key,
        description="arrears carried as debt",
        debt_change=Decimal(amount),
    )


def balance_of(account) -> tuple[Decimal, Decimal]:
    row = Balance.objects.filter(account=account).first()
    return (row.amount, row.debt) if row else (Decimal(0), Decimal(0))


def top_up(api, account, amount: str, key: str) -> TopUp:
    """The consumer tops up in the app and the gateway confirms the payment by its webhook (with
    what the payment sets off after commit: reconnection, the balance check, alerts)."""
    response = api.post(
        f"/api/v1/accounts/{account.pk}/topups/",
        {"amount": amount, "channel": "app"},
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert response.status_code == 201, response.json()
    topup = TopUp.objects.get(pk=response.json()["topup"]["id"])
    body = SIM.event_body(
        reference=topup.gateway_reference,
        amount=topup.amount,
        currency=topup.currency,
        succeeded=True,
    )
    with api._capture(execute=True):
        answer = APIClient().post(
            "/api/v1/payments/webhooks/simulated/",
            data=body,
            content_type="application/json",
            HTTP_SIM_SIGNATURE=SIM.sign(body),
        )
    assert answer.json() == {"status": "credited"}, answer.json()
    topup.refresh_from_db()
    return topup
