"""Money coming in with bad input is refused (4xx), never a 500: partner payments racing on one
reference, absurd amounts from partners, and gateway events we could not store."""

from __future__ import annotations

import json
import threading
from decimal import Decimal

import pytest
from django.db import connection
from rest_framework.test import APIClient

from billing.gateway import GATEWAYS
from billing.models import Balance, LedgerEntry, PartnerPayment, TopUp, WebhookEvent
from billing.payments import partner_token_create, payment_code_for
from tests.accounts.factories import AccountLinkFactory, ConsumerAccountFactory
from tests.meters.factories import egypt

SIM = GATEWAYS["simulated"]


def partner_client(account) -> APIClient:
    _, token = partner_token_create(utility=account.utility, name="Fawry-like network")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def pay_url(account) -> str:
    return f"/api/v1/partners/payment-codes/{payment_code_for(account)}/payments/"


# --- Partner payments ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_twenty_partner_payments_at_once_with_one_reference_credit_once_and_answer_alike():
    """A partner retrying on a timeout sends the same payment again and again, at once. Before,
    7 of 20 answered 500 (the second insert hit gateway_reference_unique); now the losers wait
    for the winner and answer as a retry does: 200 with the winner's receipt."""
    account = ConsumerAccountFactory(utility=egypt())
    _, token = partner_token_create(utility=account.utility, name="Fawry-like network")
    url = pay_url(account)
    barrier = threading.Barrier(20)
    answers: list[tuple[int, dict]] = []
    errors: list[BaseException] = []

    def pay():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        client.raise_request_exception = False
        try:
            barrier.wait()
            response = client.post(
                url, {"amount": "100.50", "reference": "outlet-991"}, format="json"
            )
            answers.append((response.status_code, response.json()))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=pay) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    statuses = sorted(code for code, _ in answers)
    assert statuses == [200] * 19 + [201], statuses
    assert len({json.dumps(body, sort_keys=True) for _, body in answers}) == 1
    assert answers[0][1]["status"] == "succeeded" and answers[0][1]["receipt_number"]
    assert TopUp.objects.count() == PartnerPayment.objects.count() == 1
    assert LedgerEntry.objects.filter(kind="topup").count() == 1
    assert Balance.objects.get(account=account).amount == Decimal("100.50")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        b'{"amount": 1e400, "reference": "r-1"}',
        b'{"amount": "1e25", "reference": "r-1"}',
        b'{"amount": "1_000", "reference": "r-1"}',
        b'{"amount": "NaN", "reference": "r-1"}',
        b'{"amount": 100, "reference": "r-\\u0000"}',
        b'{"amount": ' + b"[" * 2048 + b"]" * 2048 + b"}",
    ],
)
def test_absurd_partner_payments_are_refused_and_nothing_is_written(body):
    account = ConsumerAccountFactory(utility=egypt())
    response = partner_client(account).post(
        pay_url(account), data=body, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert set(response.json()["error"]) >= {"code", "message", "fields"}
    assert not TopUp.objects.exists()


# --- The gateway's webhook --------------------------------------------------------------------------


@pytest.fixture
def pending(db):
    link = AccountLinkFactory()
    from billing.payments import topup_start

    topup, _ = topup_start(account=link.account, amount=Decimal("1.500"), channel="app")
    return topup


def event(topup, **overrides) -> bytes:
    data = json.loads(
        SIM.event_body(
            reference=topup.gateway_reference,
            amount=topup.amount,
            currency=topup.currency,
            succeeded=True,
        )
    )
    return json.dumps({**data, **overrides}).encode()


def deliver(client, body: bytes):
    return client.post(
        "/api/v1/payments/webhooks/simulated/",
        data=body,
        content_type="application/json",
        HTTP_SIM_SIGNATURE=SIM.sign(body),
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"id": "e" * 101},  # longer than WebhookEvent.event_id: a DataError on PostgreSQL
        {"id": "evt\x00"},
        {"reference": "sim\x00"},
        {"id": 12},
        {"amount": "sNaN"},  # compared with the top-up's amount: InvalidOperation
        {"amount": "NaN"},
        {"amount": [1]},
        {"type": None},
        {"id": "evt\ud800"},  # a lone surrogate: no UTF-8 for it, a 500 where it was stored
        {"note": "\udc00"},  # in a field we do not read, stored with the payload all the same
    ],
)
def test_a_signed_event_we_could_not_store_is_refused_and_credits_nothing(
    client, pending, overrides
):
    response = deliver(client, event(pending, **overrides))
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] in ("malformed_event", "invalid_character")
    assert not WebhookEvent.objects.exists()
    pending.refresh_from_db()
    assert pending.status == TopUp.Status.PENDING


@pytest.mark.parametrize("number", [b"1e400", b"-1e400"])
def test_a_signed_event_with_a_number_past_floats_range_is_refused(client, pending, number):
    """Stored with the event as Infinity, which a JSON column refuses: it was a 500."""
    body = event(pending).replace(b"}", b', "x": ' + number + b"}")

    response = deliver(client, body)

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "malformed_event"
    assert not WebhookEvent.objects.exists()


def test_a_signed_event_too_deep_is_refused(client, pending):
    response = deliver(client, b'{"id": ' + b"[" * 2048 + b"]" * 2048 + b"}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_deep"


def test_an_event_id_of_100_characters_is_taken(client, pending):
    response = deliver(client, event(pending, id="e" * 100))
    assert response.json() == {"status": "credited"}
    assert WebhookEvent.objects.get().payload["amount"] == "1.500"
