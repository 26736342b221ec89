"""Each consumer sees only their own tenancy of a meter: the new tenant nothing before the move-in,
the old one nothing after the move-out, and what lies outside says so rather than "missing"."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import moves
from billing.ledger import ledger_post
from meters import services as meter_services
from outages.services import outage_publish
from tests.accounts.factories import AccountLinkFactory, UserFactory
from tests.billing.factories import flat_tariff
from tests.meters.factories import MeterFactory
from tests.outages.factories import OutageFactory, consumer_on, saudi, transformer_of

Q = timedelta(minutes=15)
NOV_1 = datetime(2026, 10, 31, 21, tzinfo=UTC)  # Kuwait midnight, 1 November local
MOVE = NOV_1 + timedelta(days=2, hours=12)  # 3 November, 12:00 in Kuwait


@pytest.fixture
def moved(make_api, db):
    """A meter held by one tenant until 3 Nov noon and by another after it, 4 days of readings."""
    meter = MeterFactory()
    flat_tariff(meter.utility)
    old_user = AccountLinkFactory(account=meter.account).user
    readings = [
        ({"index": i}, meter.serial, (NOV_1 + i * Q).isoformat(), 100, "actual")
        for i in range(4 * 96)
    ]
    meter_services.readings_ingest(utility=meter.utility, readings=readings, source="test")
    old_account = meter.account
    ledger_post(
        account=old_account, kind="topup", amount=Decimal("5.000"), key="t", description="Top-up"
    )
    moves.move_out(account=old_account, at=MOVE)
    new_account = moves.move_in(
        meter=meter, consumer_id="N1", registered_mobile="+96566001234", name="N", at=MOVE
    ).account
    new_user = AccountLinkFactory(account=new_account).user
    return {
        "meter": meter,
        "old": make_api(old_user),
        "new": make_api(new_user),
        "old_account": old_account,
        "new_account": new_account,
    }


def day_totals(api, meter):
    body = api.get(
        f"/api/v1/meters/{meter.pk}/consumption/",
        {"period_from": "2026-11-01", "period_to": "2026-11-05", "group_by": "day"},
    ).json()
    return [
        (b["energy_wh"], b["expected_intervals"], b["outside_intervals"]) for b in body["buckets"]
    ], body


def test_the_new_tenant_sees_nothing_before_the_move_in(moved):
    days, body = day_totals(moved["new"], moved["meter"])
    assert days == [(None, 0, 96), (None, 0, 96), (4800, 48, 48), (9600, 96, 0)]
    assert body["total"]["energy_wh"] == 48 * 100 + 96 * 100
    assert [(t["account"], t["current"]) for t in body["tenancies"]] == [
        (moved["new_account"].pk, True)
    ]
    assert body["tenancies"][0]["start"] == "2026-11-03T12:00:00+03:00"


def test_the_old_tenant_sees_nothing_after_the_move_out(moved):
    days, body = day_totals(moved["old"], moved["meter"])
    assert days == [(9600, 96, 0), (9600, 96, 0), (4800, 48, 48), (None, 0, 96)]
    assert body["tenancies"][0]["end"] == "2026-11-03T12:00:00+03:00"
    meter = moved["old"].get(f"/api/v1/meters/{moved['meter'].pk}/").json()
    # The meter is no longer theirs: its live state and its next tenant are not shown.
    assert meter["current"] is False and meter["consumer_id"] == moved["old_account"].consumer_id
    assert (meter["status"], meter["relay"], meter["last_reading_at"]) == (None, None, None)


def test_intervals_outside_the_tenancy_say_so(moved):
    rows = (
        moved["new"]
        .get(
            f"/api/v1/meters/{moved['meter'].pk}/consumption/",
            {
                "period_from": "2026-11-03T11:30:00+03:00",
                "period_to": "2026-11-03T12:30:00+03:00",
                "group_by": "interval",
            },
        )
        .json()["buckets"]
    )
    assert [(r["energy_wh"], r["quality"]) for r in rows] == [
        (None, "outside"),
        (None, "outside"),
        (100, "actual"),
        (100, "actual"),
    ]


def test_exports_hold_only_the_readers_tenancy(moved):
    response = moved["new"].get(
        f"/api/v1/meters/{moved['meter'].pk}/export/",
        {"period_from": "2026-11-01", "period_to": "2026-11-05", "format": "csv"},
    )
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    outside = [r for r in rows if r["quality"] == "outside"]
    assert len(rows) == 4 * 96 and len(outside) == 2 * 96 + 48
    assert all(r["wh"] == "" for r in outside)
    assert sum(int(r["wh"]) for r in rows if r["wh"]) == 144 * 100

    xml = (
        moved["old"]
        .get(
            f"/api/v1/meters/{moved['meter'].pk}/export/",
            {"period_from": "2026-11-01", "period_to": "2026-11-05", "format": "greenbutton"},
        )
        .content.decode()
    )
    assert xml.count("<espi:IntervalReading>") == 2 * 96 + 48
    assert f"RetailCustomer/{moved['old_account'].pk}/" in xml
    assert f"RetailCustomer/{moved['new_account'].pk}/" not in xml


def test_a_stranger_and_staff_see_no_meter(moved, make_api):
    meter = moved["meter"]
    for user in (UserFactory(), UserFactory(is_staff=True, is_superuser=True)):
        response = make_api(user).get(f"/api/v1/meters/{meter.pk}/")
        assert response.status_code == 404


def test_the_links_list_hands_out_every_id_a_client_needs(moved):
    listed = moved["new"].get("/api/v1/links/").json()
    assert [(item["account"], item["access"]) for item in listed] == [
        (moved["new_account"].pk, "full")
    ]
    assert listed[0]["meters"] == [
        {"id": moved["meter"].pk, "serial": moved["meter"].serial, "current": True}
    ]
    old = moved["old"].get("/api/v1/links/").json()
    assert old[0]["meters"] == [
        {"id": moved["meter"].pk, "serial": moved["meter"].serial, "current": False}
    ]


def test_an_outage_published_before_a_move_reaches_the_tenant_of_the_day(make_api):
    transformer = transformer_of(saudi())
    meter, (old_user,) = consumer_on(transformer)
    start = timezone.now() + timedelta(days=3)
    outage = OutageFactory(
        utility=meter.utility,
        planned_start=start,
        planned_end=start + timedelta(hours=4),
        transformers=[transformer],
    )
    outage_publish(outage_id=outage.pk)
    moves.move_out(account=meter.account)
    new_account = moves.move_in(
        meter=meter, consumer_id="N1", registered_mobile="+966501234567", name="N"
    ).account
    new_user = AccountLinkFactory(account=new_account).user

    # The notice's snapshot named the old account; the meter's tenant now is told instead.
    assert [o["id"] for o in make_api(new_user).get("/api/v1/outages/").json()] == [outage.pk]
    assert make_api(new_user).get(f"/api/v1/outages/{outage.pk}/").status_code == 200
    assert make_api(old_user).get("/api/v1/outages/").json() == []


def test_a_former_tenant_reads_a_request_but_cannot_act_on_it(moved):
    from servicerequests.models import RequestType, ServiceRequest
    from servicerequests.seed import request_types_seed

    request_types_seed(utility=moved["meter"].utility)
    request = ServiceRequest.objects.create(
        account=moved["old_account"],
        utility=moved["meter"].utility,
        type=RequestType.objects.filter(utility=moved["meter"].utility).first(),
        details={},
    )
    assert moved["old"].get(f"/api/v1/service-requests/{request.pk}/").status_code == 200
    comment = moved["old"].post(
        f"/api/v1/service-requests/{request.pk}/comments/", {"text": "Any news?"}
    )
    assert (comment.status_code, comment.json()["error"]["code"]) == (409, "account_closed")
    assert moved["new"].get(f"/api/v1/service-requests/{request.pk}/").status_code == 404
