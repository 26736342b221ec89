"""bench/failover.py's reckoning, and the answer its clients retry on when the database is gone."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import OperationalError, connection

from billing.models import PartnerPayment, TopUp
from billing.payments import partner_token_create, payment_code_for
from tests.accounts.factories import ConsumerAccountFactory

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import failover  # bench/ is not a package: on the path above
from failover import Operation, Write, first_write_after, operation_amount, reckon


def op(index: int, *, account: int = 7, acknowledged: bool = True) -> Operation:
    return Operation(
        index=index,
        kind="partner",
        account=account,
        amount=operation_amount(index),
        acknowledged=acknowledged,
    )


def test_every_operation_of_a_run_has_an_amount_of_its_own():
    amounts = [operation_amount(n) for n in range(1000)]
    assert len(set(amounts)) == 1000
    assert amounts[0] == Decimal("1.001") and amounts[-1] == Decimal("2.000")
    assert all(a == a.quantize(Decimal("0.001")) for a in amounts)  # KWD's three decimals


def test_an_acknowledged_payment_missing_from_the_ledger_is_lost():
    operations = [op(0), op(1), op(2, acknowledged=False)]
    credits = {(7, operation_amount(0)): 1}
    result = reckon(operations=operations, credits=credits)
    # op 1 was acknowledged and is not there; op 2 never was, so its absence is no loss.
    assert (result.acknowledged, result.found, result.lost) == (2, 1, 1)
    assert result.duplicated == result.strays == 0


def test_a_payment_credited_twice_is_duplicated_acknowledged_or_not():
    operations = [op(0), op(1, acknowledged=False), op(2)]
    credits = {
        (7, operation_amount(0)): 2,
        (7, operation_amount(1)): 2,
        (7, operation_amount(2)): 1,
    }
    result = reckon(operations=operations, credits=credits)
    assert result.duplicated == 2
    assert (result.found, result.lost) == (1, 0)  # twice is not "exactly": op 0 is not found


def test_a_credit_is_matched_by_its_account_as_well_as_its_amount():
    operations = [op(0, account=7), op(1, account=8)]
    # op 0's amount credited to op 1's account: op 0 is lost and the credit belongs to nobody.
    credits = {(8, operation_amount(0)): 1, (8, operation_amount(1)): 1}
    result = reckon(operations=operations, credits=credits)
    assert (result.found, result.lost, result.strays) == (1, 1, 1)


def test_the_first_write_counts_only_requests_sent_once_the_primary_was_dead():
    writes = [
        Write(sent=9.0, answered=10.2),  # sent before the kill: the old primary may have written it
        Write(sent=10.5, answered=13.0),
        Write(sent=11.0, answered=12.5),
    ]
    assert first_write_after(writes, kill_started=10.0, kill_done=10.1) == pytest.approx(2.5)
    assert first_write_after(writes[:1], kill_started=10.0, kill_done=10.1) is None


def test_the_clients_retry_exactly_the_answers_that_may_not_have_been_done():
    assert {429, 500, 502, 503, 504} == failover.RETRIED_STATUSES
    assert not {400, 401, 403, 404, 409} & failover.RETRIED_STATUSES


def _database_gone(execute, sql, params, many, context):
    raise OperationalError("server closed the connection unexpectedly")


def test_a_payment_while_the_database_is_gone_is_a_503_to_retry_and_then_done_once(make_api):
    """What the bench's clients rely on: a broken connection is a 503 with a code and Retry-After
    (not a 500), and the retry with the same reference pays once."""
    account = ConsumerAccountFactory()
    _, token = partner_token_create(utility=account.utility, name="network")
    partner = make_api()
    partner.client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    path = f"/api/v1/partners/payment-codes/{payment_code_for(account)}/payments/"
    body = {"amount": "5.000", "reference": "ref-1"}

    with connection.execute_wrapper(_database_gone):
        refused = partner.post(path, body)
    assert refused.status_code == 503, refused.content
    assert refused.json()["error"]["code"] == "database_unavailable"
    assert refused.headers["Retry-After"] == "1"
    assert not PartnerPayment.objects.exists()

    assert partner.post(path, body).status_code == 201
    assert partner.post(path, body).status_code == 200  # a retry of the acknowledged payment
    assert TopUp.objects.filter(account=account, status="succeeded").count() == 1
