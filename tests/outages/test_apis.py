"""The consumer API: my upcoming and active outages, one outage's details, my compensation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from outages import services
from outages.models import Compensation
from tests.accounts.factories import UserFactory
from tests.outages.factories import (
    OutageFactory,
    consumer_on,
    outage_publish_delivered,
    saudi,
    transformer_of,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def published():
    transformer = transformer_of(saudi())
    meter, (owner,) = consumer_on(transformer)
    _stranger_meter, (stranger,) = consumer_on(transformer_of(meter.utility))
    start = timezone.now() + timedelta(days=3)
    outage = OutageFactory(
        utility=meter.utility,
        planned_start=start,
        planned_end=start + timedelta(hours=4),
        transformers=[transformer],
    )
    outage_publish_delivered(outage, now=timezone.now())
    return {"outage": outage, "owner": owner, "meter": meter, "stranger": stranger}


def test_my_outages_lists_the_upcoming_one_in_local_time(make_api, published):
    response = make_api(published["owner"]).get("/api/v1/outages/")

    assert response.status_code == 200
    [item] = response.json()
    outage = published["outage"]
    assert item["id"] == outage.pk
    assert item["status"] == "published" and item["kind"] == "planned"
    assert item["start"].endswith("+03:00")
    assert item["timezone"] == "Asia/Riyadh"
    assert item["reason"] == "Transformer maintenance"


def test_drafts_cancelled_and_restored_outages_are_not_listed(make_api, published):
    owner = published["owner"]
    services.outage_cancel(outage_id=published["outage"].pk)
    OutageFactory(utility=published["meter"].utility)  # a draft with no scope
    assert make_api(owner).get("/api/v1/outages/").json() == []


def test_another_consumer_does_not_see_my_outage(make_api, published):
    assert make_api(published["stranger"]).get("/api/v1/outages/").json() == []


@pytest.mark.parametrize(
    ("who", "status"),
    [("owner", 200), ("stranger", 404), ("staff", 404), ("anonymous", 401)],
)
def test_outage_detail_ownership(make_api, published, who, status):
    user = {
        "owner": published["owner"],
        "stranger": published["stranger"],
        "staff": UserFactory(is_staff=True, is_superuser=True),
        "anonymous": None,
    }[who]
    response = make_api(user).get(f"/api/v1/outages/{published['outage'].pk}/")

    assert response.status_code == status
    if status == 200:
        body = response.json()
        assert body["my_meters"] == [
            {
                "id": published["meter"].pk,
                "serial": published["meter"].serial,
                "account": published["meter"].account_id,
                "consumer_id": published["meter"].account.consumer_id,
            }
        ]
    else:
        assert "error" in response.json()


def test_an_unknown_outage_is_404(make_api, published):
    response = make_api(published["owner"]).get("/api/v1/outages/999999/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "outage_not_found"


def test_my_compensations_say_why(make_api, published):
    outage = published["outage"]
    start = outage.planned_start
    services.outage_start(outage_id=outage.pk, at=start, now=start)
    services.outage_restore(
        outage_id=outage.pk,
        at=start + timedelta(hours=9, minutes=20),
        now=start + timedelta(hours=9, minutes=20),
    )
    [compensation] = Compensation.objects.all()

    mine = make_api(published["owner"]).get("/api/v1/compensations/")
    theirs = make_api(published["stranger"]).get("/api/v1/compensations/")

    assert mine.status_code == 200
    [row] = mine.json()
    assert row["id"] == compensation.pk
    assert row["amount"] == "400.00" and row["currency"] == "SAR"
    assert row["standard"] == "restoration" and row["status"] == "pending"
    assert "9 h 20 min" in row["reason"]
    assert theirs.json() == []
    assert make_api().get("/api/v1/compensations/").status_code == 401
