from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from meters import services
from meters.models import MeterAssignment, ServiceToken
from meters.storage import floor_to_interval
from tests.accounts.factories import ConsumerAccountFactory, UserFactory
from tests.meters.factories import MeterFactory


@pytest.fixture
def staff(client, db):
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    return client


def test_a_meters_page_charts_its_last_seven_days(staff):
    meter = MeterFactory()
    start = floor_to_interval(timezone.now()) - timedelta(days=2)
    readings = [
        (
            {"index": i},
            meter.serial,
            (start + i * timedelta(minutes=15)).isoformat(),
            100 + i,
            "actual",
        )
        for i in range(96)
    ]
    services.readings_ingest(utility=meter.utility, readings=readings, source="test")

    page = staff.get(f"/admin/meters/meter/{meter.pk}/change/")

    assert page.status_code == 200
    assert b"<svg" in page.content and b"<polyline" in page.content
    assert b"Hourly energy, last 7 days" in page.content


def test_the_meter_list_searches_and_filters(staff):
    MeterFactory(serial="FIND-ME")
    MeterFactory(serial="OTHER")
    page = staff.get("/admin/meters/meter/", {"q": " find-me ", "status__exact": "active"})
    assert page.status_code == 200
    assert b"FIND-ME" in page.content and b"OTHER" not in page.content
    # Whole serials only: a part of one would mean a scan of every meter of the utility.
    part = staff.get("/admin/meters/meter/", {"q": "FIND"})
    assert b"FIND-ME" not in part.content


def test_a_meters_tenant_is_not_changed_by_editing_the_meter(staff):
    """Tenants change by Move out and Move in, which settle money; the meter form cannot."""
    meter = MeterFactory()
    new_account = ConsumerAccountFactory(utility=meter.utility)
    form = staff.get(f"/admin/meters/meter/{meter.pk}/change/").context["adminform"].form
    assert "account" not in form.fields
    data = {k: v for k, v in form.initial.items() if v is not None}
    data.update(
        {
            "account": new_account.pk,
            "installed_at_0": meter.installed_at.date().isoformat(),
            "installed_at_1": "00:00:00",
            "assignments-TOTAL_FORMS": 1,
            "assignments-INITIAL_FORMS": 1,
            "assignments-0-id": MeterAssignment.objects.get().pk,
            "assignments-0-meter": meter.pk,
        }
    )
    data.pop("installed_at", None)
    response = staff.post(f"/admin/meters/meter/{meter.pk}/change/", data)

    assert response.status_code == 302
    meter.refresh_from_db()
    assert meter.account_id != new_account.pk
    assert list(MeterAssignment.objects.values_list("account_id", "end")) == [
        (meter.account_id, None)
    ]


def test_a_new_head_end_token_is_shown_once_and_stored_hashed(staff):
    meter = MeterFactory()
    response = staff.post(
        "/admin/meters/servicetoken/add/", {"utility": meter.utility.pk, "name": "HES"}, follow=True
    )
    token = ServiceToken.objects.get()
    shown = [str(m) for m in response.context["messages"]]
    assert any("hes_" in m for m in shown)
    raw = next(m for m in shown if "hes_" in m).split(": ")[-1]
    assert token.digest != raw and raw.startswith(token.prefix)
