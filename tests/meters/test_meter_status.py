"""The meter's status in the app: whether the supply is on now and since when (from the meter's
own events, else the outage that holds it), the relay's last confirmation, and the last reading
and communication, all in the utility's local time; shown only to the meter's current holder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from meters.models import MeterAssignment, MeterEvent, SupplyPeriod
from outages.models import AffectedMeter
from tests.accounts.factories import AccountLinkFactory, ConsumerAccountFactory, UserFactory
from tests.meters.factories import MeterFactory, india
from tests.outages.factories import staff_member, transformer_of
from tests.servicerequests.factories import outage_on

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # 13:00 in Kuwait (+03:00)


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def held(make_api):
    """A Kuwaiti meter that spoke ten minutes ago, and its holder's API: (meter, api)."""
    meter = MeterFactory(last_communication_at=NOW - timedelta(minutes=10))
    link = AccountLinkFactory(account=meter.account)
    return meter, make_api(link.user)


def event(meter, kind: str, at: datetime) -> MeterEvent:
    return MeterEvent.objects.create(utility=meter.utility, meter=meter, kind=kind, occurred_at=at)


def period(meter, off_at: datetime, on_at: datetime | None = None) -> SupplyPeriod:
    return SupplyPeriod.objects.create(
        utility=meter.utility, meter=meter, off_at=off_at, on_at=on_at
    )


def status(api, meter) -> dict:
    response = api.get(f"/api/v1/meters/{meter.pk}/")
    assert response.status_code == 200, response.json()
    return response.json()


def test_a_meter_without_supply_is_off_since_its_last_gasp(held):
    meter, api = held
    period(meter, NOW - timedelta(days=3), NOW - timedelta(days=3, hours=-2))
    period(meter, NOW - timedelta(minutes=25))

    assert status(api, meter)["supply"] == {
        "state": "off",
        "since": "2026-12-01T12:35:00+03:00",
        "outage": None,
    }


def test_a_meter_whose_supply_came_back_is_on_since_its_restoration(held):
    meter, api = held
    period(meter, NOW - timedelta(days=9), NOW - timedelta(days=8))
    period(meter, NOW - timedelta(hours=5), NOW - timedelta(hours=1, minutes=10))

    assert status(api, meter)["supply"] == {
        "state": "on",
        "since": "2026-12-01T11:50:00+03:00",
        "outage": None,
    }


def test_a_meter_that_never_failed_is_on_since_nothing(held):
    meter, api = held

    assert status(api, meter)["supply"] == {"state": "on", "since": None, "outage": None}


@pytest.mark.parametrize("last_heard", [None, NOW - timedelta(hours=25)])
def test_a_meter_silent_for_a_day_has_an_unknown_supply(held, last_heard):
    meter, api = held
    meter.last_communication_at = last_heard
    meter.save()
    period(meter, NOW - timedelta(days=4), NOW - timedelta(days=3))

    assert status(api, meter)["supply"] == {"state": "unknown", "since": None, "outage": None}


def test_a_meter_held_by_an_outage_in_progress_is_off_since_the_outage_began(held):
    meter, api = held
    meter.last_communication_at = NOW - timedelta(hours=30)  # no last gasp, no word since
    meter.save()
    outage = outage_on([meter], start=NOW - timedelta(hours=2), end=NOW + timedelta(hours=2))

    assert status(api, meter)["supply"] == {
        "state": "off",
        "since": "2026-12-01T11:00:00+03:00",
        "outage": outage.pk,
    }


def test_a_meter_off_in_an_outage_names_it_and_its_own_failure_time(held):
    meter, api = held
    outage = outage_on([meter], start=NOW - timedelta(hours=2), end=NOW + timedelta(hours=2))
    own = period(meter, NOW - timedelta(hours=2, minutes=1))
    AffectedMeter.objects.filter(outage=outage, meter=meter).update(period=own)

    assert status(api, meter)["supply"] == {
        "state": "off",
        "since": "2026-12-01T10:59:00+03:00",
        "outage": outage.pk,
    }


@pytest.mark.parametrize("linked", [True, False])
def test_a_meter_back_before_its_outage_ends_is_on(held, linked):
    """Its own restoration is its evidence, whether or not the detector linked it to the outage."""
    meter, api = held
    outage = outage_on([meter], start=NOW - timedelta(hours=2), end=NOW + timedelta(hours=2))
    own = period(meter, NOW - timedelta(hours=2), NOW - timedelta(minutes=30))
    if linked:
        AffectedMeter.objects.filter(outage=outage, meter=meter).update(period=own)

    assert status(api, meter)["supply"] == {
        "state": "on",
        "since": "2026-12-01T12:30:00+03:00",
        "outage": None,
    }


def test_the_relay_confirmation_is_the_newest_relay_event(held):
    meter, api = held
    event(meter, "relay_open", NOW - timedelta(days=2))
    event(meter, "relay_closed", NOW - timedelta(hours=3, minutes=15))
    event(meter, "power_off", NOW - timedelta(hours=1))  # not the relay
    event(meter, "cover_open", NOW - timedelta(minutes=5))

    body = status(api, meter)

    assert (body["relay"], body["relay_confirmed_at"]) == ("closed", "2026-12-01T09:45:00+03:00")


def test_a_meter_whose_relay_never_reported_has_no_confirmation(held):
    meter, api = held

    assert status(api, meter)["relay_confirmed_at"] is None


def test_the_last_reading_and_communication_are_in_the_utilitys_local_time(make_api):
    meter = MeterFactory(
        utility=india(),
        last_reading_at=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
        last_communication_at=datetime(2026, 12, 1, 9, 52, 10, tzinfo=UTC),
    )
    event(meter, "relay_closed", datetime(2026, 11, 30, 20, 0, tzinfo=UTC))
    api = make_api(AccountLinkFactory(account=meter.account).user)

    body = status(api, meter)

    assert body["last_reading_at"] == "2026-12-01T15:00:00+05:30"
    assert body["last_communication_at"] == "2026-12-01T15:22:10+05:30"
    assert body["relay_confirmed_at"] == "2026-12-01T01:30:00+05:30"
    [listed] = api.get("/api/v1/meters/").json()
    assert {k: listed[k] for k in ("last_reading_at", "supply", "relay_confirmed_at")} == {
        k: body[k] for k in ("last_reading_at", "supply", "relay_confirmed_at")
    }


def test_only_the_current_holder_sees_the_supply_and_the_relay(held, make_api):
    meter, old_api = held
    moved = NOW - timedelta(days=1)
    MeterAssignment.objects.filter(meter=meter).update(end=moved)
    new_account = ConsumerAccountFactory(utility=meter.utility)
    MeterAssignment.objects.create(meter=meter, account=new_account, start=moved)
    meter.account = new_account
    meter.save()
    new_api = make_api(AccountLinkFactory(account=new_account).user)
    event(meter, "relay_open", NOW - timedelta(hours=1))
    period(meter, NOW - timedelta(minutes=20))

    old = status(old_api, meter)
    new = status(new_api, meter)

    assert old["current"] is False
    assert (old["supply"], old["relay_confirmed_at"], old["last_communication_at"]) == (
        None,
        None,
        None,
    )
    assert new["current"] is True
    assert new["supply"]["state"] == "off"
    assert new["relay_confirmed_at"] == "2026-12-01T12:00:00+03:00"


def test_another_consumer_staff_and_strangers_do_not_see_the_meter(held, make_api):
    meter, _ = held
    period(meter, NOW - timedelta(minutes=20))

    for intruder in (UserFactory(), staff_member(meter.utility)):
        assert make_api(intruder).get(f"/api/v1/meters/{meter.pk}/").status_code == 404
        assert make_api(intruder).get("/api/v1/meters/").json() == []
    assert make_api().get(f"/api/v1/meters/{meter.pk}/").status_code == 401


def test_the_list_costs_the_same_queries_however_many_meters_and_events(
    make_api, django_assert_num_queries
):
    first = MeterFactory(last_communication_at=NOW)
    transformer = transformer_of(first.utility)
    first.transformer = transformer
    first.save()
    user = AccountLinkFactory(account=first.account).user
    api = make_api(user)
    with django_assert_num_queries(3):  # the user, the meters with their supply, the grid
        assert len(api.get("/api/v1/meters/").json()) == 1

    others = [
        MeterFactory(utility=first.utility, transformer=transformer, last_communication_at=NOW)
        for _ in range(4)
    ]
    for meter in others:
        AccountLinkFactory(account=meter.account, user=user)
        event(meter, "relay_closed", NOW - timedelta(hours=2))
        event(meter, "relay_open", NOW - timedelta(hours=1))
        period(meter, NOW - timedelta(days=2), NOW - timedelta(days=1))
    period(others[0], NOW - timedelta(minutes=5))
    outage = outage_on(others[1:3], start=NOW - timedelta(hours=1), end=NOW + timedelta(hours=1))

    with django_assert_num_queries(3):
        body = api.get("/api/v1/meters/").json()

    states = {m["id"]: (m["supply"]["state"], m["supply"]["outage"]) for m in body}
    assert states == {
        first.pk: ("on", None),
        others[0].pk: ("off", None),
        others[1].pk: ("off", outage.pk),
        others[2].pk: ("off", outage.pk),
        others[3].pk: ("on", None),
    }
    assert {m["relay_confirmed_at"] for m in body if m["id"] != first.pk} == {
        "2026-12-01T12:00:00+03:00"
    }
