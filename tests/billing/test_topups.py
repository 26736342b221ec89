"""Top-ups from the app: the same top-up twice credits once, a retry sees the top-up as it is now,
a webhook replay credits nothing, and late or out-of-order events never undo a payment."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

from billing.gateway import GATEWAYS
from billing.models import Balance, LedgerEntry, TopUp
from tests.accounts.factories import (
    AccountLinkFactory,
    ConsumerAccountFactory,
    UserFactory,
    UtilityFactory,
)
from tests.meters.factories import EGYPT, INDIA

SIM = GATEWAYS["simulated"]


@pytest.fixture
def link(db):
    return AccountLinkFactory()


@pytest.fixture
def api(make_api, link):
    return make_api(link.user)


def start(api, link, amount="1.500", key="k-1", **extra):
    return api.post(
        f"/api/v1/accounts/{link.account_id}/topups/",
        {"amount": amount, "channel": "app", **extra},
        HTTP_IDEMPOTENCY_KEY=key,
    )


def webhook(client, topup, *, succeeded=True, body=None, signature=None):
    body = body or SIM.event_body(
        reference=topup.gateway_reference,
        amount=topup.amount,
        currency=topup.currency,
        succeeded=succeeded,
    )
    return client.post(
        "/api/v1/payments/webhooks/simulated/",
        data=body,
        content_type="application/json",
        HTTP_SIM_SIGNATURE=signature or SIM.sign(body),
    )


def balance(account) -> Decimal:
    row = Balance.objects.filter(account=account).first()
    return row.amount if row else Decimal(0)


def test_a_top_up_is_credited_once_the_gateway_confirms_it(api, link, client):
    response = start(api, link)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["topup"]["amount"] == "1.500" and body["topup"]["status"] == "pending"
    assert body["payment_url"].startswith("http") and "/pay/simulated/" in body["payment_url"]
    assert balance(link.account) == 0

    topup = TopUp.objects.get()
    assert webhook(client, topup).json() == {"status": "credited"}
    assert balance(link.account) == Decimal("1.500")
    topup.refresh_from_db()
    assert topup.status == "succeeded" and topup.receipt_number
    detail = api.get(f"/api/v1/accounts/{link.account_id}/topups/{topup.pk}/").json()
    assert detail["status"] == "succeeded" and detail["receipt_number"] == topup.receipt_number


def test_the_same_top_up_sent_twice_credits_once(api, link, client):
    first = start(api, link, key="same")
    again = start(api, link, key="same")

    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    assert TopUp.objects.count() == 1
    webhook(client, TopUp.objects.get())
    assert balance(link.account) == Decimal("1.500")


def test_the_same_key_with_another_body_is_refused(api, link):
    start(api, link, key="same")
    other = start(api, link, amount="2.000", key="same")
    assert other.status_code == 400
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert TopUp.objects.count() == 1


def test_a_key_is_required(api, link):
    response = api.post(f"/api/v1/accounts/{link.account_id}/topups/", {"amount": "1.500"})
    assert (
        response.status_code == 400
        and response.json()["error"]["code"] == "idempotency_key_required"
    )


def test_a_webhook_replay_credits_nothing(api, link, client):
    start(api, link)
    topup = TopUp.objects.get()
    body = SIM.event_body(
        reference=topup.gateway_reference,
        amount=topup.amount,
        currency=topup.currency,
        succeeded=True,
    )

    first, replay = webhook(client, topup, body=body), webhook(client, topup, body=body)
    second_event = webhook(client, topup)  # the gateway retries with a new event id

    assert first.json()["status"] == "credited"
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    assert second_event.json()["status"] == "already_credited"
    assert LedgerEntry.objects.filter(kind="topup").count() == 1
    assert balance(link.account) == Decimal("1.500")


@pytest.mark.parametrize(
    ("signature", "code"),
    [
        ("t=1,v1=deadbeef", "stale_signature"),
        (None, "bad_signature"),
        ("garbage", "bad_signature"),
    ],
)
def test_bad_or_stale_signatures_are_refused(api, link, client, signature, code):
    start(api, link)
    topup = TopUp.objects.get()
    body = SIM.event_body(
        reference=topup.gateway_reference,
        amount=topup.amount,
        currency=topup.currency,
        succeeded=True,
    )
    if signature is None:
        signature = f"t={int(time.time())},v1={'0' * 64}"
    response = webhook(client, topup, body=body, signature=signature)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert balance(link.account) == 0


def test_an_event_for_another_amount_credits_nothing(api, link, client):
    start(api, link)
    topup = TopUp.objects.get()
    body = json.dumps(
        {
            "id": "evt_x",
            "type": "payment.succeeded",
            "reference": topup.gateway_reference,
            "amount": "100.000",
            "currency": "KWD",
        }
    ).encode()
    response = webhook(client, topup, body=body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "amount_mismatch"
    assert balance(link.account) == 0
    # and the refused event is not remembered: the real one still goes through
    assert webhook(client, topup).json()["status"] == "credited"


def test_a_retry_of_a_paid_top_up_answers_it_as_it_is_now(api, link, client):
    first = start(api, link, key="once").json()
    topup = TopUp.objects.get()
    webhook(client, topup)

    retry = start(api, link, key="once")

    assert retry.status_code == 201
    body = retry.json()
    topup.refresh_from_db()
    assert body["topup"]["id"] == first["topup"]["id"] == str(topup.pk)
    assert body["topup"]["status"] == "succeeded"
    assert body["topup"]["paid_at"] is not None
    assert body["topup"]["receipt_number"] == topup.receipt_number
    assert body["payment_url"] is None  # nothing left to pay
    assert TopUp.objects.count() == 1 and balance(link.account) == Decimal("1.500")
    # Still one request per key: another body under it is refused, paid or not.
    other = start(api, link, amount="2.000", key="once")
    assert other.status_code == 400 and other.json()["error"]["code"] == "idempotency_key_reused"


def test_a_retry_of_a_pending_top_up_gives_its_payment_page_again(api, link):
    first = start(api, link, key="wait").json()
    retry = start(api, link, key="wait").json()
    assert retry["payment_url"] == first["payment_url"] == TopUp.objects.get().checkout_url
    assert retry["topup"]["status"] == "pending"


def test_a_failure_after_success_is_ignored_and_says_so(api, link, client):
    start(api, link)
    topup = TopUp.objects.get()
    assert webhook(client, topup).json() == {"status": "credited"}

    late = webhook(client, topup, succeeded=False)

    assert late.status_code == 200
    assert late.json() == {"status": "ignored", "reason": "already_succeeded"}
    topup.refresh_from_db()
    assert topup.status == "succeeded" and balance(link.account) == Decimal("1.500")


def test_a_failure_after_expiry_changes_nothing(api, link, client):
    start(api, link)
    topup = TopUp.objects.get()
    TopUp.objects.filter(pk=topup.pk).update(status="expired")
    late = webhook(client, topup, succeeded=False)
    assert late.json() == {"status": "ignored", "reason": "already_expired"}
    assert TopUp.objects.get().status == "expired"


@pytest.mark.parametrize(
    ("utility", "minimum", "raw", "message"),
    [
        ({}, "1.000", "0.5", "The smallest top-up is 1.000 KWD."),
        (INDIA, "100.00", "99", "The smallest top-up is 100.00 INR."),
        (EGYPT, "10.00", "9.99", "The smallest top-up is 10.00 EGP."),
    ],
)
def test_the_smallest_top_up_is_told_in_the_currency_s_decimals(
    make_api, utility, minimum, raw, message
):
    account = ConsumerAccountFactory(utility=UtilityFactory(**utility, min_topup=Decimal(minimum)))
    link = AccountLinkFactory(account=account)
    response = start(make_api(link.user), link, amount=raw)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == message
    assert error["fields"]["amount"][0]["message"] == message


def test_a_failed_payment_credits_nothing(api, link, client):
    start(api, link)
    topup = TopUp.objects.get()
    assert webhook(client, topup, succeeded=False).json()["status"] == "failed"
    topup.refresh_from_db()
    assert topup.status == "failed" and balance(link.account) == 0


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("0.999", "amount_below_minimum"),
        ("1.5001", "too_many_decimals"),
        ("-5", "amount_not_positive"),
        ("-1e25", "amount_not_positive"),
        ("0", "amount_not_positive"),
        ("99999999", "amount_too_large"),  # above the default cap of 10,000
        ("1000000000.001", "amount_too_large"),
        ("1e25", "amount_too_large"),
        ("1E+999999", "amount_too_large"),
        ("lots", "invalid_amount"),
        ("NaN", "invalid_amount"),
    ],
)
def test_bad_amounts_are_refused_and_nothing_is_written(api, link, amount, code):
    response = start(api, link, amount=amount, key=f"k-{amount}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert not TopUp.objects.exists()


def test_kuwait_takes_any_amount_from_one_dinar_up_with_no_cap(api, link, client):
    """Kuwait's rule: 1 KWD and any amount above it. Its policy has no cap (max_topup empty,
    as seed_demo and migration 0010 set it); an absurd amount is still refused."""
    from tests.billing.factories import policy

    policy(link.account.utility, max_topup=None)
    assert start(api, link, amount="1000000000.001", key="absurd").status_code == 400
    response = start(api, link, amount="10000.001", key="large")

    assert response.status_code == 201, response.json()
    assert response.json()["topup"]["amount"] == "10000.001"
    assert webhook(client, TopUp.objects.get()).json() == {"status": "credited"}
    assert balance(link.account) == Decimal("10000.001")


def test_a_utility_that_sets_a_cap_refuses_what_is_above_it(api, link):
    from tests.billing.factories import policy

    policy(link.account.utility, max_topup=Decimal("500.000"))

    refused = start(api, link, amount="500.001", key="over")
    accepted = start(api, link, amount="500.000", key="at")

    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "amount_too_large"
    assert accepted.status_code == 201
    assert [t.amount for t in TopUp.objects.all()] == [Decimal("500.000")]


@pytest.mark.parametrize("raw", [b"1e25", b"1E+999999", b"1000000000.001"])
def test_absurd_json_numbers_are_refused_not_crashed_on(api, link, raw):
    """Without a utility cap the absolute bound refuses them, before any arithmetic (a 1e25 in
    fils has more digits than the decimal context: it used to be a 500)."""
    from tests.billing.factories import policy

    policy(link.account.utility, max_topup=None)
    response = api.client.post(
        f"/api/v1/accounts/{link.account_id}/topups/",
        data=b'{"amount": ' + raw + b"}",
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=f"absurd-{raw.decode()}",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "amount_too_large"
    assert not TopUp.objects.exists()


def test_a_kwd_amount_keeps_three_decimals_end_to_end(api, link, client):
    """A JSON number, not a string: 1.005 must not become 1.00499999 or 1.01."""
    response = api.client.post(
        f"/api/v1/accounts/{link.account_id}/topups/",
        data=b'{"amount": 1.005}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="decimals",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["topup"]["amount"] == "1.005"
    topup = TopUp.objects.get()
    webhook(client, topup)
    assert balance(link.account) == Decimal("1.005")
    statement = api.get(f"/api/v1/accounts/{link.account_id}/statement/").json()
    assert (
        statement["results"][0]["amount"] == "1.005"
        and statement["results"][0]["balance_after"] == "1.005"
    )
    assert api.get(f"/api/v1/accounts/{link.account_id}/balance/").json()["balance"] == "1.005"


class TestOwnership:
    @pytest.mark.parametrize("path", ["balance/", "statement/", "topups/", "bills/"])
    def test_only_linked_users_read(self, make_api, link, path):
        url = f"/api/v1/accounts/{link.account_id}/{path}"
        assert make_api(link.user).get(url).status_code == 200
        for intruder in (UserFactory(), UserFactory(is_staff=True)):
            response = make_api(intruder).get(url)
            assert (
                response.status_code == 404
                and response.json()["error"]["code"] == "account_not_found"
            )
        assert make_api().get(url).status_code == 401

    def test_nobody_tops_up_an_account_they_did_not_link(self, make_api, link):
        response = make_api(UserFactory()).post(
            f"/api/v1/accounts/{link.account_id}/topups/", {"amount": "5"}, HTTP_IDEMPOTENCY_KEY="x"
        )
        assert response.status_code == 404
        assert not TopUp.objects.exists()

    def test_a_top_up_of_another_account_is_not_found(self, make_api, link):
        mine = AccountLinkFactory(user=link.user)
        start(make_api(link.user), link)
        topup = TopUp.objects.get()
        response = make_api(link.user).get(f"/api/v1/accounts/{mine.account_id}/topups/{topup.pk}/")
        assert response.status_code == 404


def test_a_receipt_number_fits_whatever_the_utility_code(db):
    from billing.payments import topup_confirm
    from tests.accounts.factories import ConsumerAccountFactory, UtilityFactory

    account = ConsumerAccountFactory(
        utility=UtilityFactory(code="a-very-long-utility-code-of-32ch")
    )
    topup = TopUp.objects.create(
        account=account, amount=Decimal("1.000"), currency="KWD", channel="app"
    )
    receipt = topup_confirm(topup=topup).topup.receipt_number
    assert receipt.startswith("A-VERY-LON-") and len(receipt) <= 26
    assert TopUp.objects.get(pk=topup.pk).receipt_number == receipt
