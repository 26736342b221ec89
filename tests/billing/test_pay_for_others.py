"""Paying for someone else: anyone signed in tops up an account by its consumer id after seeing its
holder's masked name, links nothing, and alone sees the top-up afterwards."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.cache import cache

from accounts.models import AccountLink
from billing.gateway import GATEWAYS
from billing.models import Balance, IdempotencyRecord, TopUp
from notifications.models import Notification
from tests.accounts.factories import AccountLinkFactory, ConsumerAccountFactory, UserFactory
from tests.accounts.factories_shares import settle, shared_link
from tests.billing.factories import policy

SIM = GATEWAYS["simulated"]


@pytest.fixture(autouse=True)
def lookups_forgotten():
    """The lookup budget lives in the cache, which outlives a test's database."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def account(db):
    return ConsumerAccountFactory(
        consumer_id="10029999", name="Fatima Al Sabah", premises_address="Block 4, Salmiya"
    )


@pytest.fixture
def relative(make_api, db):
    return make_api(UserFactory())


def lookup(api, account, **params):
    query = {"utility": account.utility.code, "consumer_id": account.consumer_id, **params}
    return api.get("/api/v1/pay/accounts/", query)


def pay(api, account, amount="5.000", key="p-1", **body):
    return api.post(
        "/api/v1/pay/topups/",
        {
            "utility": account.utility.code,
            "consumer_id": account.consumer_id,
            "amount": amount,
            **body,
        },
        HTTP_IDEMPOTENCY_KEY=key,
    )


def test_a_relative_pays_by_consumer_id_and_the_holder_is_told(relative, account, make_api):
    holder = AccountLinkFactory(account=account)
    alerted = shared_link(holder, can_view=False, receives_alerts=True)
    quiet = shared_link(holder)

    found = lookup(relative, account)
    assert found.status_code == 200, found.json()
    assert found.json() == {
        "utility": "kw-mew",
        "utility_name": account.utility.name,
        "consumer_id": "10029999",
        "holder": "F***** A* S****",
        "currency": "KWD",
        "min_topup": "1.000",
        "max_topup": "10000.000",
    }

    started = pay(relative, account)
    assert started.status_code == 201, started.json()
    body = started.json()
    assert body["topup"]["amount"] == "5.000" and body["topup"]["status"] == "pending"
    assert body["topup"]["consumer_id"] == "10029999"
    assert "/pay/simulated/" in body["payment_url"]
    topup = TopUp.objects.get()
    assert topup.account == account and topup.user_id is not None
    payer = topup.user
    assert not AccountLink.objects.filter(user=payer).exists()  # no link made

    settle(make_api, topup)

    assert Balance.objects.get(account=account).amount == Decimal("5.000")
    for link in (holder, alerted):
        told = Notification.objects.get(user=link.user, category="topup_received")
        assert "5.000" in told.body
    assert not Notification.objects.filter(user__in=[payer, quiet.user]).exists()
    receipt = relative.get(f"/api/v1/pay/topups/{topup.pk}/")
    assert receipt.status_code == 200
    assert receipt.json()["status"] == "succeeded" and receipt.json()["receipt_number"]
    # The holder sees it in the account's own history.
    history = make_api(holder.user).get(f"/api/v1/accounts/{account.pk}/topups/").json()
    assert [t["id"] for t in history["results"]] == [str(topup.pk)]


def test_only_the_payer_sees_the_top_up_here(relative, account, make_api):
    holder = AccountLinkFactory(account=account)
    topup_id = pay(relative, account).json()["topup"]["id"]
    path = f"/api/v1/pay/topups/{topup_id}/"

    assert relative.get(path).status_code == 200
    for other in (
        make_api(UserFactory()),
        make_api(holder.user),
        make_api(UserFactory(is_staff=True, is_superuser=True)),
    ):
        refused = other.get(path)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "topup_not_found"
    assert make_api().get(path).status_code == 401
    assert make_api().get("/api/v1/pay/accounts/", {"utility": "kw-mew"}).status_code == 401


def test_a_retried_payment_makes_one_top_up(relative, account):
    first = pay(relative, account, key="same")
    again = pay(relative, account, key="same")
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    assert TopUp.objects.count() == 1
    other = pay(relative, account, amount="6.000", key="same")
    assert other.status_code == 400 and other.json()["error"]["code"] == "idempotency_key_reused"


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"consumer_id": "nobody"}, 404, "unknown_consumer"),
        ({"utility": "xx-none"}, 404, "unknown_consumer"),
        ("closed", 409, "account_closed"),
        ("policy_off", 409, "pay_for_others_unavailable"),
    ],
)
def test_an_account_that_cannot_be_paid_for_is_refused(relative, account, change, status, code):
    if change == "closed":
        account.status = "closed"
        account.save()
        change = {}
    elif change == "policy_off":
        policy(account.utility, pay_for_others_enabled=False)
        change = {}

    found = lookup(relative, account, **change)
    paid = pay(relative, account, **change)

    for response in (found, paid):
        assert response.status_code == status, response.json()
        assert response.json()["error"]["code"] == code
    assert TopUp.objects.count() == 0 and IdempotencyRecord.objects.count() == 0


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("0.500", "amount_below_minimum"),
        ("10000.001", "amount_too_large"),
        ("1.0001", "too_many_decimals"),
    ],
)
def test_a_bad_amount_is_refused_and_writes_nothing(relative, account, amount, code):
    response = pay(relative, account, amount=amount)
    assert response.status_code == 400, response.json()
    assert code in str(response.json())
    assert TopUp.objects.count() == 0 and IdempotencyRecord.objects.count() == 0


def test_lookups_are_throttled_per_user(relative, account, make_api, settings):
    settings.PAY_LOOKUPS_PER_HOUR = 3
    for consumer_id in ("1", "2", account.consumer_id):
        assert lookup(relative, account, consumer_id=consumer_id).status_code in (200, 404)

    refused = lookup(relative, account)

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_lookups"
    assert int(refused["Retry-After"]) > 0
    assert pay(relative, account).status_code == 429 and TopUp.objects.count() == 0
    assert lookup(make_api(UserFactory()), account).status_code == 200  # another user's budget
