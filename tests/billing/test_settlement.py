"""Every payment settles: the simulated gateway retries its webhook from its own books, and
reconciliation asks the gateway about top-ups whose webhook never came. Over real HTTP: a live
server is both the simulated gateway (its page, its status API) and us (the webhook). Clocks are
pinned by passing `now`: nothing sleeps."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.utils import timezone

from billing import gateway
from billing.gateway import GATEWAYS, PermanentGatewayError, TransientGatewayError
from billing.models import Balance, LedgerEntry, SimulatedPayment, TopUp
from billing.payments import topup_start
from billing.reconcile import topups_reconcile
from config.celery import app as celery_app
from tests.accounts.factories import ConsumerAccountFactory

pytestmark = pytest.mark.django_db(transaction=True)

SIM = GATEWAYS["simulated"]


@pytest.fixture
def served(live_server, settings):
    """The live server is where browsers, the gateway and reconciliation reach us."""
    settings.PUBLIC_BASE_URL = live_server.url
    return live_server


@pytest.fixture
def account(db):
    return ConsumerAccountFactory()


def dead_url() -> str:
    """An address where nothing listens: the webhook endpoint (or the gateway) is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def start(account, amount: str = "1.500") -> TopUp:
    topup, _url = topup_start(account=account, amount=Decimal(amount), channel="app")
    return topup


def pay(client, topup: TopUp, outcome: str = "pay"):
    return client.post(f"/pay/simulated/{topup.gateway_reference}/", {"outcome": outcome})


def pay_losing_the_delivery_task(client, topup: TopUp) -> None:
    """Pay while no worker takes the queued delivery: it sits in a broker nobody reads, as if the
    worker holding it had been killed. Only the gateway's books remember the outcome."""
    celery_app.conf.task_always_eager = False
    try:
        assert pay(client, topup).status_code == 200
    finally:
        celery_app.conf.task_always_eager = True


def balance(account) -> Decimal:
    row = Balance.objects.filter(account=account).first()
    return row.amount if row else Decimal(0)


def credits(account) -> int:
    return LedgerEntry.objects.filter(account=account, kind="topup").count()


def test_an_outcome_the_webhook_endpoint_missed_is_delivered_later_and_credited_once(
    served, settings, account, client
):
    topup = start(account)
    settings.PUBLIC_BASE_URL = dead_url()  # our endpoint is down when the payer pays

    assert pay(client, topup).status_code == 200
    payment = SimulatedPayment.objects.get(reference=topup.gateway_reference)
    assert (payment.outcome, payment.attempts, payment.delivered_at) == ("succeeded", 1, None)
    assert "unreachable" in payment.last_error
    # The gateway tries again after 10 s, then 20 s, 40 s …: from its table, not from memory.
    first_retry = payment.next_attempt_at
    assert timedelta(seconds=10) <= first_retry - payment.decided_at < timedelta(seconds=11)
    gateway.simulated_deliveries_send(now=first_retry - timedelta(seconds=1))
    assert SimulatedPayment.objects.get(pk=payment.pk).attempts == 1  # not due yet
    gateway.simulated_deliveries_send(now=first_retry)
    payment.refresh_from_db()
    assert payment.attempts == 2
    assert payment.next_attempt_at == first_retry + timedelta(seconds=20)
    assert TopUp.objects.get(pk=topup.pk).status == "pending"

    settings.PUBLIC_BASE_URL = served.url  # the endpoint is back
    sent = gateway.simulated_deliveries_send(now=payment.next_attempt_at)

    assert sent["delivered"] == 1
    payment.refresh_from_db()
    assert payment.delivered_at is not None and payment.next_attempt_at is None
    topup.refresh_from_db()
    assert topup.status == "succeeded" and topup.receipt_number
    assert balance(account) == Decimal("1.500") and credits(account) == 1
    assert gateway.simulated_deliveries_send(now=first_retry + timedelta(hours=1))["delivered"] == 0


def test_a_payment_whose_delivery_died_with_its_worker_is_settled_by_reconciliation(
    served, account, client
):
    topup = start(account)
    pay_losing_the_delivery_task(client, topup)
    paid_at = SimulatedPayment.objects.get(reference=topup.gateway_reference).decided_at

    # Not asked before the reconciliation delay (5 minutes): the webhook usually wins.
    assert topups_reconcile(now=topup.created_at + timedelta(minutes=4))["due"] == 0
    settled = topups_reconcile(now=topup.created_at + timedelta(minutes=5, seconds=1))

    assert settled["credited"] == 1
    topup.refresh_from_db()
    assert topup.status == "succeeded" and topup.paid_at == paid_at
    assert balance(account) == Decimal("1.500") and credits(account) == 1

    # The gateway's own retry arrives at last: answered, and nothing is credited twice.
    sent = gateway.simulated_deliveries_send(now=timezone.now() + timedelta(minutes=10))
    assert sent["delivered"] == 1
    assert balance(account) == Decimal("1.500") and credits(account) == 1
    again = topups_reconcile(now=topup.created_at + timedelta(hours=1))
    assert again["due"] == 0


def test_reconciliation_expires_a_checkout_never_paid(served, account, client):
    topup = start(account)

    early = topups_reconcile(now=topup.created_at + timedelta(minutes=6))
    assert early["pending"] == 1
    topup.refresh_from_db()
    assert topup.status == "pending" and topup.reconcile_note == "not paid"
    assert topup.reconcile_at == topup.created_at + timedelta(minutes=11)

    late = topups_reconcile(now=topup.created_at + timedelta(minutes=31))
    assert late["expired"] == 1
    topup.refresh_from_db()
    assert topup.status == "expired" and balance(account) == 0
    # The gateway's page refuses it too: nobody pays for a checkout we gave up on.
    SimulatedPayment.objects.filter(reference=topup.gateway_reference).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    refused = pay(client, topup)
    assert refused.status_code == 410 and b"expired" in refused.content
    assert SimulatedPayment.objects.get(reference=topup.gateway_reference).outcome == ""


def test_a_checkout_the_gateway_never_saw_expires_after_its_validity(served, account):
    created = timezone.now()
    topup = TopUp.objects.create(
        account=account,
        amount=Decimal("2.000"),
        currency="KWD",
        channel="app",
        gateway="simulated",
        gateway_reference="sim_never_opened",
        created_at=created,
        reconcile_at=created + timedelta(minutes=5),
    )
    assert topups_reconcile(now=created + timedelta(minutes=6))["pending"] == 1
    assert TopUp.objects.get(pk=topup.pk).reconcile_note == "never seen by the gateway"
    assert topups_reconcile(now=created + timedelta(minutes=31))["expired"] == 1
    assert TopUp.objects.get(pk=topup.pk).status == "expired"


def test_a_cancelled_payment_is_settled_as_failed(served, account, client):
    topup = start(account)
    celery_app.conf.task_always_eager = False
    try:
        pay(client, topup, outcome="cancel")
    finally:
        celery_app.conf.task_always_eager = True
    assert topups_reconcile(now=topup.created_at + timedelta(minutes=6))["failed"] == 1
    assert TopUp.objects.get(pk=topup.pk).status == "failed" and balance(account) == 0


def test_two_reconciliations_at_once_credit_each_payment_once(served, account, client):
    topups = [start(account, "1.250") for _ in range(6)]
    for topup in topups:
        pay_losing_the_delivery_task(client, topup)
    now = timezone.now() + timedelta(minutes=6)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def reconcile():
        try:
            barrier.wait()
            results.append(topups_reconcile(now=now))
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=reconcile) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    asked = sum(r["credited"] + r["already_credited"] for r in results)
    skipped = sum(r["skipped"] for r in results)
    assert asked + skipped == sum(r["due"] for r in results)
    assert asked == 6  # each top-up asked about by one of the two
    assert credits(account) == 6 and balance(account) == Decimal("7.500")
    assert set(TopUp.objects.values_list("status", flat=True)) == {"succeeded"}


def test_a_success_after_the_top_up_expired_here_is_credited_once(served, account, client):
    """A real gateway may confirm a payment after we gave up on it (a slow 3-D Secure, a webhook
    days late): the money was taken, so it is credited rather than lost."""
    topup = start(account)
    topups_reconcile(now=topup.created_at + timedelta(minutes=31))
    assert TopUp.objects.get(pk=topup.pk).status == "expired"

    def succeeded():
        body = SIM.event_body(
            reference=topup.gateway_reference,
            amount=topup.amount,
            currency=topup.currency,
            succeeded=True,
        )
        return client.post(
            "/api/v1/payments/webhooks/simulated/",
            data=body,
            content_type="application/json",
            HTTP_SIM_SIGNATURE=SIM.sign(body),
        )

    first, second = succeeded(), succeeded()

    assert first.status_code == 200 and first.json() == {"status": "credited"}
    assert second.json() == {"status": "already_credited"}
    topup.refresh_from_db()
    assert topup.status == "succeeded" and topup.receipt_number
    assert topup.ledger_entry.meta["settled_late_from"] == "expired"
    assert balance(account) == Decimal("1.500") and credits(account) == 1


class StubGateway:
    """A gateway API that answers every query with one status: 503 with Retry-After as a busy
    gateway does, 401 as one that no longer knows our key does."""

    def __init__(self, status: int = 503) -> None:
        self.status = status

    def __enter__(self):
        status = self.status

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(status)
                self.send_header("Retry-After", "900")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_gateway_answers_are_classed_transient_or_permanent(served, settings, account, client):
    topup = start(account)
    assert SIM.payment_status(reference="sim_nobody").status == "unknown"
    assert SIM.payment_status(reference=topup.gateway_reference).status == "pending"
    # Only with the API key: the status API is the gateway's, not a public page.
    assert client.get(f"/pay/simulated/api/payments/{topup.gateway_reference}/").status_code == 401

    settings.PUBLIC_BASE_URL = dead_url()
    with pytest.raises(TransientGatewayError):
        SIM.payment_status(reference=topup.gateway_reference)
    with StubGateway() as url:
        settings.PUBLIC_BASE_URL = url
        with pytest.raises(TransientGatewayError) as busy:
            SIM.payment_status(reference=topup.gateway_reference)
    assert busy.value.retry_after == 900

    with StubGateway(401) as url, pytest.raises(PermanentGatewayError):
        settings.PUBLIC_BASE_URL = url
        SIM.payment_status(reference=topup.gateway_reference)


def test_an_unreachable_gateway_leaves_top_ups_pending_and_ends_the_batch(settings, account):
    first, second = start(account), start(account)
    settings.PUBLIC_BASE_URL = dead_url()
    now = timezone.now() + timedelta(minutes=40)  # past their validity: still not expired

    counts = topups_reconcile(now=now)

    assert counts["due"] == 2 and counts["unreachable"] == 1  # the second is not asked
    first.refresh_from_db()
    assert first.status == "pending" and first.reconcile_at == now + timedelta(minutes=5)
    assert first.reconcile_note.startswith("gateway unreachable")
    second_due = second.reconcile_at
    second.refresh_from_db()
    assert second.status == "pending" and second.reconcile_at == second_due  # due next run


def test_a_busy_gateway_is_asked_again_when_it_says(settings, account):
    topup = start(account)
    now = timezone.now() + timedelta(minutes=6)
    with StubGateway() as url:
        settings.PUBLIC_BASE_URL = url
        assert topups_reconcile(now=now)["unreachable"] == 1
    assert TopUp.objects.get(pk=topup.pk).reconcile_at == now + timedelta(seconds=900)


def test_a_refused_query_stops_automatic_checks_and_is_recorded(settings, account):
    topup = start(account)
    with StubGateway(401) as url:
        settings.PUBLIC_BASE_URL = url
        counts = topups_reconcile(now=topup.created_at + timedelta(minutes=6))

    assert counts["error"] == 1
    topup.refresh_from_db()
    assert topup.status == "pending" and topup.reconcile_at is None
    assert topup.reconcile_note == "gateway refused the query: 401"
    assert topups_reconcile(now=topup.created_at + timedelta(hours=2))["due"] == 0


def test_a_one_use_link_paid_with_its_webhook_lost_is_not_paid_twice(served, account, client):
    """The payer paid the link's checkout but its outcome never came; reopened past the checkout's
    validity, the link asks the gateway first: used, no second checkout."""
    from billing.models import PaymentLink
    from billing.payments import payment_link_create

    _link, url = payment_link_create(account=account, amount=Decimal("2.000"), created_by=None)
    path = url.removeprefix(served.url)
    first = client.post(path)
    topup = PaymentLink.objects.get().topup
    pay_losing_the_delivery_task(client, topup)
    TopUp.objects.filter(pk=topup.pk).update(created_at=timezone.now() - timedelta(minutes=31))

    reopened = client.post(path)

    assert first.status_code == 302
    assert reopened.status_code == 410 and b"already been used" in reopened.content
    assert TopUp.objects.count() == 1
    assert TopUp.objects.get().status == "succeeded"
    assert balance(account) == Decimal("2.000") and credits(account) == 1


def test_a_one_use_link_whose_checkout_lapsed_unpaid_starts_a_new_one(served, account, client):
    from billing.models import PaymentLink
    from billing.payments import payment_link_create

    _link, url = payment_link_create(account=account, amount=Decimal("2.000"), created_by=None)
    path = url.removeprefix(served.url)
    first = client.post(path)
    old = PaymentLink.objects.get().topup
    TopUp.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=31))

    again = client.post(path)

    assert again.status_code == 302 and again["Location"] != first["Location"]
    assert TopUp.objects.get(pk=old.pk).status == "expired"
    assert PaymentLink.objects.get().topup.checkout_url == again["Location"]


def test_a_lapsed_link_checkout_waits_while_the_gateway_is_out_of_reach(
    served, settings, account, client
):
    from billing.models import PaymentLink
    from billing.payments import payment_link_create

    _link, url = payment_link_create(account=account, amount=Decimal("2.000"), created_by=None)
    client.post(url.removeprefix(served.url))
    old = PaymentLink.objects.get().topup
    TopUp.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(minutes=31))
    settings.PUBLIC_BASE_URL = dead_url()

    refused = client.post(url.removeprefix(served.url))

    assert refused.status_code == 409 and b"still being checked" in refused.content
    assert TopUp.objects.count() == 1
