"""Staff settle pending top-ups from the admin (the same reconciliation as the beat's), only with
the permission for it; and every billing list and page shows amounts in the currency's decimals."""

from __future__ import annotations

import importlib
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.apps import apps
from django.utils import timezone

from billing.ledger import ledger_post
from billing.models import Bill, LedgerEntry, TopUp
from billing.payments import topup_confirm, topup_start
from config.celery import app as celery_app
from tests.accounts.factories import ConsumerAccountFactory, UserFactory, UtilityFactory
from tests.billing.factories import policy
from tests.meters.factories import EGYPT, INDIA
from tests.outages.factories import staff_member

ACTION = "reconcile_selected"


def run_action(client, topups):
    return client.post(
        "/admin/billing/topup/",
        {"action": ACTION, "_selected_action": [str(t.pk) for t in topups], "index": 0},
        follow=True,
    )


@pytest.mark.parametrize(
    ("role", "allowed"), [("support", True), ("cashier", True), ("planner", False)]
)
def test_support_and_cashiers_may_settle_top_ups_and_planners_may_not(db, role, allowed):
    user = staff_member(UtilityFactory(), role=role)
    assert user.has_perm("billing.reconcile_topup") is allowed


def test_staff_who_may_only_look_are_not_offered_the_action_and_cannot_run_it(db, client):
    from django.contrib.auth.models import Permission

    utility = UtilityFactory()
    topup, _ = topup_start(
        account=ConsumerAccountFactory(utility=utility), amount=Decimal("1.000"), channel="app"
    )
    viewer = staff_member(utility, role="planner")
    viewer.user_permissions.add(Permission.objects.get(codename="view_topup"))
    client.force_login(viewer)

    listing = client.get("/admin/billing/topup/")
    assert listing.status_code == 200 and ACTION.encode() not in listing.content
    refused = run_action(client, [topup])
    assert b"Asked the gateway" not in refused.content
    assert TopUp.objects.get().status == "pending"

    client.force_login(staff_member(utility, role="support"))
    assert ACTION.encode() in client.get("/admin/billing/topup/").content


@pytest.mark.django_db(transaction=True)
def test_support_staff_settle_pending_top_ups_from_the_admin(live_server, settings, client):
    settings.PUBLIC_BASE_URL = live_server.url
    # A transactional test's flush took the migrations' groups: grant the roles as 0009 does.
    importlib.import_module("billing.migrations.0009_topup_reconciliation_simulated_gateway").grant(
        apps, None
    )
    utility = UtilityFactory()
    account = ConsumerAccountFactory(utility=utility)
    paid, _ = topup_start(account=account, amount=Decimal("2.500"), channel="app")
    forgotten, _ = topup_start(account=account, amount=Decimal("1.000"), channel="app")
    done, _ = topup_start(account=account, amount=Decimal("3.000"), channel="app")
    topup_confirm(topup=done)
    # Paid on the gateway's page while no worker takes the delivery (it is lost with its worker).
    celery_app.conf.task_always_eager = False
    try:
        client.post(f"/pay/simulated/{paid.gateway_reference}/", {"outcome": "pay"})
    finally:
        celery_app.conf.task_always_eager = True
    TopUp.objects.filter(pk=forgotten.pk).update(created_at=timezone.now() - timedelta(hours=1))

    client.force_login(staff_member(utility, role="support"))
    listing = client.get("/admin/billing/topup/?waiting=late")
    assert str(forgotten.pk).encode() in listing.content
    response = run_action(client, [paid, forgotten, done])

    assert response.status_code == 200
    assert (
        "Asked the gateway about 2 pending top-up(s): 1 credited to the account; 1 expired unpaid."
        " 1 chosen top-up(s) were already settled; nothing asked."
    ) in response.content.decode()
    statuses = dict(TopUp.objects.values_list("pk", "status"))
    assert (statuses[paid.pk], statuses[forgotten.pk]) == ("succeeded", "expired")
    assert LedgerEntry.objects.filter(kind="topup").count() == 2  # paid once, and `done`


# --- Amounts in the currency's decimals ----------------------------------------------------------


@pytest.fixture
def superuser_client(client, db):
    client.force_login(UserFactory(username="admin", is_staff=True, is_superuser=True))
    return client


@pytest.mark.parametrize(
    ("utility", "amount", "shown", "not_shown"),
    [
        (INDIA, "100", "100.00 INR", "100.000"),
        (EGYPT, "250.5", "250.50 EGP", "250.500"),
        ({}, "1.5", "1.500 KWD", "1.5 KWD"),
    ],
)
def test_billing_admin_pages_show_amounts_in_the_currency_s_decimals(
    superuser_client, utility, amount, shown, not_shown
):
    account = ConsumerAccountFactory(utility=UtilityFactory(**utility))
    value = Decimal(amount)
    topup = TopUp.objects.create(
        account=account, amount=value, currency=account.utility.currency, channel="app"
    )
    topup_confirm(topup=topup)
    entry = LedgerEntry.objects.get(kind="topup")
    Bill.objects.create(
        account=account,
        month=date(2026, 10, 1),
        kwh=Decimal("10"),
        energy_amount=value,
        fixed_amount=0,
        amount=value,
        due_date=date(2026, 11, 21),
    )
    policy(account.utility, emergency_credit=value, max_topup=Decimal("5000"))
    pages = [
        "/admin/billing/ledgerentry/",
        f"/admin/billing/ledgerentry/{entry.pk}/change/",
        "/admin/billing/topup/",
        f"/admin/billing/topup/{topup.pk}/change/",
        "/admin/billing/bill/",
        f"/admin/billing/bill/{Bill.objects.get().pk}/change/",
        "/admin/billing/balance/",
        "/admin/billing/billingpolicy/",
    ]
    for page in pages:
        response = superuser_client.get(page)
        assert response.status_code == 200, page
        text = response.content.decode()
        assert shown in text, page
        assert not_shown not in text, page


def test_a_policy_form_shows_and_takes_the_currency_s_decimals(superuser_client, db):
    utility = UtilityFactory(**INDIA)
    row = policy(utility, emergency_credit=Decimal("50"))
    page = superuser_client.get(f"/admin/billing/billingpolicy/{row.pk}/change/").content.decode()
    assert 'value="50.00"' in page and "50.000" not in page


def test_staff_adjustments_are_confirmed_in_the_currency_s_decimals(superuser_client, db):
    account = ConsumerAccountFactory(utility=UtilityFactory(**INDIA))
    ledger_post(account=account, kind="adjustment", amount=Decimal("10"), key="k", description="x")
    response = superuser_client.post(
        "/admin/billing/ledgerentry/adjust/",
        {"account": account.pk, "amount": "5", "reason": "a meter misread, corrected"},
        follow=True,
    )
    assert "Posted 5.00 INR to" in response.content.decode()
    assert "balance now 15.00 INR" in response.content.decode()
