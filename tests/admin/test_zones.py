"""The admin shows times in the utility's zone, with the zone: each listed row in its own utility's
zone, the whole admin in a staff member's one zone, date and time inputs with the zone they are
read in named beside them."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from django.utils import timezone

from core.admin import ZonedSplitDateTime
from core.middleware import StaffZoneMiddleware
from core.models import AuditEntry, StaffMembership
from tests.accounts.factories import UserFactory, UtilityFactory
from tests.outages.factories import staff_member

pytestmark = pytest.mark.django_db
MOMENT = datetime(2026, 12, 1, 1, 41, tzinfo=UTC)


@pytest.fixture
def kuwait():
    return UtilityFactory(code="kw-mew", timezone="Asia/Kuwait")


@pytest.fixture
def egypt():
    return UtilityFactory(code="eg-nedc", timezone="Africa/Cairo", country="EG", currency="EGP")


def test_a_superuser_reads_each_row_in_its_own_utilitys_zone(client, kuwait, egypt):
    for utility in (kuwait, egypt):
        entry = AuditEntry.objects.create(
            action="add", model="x", object_id="1", object_repr=utility.code, utility=utility
        )
        AuditEntry.objects.filter(pk=entry.pk).update(at=MOMENT)
    client.force_login(UserFactory(is_staff=True, is_superuser=True, phone=None))

    page = client.get("/admin/core/auditentry/").content.decode()

    assert "2026-12-01 04:41 +03" in page  # Kuwait
    assert "2026-12-01 03:41 EET" in page  # Cairo in winter
    assert "01:41" not in page  # the UTC time never shows as if it were local


def _zone_seen(user, path="/admin/core/auditentry/") -> str:
    seen = {}

    def view(request):
        seen["zone"] = timezone.get_current_timezone_name()
        return HttpResponse()

    request = RequestFactory().get(path)
    request.user = user
    StaffZoneMiddleware(view)(request)
    return seen["zone"]


def test_staff_whose_utilities_share_a_zone_get_it_for_the_whole_admin(kuwait, egypt):
    kuwaiti = staff_member(kuwait, role="support")
    both = staff_member(kuwait, role="support")
    StaffMembership.objects.create(user=both, utility=egypt, role="support")
    superuser = UserFactory(is_staff=True, is_superuser=True, phone=None)

    assert _zone_seen(kuwaiti) == "Asia/Kuwait"
    assert _zone_seen(kuwaiti, path="/api/v1/me") == "UTC"  # the API speaks UTC with offsets
    assert _zone_seen(both) == "UTC"  # two zones: each row is shown in its own
    assert _zone_seen(superuser) == "UTC"


def test_a_date_and_time_input_is_local_and_names_its_zone():
    with timezone.override(ZoneInfo("Africa/Cairo")):
        html = ZonedSplitDateTime().render("planned_start", MOMENT)

    assert 'value="2026-12-01"' in html and 'value="03:41:00"' in html
    assert "Time zone: Africa/Cairo (E" in html  # EET, or EEST on a summer day
