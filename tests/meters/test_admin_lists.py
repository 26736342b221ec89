"""The meters admin's lists: grid elements named with their utility, meters found by what staff
have in hand, times in the meter's utility's zone with the zone, the reporting filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from core.models import StaffMembership
from meters.models import Meter
from tests.accounts.factories import ConsumerAccountFactory, UserFactory, UtilityFactory
from tests.meters.factories import EGYPT, MeterFactory
from tests.outages.factories import GridAreaFactory, TransformerFactory

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture
def two_grids(db):
    """The same area, feeder and transformer names in Kuwait and in Egypt."""
    kuwait = UtilityFactory(name="Kuwait MEW")
    egypt = UtilityFactory(**EGYPT, name="North Egypt Distribution")
    transformers = {}
    for utility in (kuwait, egypt):
        area = GridAreaFactory(utility=utility, code="A1", name="Central district")
        transformers[utility.code] = TransformerFactory(
            feeder__area=area, feeder__code="F01", feeder__name="Feeder 1", name="Transformer 1"
        )
        MeterFactory(utility=utility, transformer=transformers[utility.code])
    return kuwait, egypt, transformers


@pytest.fixture
def superuser(client, db):
    client.force_login(UserFactory(username="root", phone=None, is_staff=True, is_superuser=True))
    return client


def test_the_meters_area_filter_says_each_areas_utility(two_grids, superuser):
    html = superuser.get("/admin/meters/meter/").content.decode()
    assert html.count("Central district (A1) · Kuwait MEW") == 1
    assert html.count("Central district (A1) · North Egypt Distribution") == 1


def test_a_staff_member_of_one_utility_sees_its_areas_unqualified_and_alone(two_grids, client):
    from django.contrib.auth.models import Permission

    kuwait, _, _ = two_grids
    north = GridAreaFactory(utility=kuwait, code="A2", name="North district")
    MeterFactory(utility=kuwait, transformer=TransformerFactory(feeder__area=north))
    user = UserFactory(username="planner", phone=None, is_staff=True)
    StaffMembership.objects.create(user=user, utility=kuwait, role="support")
    user.user_permissions.add(*Permission.objects.filter(codename="view_meter"))
    client.force_login(user)
    html = client.get("/admin/meters/meter/").content.decode()
    assert html.count("Central district (A1)</a>") == 1
    assert html.count("North district (A2)</a>") == 1
    assert "North Egypt" not in html


@pytest.mark.parametrize(
    ("path", "columns"),
    [
        ("/admin/meters/gridarea/", 1),
        ("/admin/meters/feeder/", 1),
        ("/admin/meters/transformer/", 1),
    ],
)
def test_the_grid_lists_show_the_utility_and_filter_by_it(two_grids, superuser, path, columns):
    _, egypt, _ = two_grids
    page = superuser.get(path)
    html = page.content.decode()
    assert "column-utility_name" in html
    assert html.count('<td class="field-utility_name">Kuwait MEW</td>') == columns
    assert html.count('<td class="field-utility_name">North Egypt Distribution</td>') == columns
    filtered = superuser.get(path, {page.context["cl"].filter_specs[0].lookup_kwarg: egypt.pk})
    assert filtered.context["cl"].result_count == 1
    assert "Kuwait MEW</td>" not in filtered.content.decode()


def test_the_transformer_filter_names_the_utility(two_grids, superuser):
    html = superuser.get("/admin/meters/transformer/").content.decode()
    assert "Central district (A1) · Kuwait MEW" in html
    assert "Central district (A1) · North Egypt Distribution" in html


@pytest.mark.parametrize("term", ["KWM-FIND", "10029999", "+965 5000 0777", "50000777"])
def test_a_meter_is_found_by_serial_consumer_id_or_mobile(superuser, term):
    account = ConsumerAccountFactory(consumer_id="10029999", registered_mobile="+96550000777")
    MeterFactory(serial="KWM-FIND", utility=account.utility, account=account)
    MeterFactory(serial="KWM-OTHER", utility=account.utility)
    page = superuser.get("/admin/meters/meter/", {"q": term})
    assert page.context["cl"].result_count == 1
    assert "KWM-FIND" in page.content.decode()


def test_meter_times_are_local_with_their_zone(superuser):
    egypt = UtilityFactory(**EGYPT, name="North Egypt Distribution")
    meter = MeterFactory(
        utility=egypt,
        last_reading_at=datetime(2026, 11, 20, 8, 45, tzinfo=UTC),
        last_communication_at=datetime(2026, 11, 20, 8, 50, tzinfo=UTC),
        installed_at=datetime(2026, 7, 1, 7, 0, tzinfo=UTC),
    )
    html = superuser.get("/admin/meters/meter/").content.decode()
    assert "2026-11-20 10:45 EET" in html and "2026-11-20 10:50 EET" in html
    html = superuser.get(f"/admin/meters/meter/{meter.pk}/change/").content.decode()
    assert "2026-07-01 10:00 EEST" in html  # installed, in summer time
    assert "2026-11-20 10:45 EET" in html


def test_the_reporting_filter_finds_the_silent_meters(superuser):
    with time_machine.travel(NOW, tick=False):
        utility = UtilityFactory()
        MeterFactory(serial="OK", utility=utility, last_reading_at=NOW - timedelta(hours=2))
        MeterFactory(serial="SILENT", utility=utility, last_reading_at=NOW - timedelta(hours=25))
        MeterFactory(serial="NEVER", utility=utility, last_reading_at=None)
        MeterFactory(
            serial="GONE",
            utility=utility,
            last_reading_at=NOW - timedelta(days=9),
            status=Meter.Status.REMOVED,
        )
        silent = superuser.get("/admin/meters/meter/", {"reporting": "no"})
        reporting = superuser.get("/admin/meters/meter/", {"reporting": "yes"})
    assert {m.serial for m in silent.context["cl"].result_list} == {"SILENT", "NEVER"}
    assert {m.serial for m in reporting.context["cl"].result_list} == {"OK"}
