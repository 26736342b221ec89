"""The periodic payment tasks find their work through partial indexes: their cost follows the
pending work, not the years of settled top-ups and delivered outcomes beside it (PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from billing.gateway import simulated_deliveries_due
from billing.models import SimulatedPayment, TopUp
from billing.reconcile import topups_due
from tests.accounts.factories import ConsumerAccountFactory

HISTORY = 20_000


def nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def scans(queryset) -> list[tuple[str, str | None, str | None]]:
    plan = json.loads(queryset.explain(format="json"))[0]["Plan"]
    return [
        (node["Node Type"], node.get("Relation Name"), node.get("Index Name"))
        for node in nodes(plan)
        if "Scan" in node["Node Type"]
    ]


@pytest.fixture
def postgresql(db):
    if connection.vendor != "postgresql":
        pytest.skip("query plans are PostgreSQL's")


def test_reconciliation_reads_only_pending_top_ups(postgresql):
    account = ConsumerAccountFactory()
    now = timezone.now()
    settled = [
        TopUp(
            account=account,
            amount=Decimal("1.000"),
            currency="KWD",
            channel="app",
            status="succeeded",
            gateway="simulated",
            gateway_reference=f"sim_old_{n}",
            created_at=now - timedelta(minutes=n),
            reconcile_at=now - timedelta(minutes=n - 5),
        )
        for n in range(HISTORY)
    ]
    pending = [
        TopUp(
            account=account,
            amount=Decimal("1.000"),
            currency="KWD",
            channel="app",
            gateway="simulated",
            gateway_reference=f"sim_new_{n}",
            reconcile_at=now - timedelta(minutes=n),
        )
        for n in range(3)
    ]
    TopUp.objects.bulk_create(settled + pending)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE billing_topup")

    found = scans(topups_due(now=now)[:100])

    assert ("Seq Scan", "billing_topup", None) not in found
    assert any(index == "topup_pending_reconcile" for _type, _rel, index in found), found
    assert len(list(topups_due(now=now))) == 3


def test_the_simulated_gateway_reads_only_undelivered_outcomes(postgresql):
    now = timezone.now()
    SimulatedPayment.objects.bulk_create(
        [
            SimulatedPayment(
                reference=f"sim_{n}",
                amount=Decimal("1.000"),
                currency="KWD",
                expires_at=now,
                outcome="succeeded",
                delivered_at=now - timedelta(minutes=n),
                next_attempt_at=None if n else now,
            )
            for n in range(HISTORY)
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE billing_simulatedpayment")

    found = scans(simulated_deliveries_due(now=now)[:50])

    assert ("Seq Scan", "billing_simulatedpayment", None) not in found
    assert any(index == "simulated_delivery_due" for _type, _rel, index in found), found
