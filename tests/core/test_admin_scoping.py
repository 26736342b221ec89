"""Staff of one utility see and act only on their utility's data, and what they do is audited."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import Balance, TopUp
from core.models import AuditEntry, StaffMembership
from tests.accounts.factories import ConsumerAccountFactory, UserFactory, UtilityFactory
from tests.meters.factories import MeterFactory, egypt


@pytest.fixture
def kuwait_cashier(client, db):
    from django.contrib.auth.models import Group

    kuwait = UtilityFactory()
    user = UserFactory(username="kw-cashier", is_staff=True)
    StaffMembership.objects.create(user=user, utility=kuwait, role="cashier")
    user.groups.add(Group.objects.get(name__icontains="cashier"))
    client.force_login(user)
    return client, kuwait


def test_lists_hold_only_their_utility(client, db):
    kuwait, cairo = UtilityFactory(), egypt()
    mine, theirs = (
        MeterFactory(utility=kuwait, serial="KW-MINE"),
        MeterFactory(utility=cairo, serial="EG-THEIRS"),
    )
    staff = UserFactory(username="kw-support", is_staff=True, is_superuser=False)
    StaffMembership.objects.create(user=staff, utility=kuwait, role="support")
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_meter", "view_consumeraccount"])
    )
    client.force_login(staff)

    meters = client.get("/admin/meters/meter/").content
    accounts = client.get("/admin/accounts/consumeraccount/").content

    assert b"KW-MINE" in meters and b"EG-THEIRS" not in meters
    assert (
        mine.account.consumer_id.encode() in accounts
        and theirs.account.consumer_id.encode() not in accounts
    )
    assert (
        client.get(f"/admin/meters/meter/{theirs.pk}/change/").status_code == 302
    )  # not found: sent away


def test_a_cashier_cannot_take_cash_for_another_utilitys_account(kuwait_cashier, db):
    client, kuwait = kuwait_cashier
    cairo_account = ConsumerAccountFactory(utility=egypt())
    mine = ConsumerAccountFactory(utility=kuwait)

    refused = client.post(
        "/admin/billing/topup/counter/", {"account": cairo_account.pk, "amount": "10.00"}
    )
    accepted = client.post("/admin/billing/topup/counter/", {"account": mine.pk, "amount": "1.500"})

    assert refused.status_code == 200 and b"Select a valid choice" in refused.content
    assert accepted.status_code == 200
    assert list(TopUp.objects.values_list("account_id", flat=True)) == [mine.pk]
    assert Balance.objects.get(account=mine).amount == Decimal("1.500")
    audit = AuditEntry.objects.get(action="counter-payment")
    assert audit.actor.username == "kw-cashier" and audit.utility_id == kuwait.pk
