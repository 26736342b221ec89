"""Every other way money comes in: payment codes, call-centre links, the office counter."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import Balance, PaymentLink, TopUp
from billing.payments import partner_token_create, payment_code_for, payment_link_create
from tests.accounts.factories import ConsumerAccountFactory, UserFactory
from tests.meters.factories import egypt


@pytest.fixture
def eg_account(db):
    return ConsumerAccountFactory(
        utility=egypt(),
        name="Ahmed Hassan",
        consumer_id="0123456789",
        registered_mobile="+201001234567",
    )


@pytest.fixture
def partner(make_api, eg_account):
    _, token = partner_token_create(utility=eg_account.utility, name="Fawry-like network")
    api = make_api()
    api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


def mistype(code: str) -> list[str]:
    """Every single-digit slip and every swap of neighbouring digits."""
    slips = [
        code[:i] + d + code[i + 1 :] for i in range(len(code)) for d in "0123456789" if d != code[i]
    ]
    swaps = [
        code[:i] + code[i + 1] + code[i] + code[i + 2 :]
        for i in range(len(code) - 1)
        if code[i] != code[i + 1]
    ]
    return slips + swaps


def test_a_payment_code_looks_up_the_masked_name_and_amount_due(partner, eg_account):
    from billing.ledger import ledger_post

    ledger_post(
        account=eg_account, kind="bill", amount=Decimal("-250.40"), key="b", description="bill"
    )
    body = partner.get(f"/api/v1/partners/payment-codes/{payment_code_for(eg_account)}/").json()
    assert body["name"] == "A**** H*****"
    assert body["amount_due"] == "250.40" and body["currency"] == "EGP"
    assert "0123456789" not in str(body)


def test_a_mistyped_code_is_refused_before_any_money_moves(partner, eg_account):
    code = payment_code_for(eg_account)
    for wrong in mistype(code):
        lookup = partner.get(f"/api/v1/partners/payment-codes/{wrong}/")
        pay = partner.post(
            f"/api/v1/partners/payment-codes/{wrong}/payments/",
            {"amount": "100", "reference": wrong},
        )
        assert lookup.status_code == pay.status_code == 400, wrong
        assert pay.json()["error"]["code"] == "invalid_payment_code"
    assert not TopUp.objects.exists()


def test_paying_by_code_credits_the_right_account_once(partner, eg_account):
    other = ConsumerAccountFactory(utility=eg_account.utility)
    url = f"/api/v1/partners/payment-codes/{payment_code_for(eg_account)}/payments/"

    first = partner.post(url, {"amount": "100.50", "reference": "outlet-991"})
    retry = partner.post(url, {"amount": "100.50", "reference": "outlet-991"})
    reused = partner.post(url, {"amount": "20.00", "reference": "outlet-991"})

    assert first.status_code == 201 and retry.status_code == 200
    assert first.json()["receipt_number"] == retry.json()["receipt_number"]
    assert reused.status_code == 400 and reused.json()["error"]["code"] == "reference_reused"
    assert Balance.objects.get(account=eg_account).amount == Decimal("100.50")
    assert not Balance.objects.filter(account=other).exists()


def test_partners_only_reach_their_own_utility(make_api, eg_account):
    from tests.accounts.factories import UtilityFactory

    kuwait = UtilityFactory()
    _, token = partner_token_create(utility=kuwait, name="elsewhere")
    api = make_api()
    api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert (
        api.get(f"/api/v1/partners/payment-codes/{payment_code_for(eg_account)}/").status_code
        == 404
    )
    consumer = make_api(UserFactory())
    assert (
        consumer.get(f"/api/v1/partners/payment-codes/{payment_code_for(eg_account)}/").status_code
        == 401
    )


def test_a_payment_link_goes_to_the_registered_mobile_and_works_once(
    client, eg_account, sms_outbox, settings, django_capture_on_commit_callbacks
):
    from billing.gateway import GATEWAYS

    with django_capture_on_commit_callbacks(execute=True):
        _link, url = payment_link_create(
            account=eg_account, amount=Decimal("75.00"), created_by=None
        )
    assert [m.to for m in sms_outbox] == ["+201001234567"]
    assert url in sms_outbox[0].body and "pay 75.00 EGP for account" in sms_outbox[0].body
    path = url.removeprefix(settings.PUBLIC_BASE_URL)

    page = client.get(path)
    assert page.status_code == 200 and b"A**** H*****" in page.content
    assert b"75.00 EGP" in page.content and b"75.000" not in page.content
    assert b"EET" in page.content or b"EEST" in page.content  # valid until, in Cairo time
    go = client.post(path)
    assert go.status_code == 302 and "/pay/simulated/" in go["Location"]
    topup = TopUp.objects.get()
    assert topup.channel == "call_centre"
    checkout = client.get(go["Location"].removeprefix(settings.PUBLIC_BASE_URL))
    assert b"75.00 EGP" in checkout.content and b"75.000" not in checkout.content

    sim = GATEWAYS["simulated"]
    body = sim.event_body(
        reference=topup.gateway_reference, amount=topup.amount, currency="EGP", succeeded=True
    )
    client.post(
        "/api/v1/payments/webhooks/simulated/",
        data=body,
        content_type="application/json",
        HTTP_SIM_SIGNATURE=sim.sign(body),
    )
    assert Balance.objects.get(account=eg_account).amount == Decimal("75.00")

    used = client.get(path)
    assert used.status_code == 410 and b"already been used" in used.content
    assert client.post(path).status_code == 410
    assert TopUp.objects.count() == 1


def test_a_link_whose_checkout_expired_starts_a_new_one(client, eg_account, settings):
    _link, url = payment_link_create(account=eg_account, amount=Decimal("75.00"), created_by=None)
    path = url.removeprefix(settings.PUBLIC_BASE_URL)
    first = client.post(path)
    TopUp.objects.filter(pk=PaymentLink.objects.get().topup_id).update(status="expired")

    again = client.post(path)

    assert again.status_code == 302 and again["Location"] != first["Location"]
    assert TopUp.objects.count() == 2
    assert PaymentLink.objects.get().topup.checkout_url == again["Location"]
    assert client.post(path)["Location"] == again["Location"]  # resumed, not a third
    # A checkout past its validity is settled with the gateway before a new one starts:
    # tests/billing/test_settlement.py (it needs the gateway served).


def test_admin_payment_links_are_sent_in_the_currency_s_decimals(
    client, eg_account, sms_outbox, django_capture_on_commit_callbacks
):
    client.force_login(UserFactory(username="agent", is_staff=True, is_superuser=True))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/admin/billing/paymentlink/add/", {"account": eg_account.pk, "amount": "75"}
        )
    assert response.status_code == 302
    assert "pay 75.00 EGP for account 0123456789" in sms_outbox[-1].body
    listing = client.get("/admin/billing/paymentlink/")
    assert b"75.00 EGP" in listing.content and b"75.000" not in listing.content
    refused = client.post(
        "/admin/billing/paymentlink/add/", {"account": eg_account.pk, "amount": "75.005"}
    )
    assert b"At most 2 decimal places" in refused.content
    assert PaymentLink.objects.count() == 1


def test_an_expired_link_is_refused(client, eg_account):
    link, _ = payment_link_create(account=eg_account, amount=Decimal("75.00"), created_by=None)
    PaymentLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.post(f"/pay/link/{link.token}/")
    assert response.status_code == 410 and b"expired" in response.content
    assert not TopUp.objects.exists()
    assert client.get("/pay/link/not-a-token/").status_code == 404


def test_a_cashier_records_cash_and_the_consumer_gets_a_receipt(
    client, eg_account, sms_outbox, django_capture_on_commit_callbacks
):
    cashier = UserFactory(username="cashier", is_staff=True, is_superuser=True)
    client.force_login(cashier)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/admin/billing/topup/counter/",
            {"account": eg_account.pk, "amount": "300.00"},
            follow=True,
        )
    assert response.status_code == 200
    topup = TopUp.objects.get()
    assert (topup.channel, topup.status, topup.user) == ("counter", "succeeded", cashier)
    assert topup.receipt_number.encode() in response.content
    assert Balance.objects.get(account=eg_account).amount == Decimal("300.00")
    assert sms_outbox[-1].to == "+201001234567" and topup.receipt_number in sms_outbox[-1].body
    assert "received 300.00 EGP in cash" in sms_outbox[-1].body
    assert b"300.00 EGP" in response.content and b"300.000" not in response.content
    entry = topup.ledger_entry
    assert entry.created_by == cashier


def test_a_cashier_cannot_record_a_bad_amount(client, eg_account):
    client.force_login(UserFactory(username="cashier", is_staff=True, is_superuser=True))
    response = client.post(
        "/admin/billing/topup/counter/", {"account": eg_account.pk, "amount": "1.234"}
    )
    assert response.status_code == 200 and b"decimal places" in response.content
    assert not TopUp.objects.exists()


def test_saving_a_tariff_in_the_admin_charges_readings_that_waited_for_it(client, db):
    from datetime import UTC, datetime

    from billing import charging
    from billing.models import Balance, LedgerEntry
    from meters import services as meter_services
    from tests.meters.factories import MeterFactory

    meter = MeterFactory()
    start = datetime(2026, 11, 1, 21, tzinfo=UTC)
    meter_services.readings_ingest(
        utility=meter.utility,
        blocks=[{"meter": meter.serial, "start": start.isoformat(), "values": [1000] * 4}],
        source="test",
    )
    charging.charges_run()  # no tariff: set aside
    client.force_login(UserFactory(username="pricing", is_staff=True, is_superuser=True))
    response = client.post(
        "/admin/billing/tariff/add/",
        {
            "utility": meter.utility.pk,
            "name": "flat",
            "kind": "flat",
            "payment_mode": "prepaid",
            "valid_from": "2025-01-01",
            "flat_rate": "0.005",
            "fixed_daily_charge": "0",
            "slabs-TOTAL_FORMS": 0,
            "slabs-INITIAL_FORMS": 0,
            "periods-TOTAL_FORMS": 0,
            "periods-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302, response.content[:2000]
    charging.charges_run()
    # Charged now: the balance moved (the day's energy is held on it until the day ends).
    assert Balance.objects.get(account=meter.account).amount == Decimal("-0.020")
    assert not LedgerEntry.objects.filter(kind="energy_charge").exists()
