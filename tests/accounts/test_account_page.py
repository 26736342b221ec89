"""The account page staff answer a call from: every panel shows this account's rows (times with the
utility's zone, amounts in its currency's decimals, mobiles masked), the actions only to staff who
may take them, and its cost does not grow with the account's history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from billing.ledger import ledger_post
from billing.models import LedgerEntry, PaymentLink, TopUp
from meters import services as meter_services
from notifications.models import Notification
from outages.models import Compensation
from servicerequests.seed import request_types_seed
from tests.accounts.factories import AccountLinkFactory, ConsumerAccountFactory, UserFactory
from tests.meters.factories import MeterFactory
from tests.outages.factories import staff_member
from tests.servicerequests.factories import ServiceRequestFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # 12:00 in Kuwait


@pytest.fixture
def meter():
    with time_machine.travel(NOW - timedelta(days=3), tick=False):
        meter = MeterFactory(
            serial="KWM0077001",
            account__consumer_id="10077001",
            account__registered_mobile="+96550007123",
            relay="open",
        )
    request_types_seed(utility=meter.utility)
    return meter


def page_of(client, account) -> str:
    with time_machine.travel(NOW, tick=False):
        response = client.get(reverse("admin:accounts_consumeraccount_change", args=[account.pk]))
    assert response.status_code == 200
    return response.content.decode()


def fill(account, *, entries: int, links: int, alerts: int) -> None:
    """History for the account: ledger entries, holders, alerts, a request and compensations."""
    for n in range(entries):
        ledger_post(
            account=account,
            kind=LedgerEntry.Kind.ADJUSTMENT,
            amount=Decimal("1.250") if n % 2 == 0 else Decimal("-0.125"),
            key=f"test:{n}",
            description=f"Entry {n}",
            reason="Test history entry",
        )
    for n in range(links):
        link = AccountLinkFactory(account=account, verified_mobile=f"+9655{n:07d}")
        for k in range(alerts):
            Notification.objects.create(
                user=link.user,
                utility=account.utility,
                category="low_balance",
                dedupe_key=f"alert:{n}:{k}",
                title="Low balance",
                body="Top up soon.",
                language="en",
                push_status=Notification.PushStatus.NOT_CONFIGURED,
                created_at=NOW - timedelta(hours=k),
            )


def test_every_panel_shows_this_accounts_rows_in_local_time_and_currency_decimals(client, meter):
    account = meter.account
    client.force_login(staff_member(account.utility, role="support"))
    other = ConsumerAccountFactory(utility=account.utility, consumer_id="10077999")
    ledger_post(
        account=account,
        kind=LedgerEntry.Kind.ADJUSTMENT,
        amount=Decimal("5"),
        key="t:1",
        description="Goodwill credit",
        reason="Test credit entry",
    )
    ledger_post(
        account=other,
        kind=LedgerEntry.Kind.ADJUSTMENT,
        amount=Decimal("9"),
        key="t:2",
        description="Someone else's credit",
        reason="Test credit entry",
    )
    # Linked before the alert below: the panel shows what holders got while they held it (the
    # clock is pinned for the link too, or the test would depend on the hour it runs at).
    with time_machine.travel(NOW - timedelta(days=3), tick=False):
        holder = AccountLinkFactory(account=account, verified_mobile="+96550007123")
    Notification.objects.create(
        user=holder.user,
        utility=account.utility,
        category="zero_balance",
        dedupe_key="z",
        title="Balance at zero",
        body="...",
        language="en",
        push_status=Notification.PushStatus.NOT_CONFIGURED,
        sms_status=Notification.SmsStatus.QUEUED,
        created_at=NOW - timedelta(hours=1),
    )
    request = ServiceRequestFactory(
        account=account, deadline_at=NOW - timedelta(hours=2), status="under_review"
    )
    ServiceRequestFactory(account=account, status="completed")
    for status, amount in (("pending", "100"), ("credited", "200"), ("cancelled", "50")):
        Compensation.objects.create(
            utility=account.utility,
            account=account,
            standard="restoration",
            event_key=f"outage:{status}",
            amount=Decimal(amount),
            currency="KWD",
            reason="Supply restored late",
            failure_at=NOW - timedelta(days=1),
            exemption_deadline=NOW + timedelta(days=9),
            pay_by=NOW + timedelta(days=29),
            status=status,
        )
    start = datetime(2026, 11, 30, 21, tzinfo=UTC)  # 00:00 on 1 December in Kuwait
    meter_services.readings_ingest(
        utility=meter.utility,
        blocks=[{"meter": meter.serial, "start": start.isoformat(), "values": [250] * 8}],
        source="test",
    )

    page = page_of(client, account)

    assert "5.000 KWD" in page and "Goodwill credit" in page
    assert "Someone else" not in page and "9.000 KWD" not in page
    assert "2026-12-01 12:00 +03" in page  # as of, in Kuwait's time with its zone
    assert "KWM0077001" in page and "Open (supply off)" in page
    # Holders' and the registered mobile masked: the full number is nowhere on the page.
    assert "+965 ••••7123" in page and "50007123" not in page
    assert "Low balance" not in page and "Zero balance" in page
    assert "Not sent: push not configured" in page and "SMS: Queued" in page
    assert f"<td>{request.pk}</td>" in page and "(late)" in page
    assert "Completed" not in page
    assert 'Due: <strong id="compensation-due">100.000 KWD' in page
    assert '<strong id="compensation-paid">200.000 KWD' in page
    assert "<svg" in page and "kWh" in page and "2.000 kWh" in page  # 8 × 250 Wh today


def test_actions_are_shown_only_to_staff_who_may_take_them(client, meter):
    account = meter.account
    shown = {}
    for role in ("planner", "cashier", "support"):
        client.force_login(staff_member(account.utility, role=role))
        page = page_of(client, account)
        shown[role] = {
            action
            for action in ("take-cash", "send-payment-link", "adjust")
            if f'id="{action}"' in page
        }
    client.force_login(UserFactory(is_staff=True, is_superuser=True, phone=None))
    shown["superuser"] = {
        a
        for a in ("take-cash", "send-payment-link", "adjust")
        if f'id="{a}"' in page_of(client, account)
    }

    assert shown == {
        "planner": set(),
        "cashier": {"take-cash"},
        "support": {"send-payment-link"},
        "superuser": {"take-cash", "send-payment-link", "adjust"},
    }


def test_the_pages_actions_refuse_staff_without_their_permission(client, meter):
    account = meter.account
    client.force_login(staff_member(account.utility, role="support"))

    cash = client.post(
        reverse("admin:billing_topup_counter"), {"account": account.pk, "amount": "5"}
    )
    adjust = client.post(
        reverse("admin:billing_ledgerentry_adjust"),
        {"account": account.pk, "amount": "5", "reason": "Not theirs to give"},
    )
    client.force_login(staff_member(account.utility, role="cashier"))
    link = client.post(
        reverse("admin:billing_paymentlink_add"), {"account": account.pk, "amount": "5"}
    )

    assert (cash.status_code, adjust.status_code, link.status_code) == (403, 403, 403)
    assert not TopUp.objects.exists() and not LedgerEntry.objects.exists()
    assert not PaymentLink.objects.exists()


def test_a_payment_link_sent_from_the_page_returns_to_it(
    client, meter, sms_outbox, django_capture_on_commit_callbacks
):
    account = meter.account
    client.force_login(staff_member(account.utility, role="support"))
    back = reverse("admin:accounts_consumeraccount_change", args=[account.pk])

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:billing_paymentlink_add"),
            {"account": account.pk, "amount": "7.5", "next": back},
        )
    too_small = client.post(
        reverse("admin:billing_paymentlink_add"),
        {"account": account.pk, "amount": "0.5", "next": back},
    )
    elsewhere = client.post(
        reverse("admin:billing_paymentlink_add"),
        {"account": account.pk, "amount": "7.5", "next": "https://evil.example/"},
    )

    assert response.status_code == 302 and response["Location"] == back
    assert sms_outbox[-1].to == "+96550007123" and "7.500 KWD" in sms_outbox[-1].body
    assert too_small.status_code == 200 and PaymentLink.objects.count() == 2
    assert elsewhere.status_code == 302 and "evil" not in elsewhere["Location"]


def test_a_superuser_adjusts_from_the_page_and_comes_back_to_it(client, meter):
    account = meter.account
    client.force_login(UserFactory(is_staff=True, is_superuser=True, phone=None))
    back = reverse("admin:accounts_consumeraccount_change", args=[account.pk])

    response = client.post(
        reverse("admin:billing_ledgerentry_adjust"),
        {
            "account": account.pk,
            "amount": "-1.250",
            "reason": "Meter misread in November",
            "next": back,
        },
    )

    assert response.status_code == 302 and response["Location"] == back
    entry = LedgerEntry.objects.get(account=account)
    assert (entry.amount, entry.reason) == (Decimal("-1.250"), "Meter misread in November")
    assert "-1.250 KWD" in page_of(client, account)


def test_the_pages_queries_do_not_grow_with_the_accounts_history(
    client, meter, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    account = meter.account
    client.force_login(staff_member(account.utility, role="support"))
    page_of(client, account)  # warm: permissions, session
    fill(account, entries=2, links=1, alerts=2)
    with CaptureQueriesContext(connection) as small:
        page_of(client, account)
    fill(account, entries=60, links=30, alerts=5)
    with CaptureQueriesContext(connection) as large:
        page = page_of(client, account)

    assert len(large) == len(small) <= 40
    assert page.count("Entry ") == 20  # the last 20 entries only


def test_staff_see_who_the_account_is_shared_with_and_what_keeps_its_supply_on(client, meter):
    """A caller asks why their tenant gets alerts, or why 5 KWD left their card: the page says who
    holds the account and what each share may do, the automatic top-ups in force and the
    emergency credit in use, in the utility's zone and decimals."""
    from billing.models import AutoTopUp, EmergencyCredit, PaymentMethod

    account = meter.account
    holder = AccountLinkFactory(account=account, verified_mobile="+96550007123")
    tenant = UserFactory(phone="+96550007999")
    AccountLinkFactory(
        account=account,
        user=tenant,
        verified_mobile="+96550007999",
        role="shared",
        shared_by=holder,
        can_view=True,
        can_pay=True,
        receives_alerts=False,
    )
    card = PaymentMethod.objects.create(
        user=holder.user, gateway="simulated", reference="pm_test_1", brand="visa", last4="4242"
    )
    AutoTopUp.objects.create(
        account=account,
        user=holder.user,
        payment_method=card,
        trigger="balance",
        amount=Decimal("5.000"),
        threshold=Decimal("1.500"),
        monthly_cap=Decimal("20.000"),
    )
    EmergencyCredit.objects.create(
        account=account,
        amount=Decimal("0.500"),
        taken_at=NOW - timedelta(hours=3),
        repay_by=NOW + timedelta(days=7),
    )
    client.force_login(staff_member(account.utility, role="support"))

    page = page_of(client, account)

    assert "shared: sees it, pays" in page
    assert "+965 ••••7999" in page and "+96550007999" not in page  # the tenant's number masked
    assert "<td>Holder</td>" in page
    assert "Automatic top-up: 5.000 KWD" in page and "(1.500 KWD)" in page
    assert "monthly cap 20.000 KWD" in page
    assert "Emergency credit in use: 0.500 KWD" in page
    assert "repay by 2026-12-08 12:00 +03" in page
