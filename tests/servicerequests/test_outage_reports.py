"""A consumer reports in the app that the power is off: the report attaches to the outage already
known at the meter and says so, or opens a no-supply request with its deadline in hours."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.apps import apps as django_apps

from accounts.models import AccountLink, ConsumerAccount
from outages.models import Outage
from servicerequests import deadlines, services
from servicerequests.models import OutageReport, RequestType, ServiceRequest
from tests.accounts.factories import AccountLinkFactory, UserFactory, UtilityFactory
from tests.servicerequests.factories import (
    consumer_with_meter,
    outage_on,
    saudi,
    support_staff,
)

pytestmark = pytest.mark.django_db

# Friday 4 December 2026, 22:30 in Riyadh (+03:00): a weekend night, when working days stop.
NOW = datetime(2026, 12, 4, 19, 30, tzinfo=UTC)


def url(account) -> str:
    return f"/api/v1/accounts/{account.pk}/outage-reports/"


@pytest.fixture
def utility():
    return saudi()


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def home(utility, clock):
    """An English-speaking consumer with one meter: (user, account, meter)."""
    return consumer_with_meter(utility)


def test_a_report_attaches_to_the_outage_detected_from_the_meters(make_api, utility, clock):
    user, account, meter = consumer_with_meter(utility, language="ar")
    outage = outage_on(
        [meter], start=NOW - timedelta(minutes=40), end=NOW + timedelta(hours=3, minutes=30)
    )

    response = make_api(user).post(url(account), {"note": "The whole street is dark"})

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "known_outage" and body["service_request"] is None
    assert body["outage"] == {
        "id": outage.pk,
        "kind": "unplanned",
        "source": "meters",
        "reason": "Feeder trip",
        "started_at": "2026-12-04T21:50:00+03:00",
        "estimated_restoration": "2026-12-05T02:00:00+03:00",
    }
    # In the reader's language, with the estimate in local time and its zone.
    assert body["message"].startswith("نعلم أن الكهرباء مقطوعة عن حسابك رقم " + account.consumer_id)
    assert "\u2066+03\u2069" in body["message"]
    report = OutageReport.objects.get()
    assert (report.pk, report.outage, report.meter, report.user) == (
        body["report"],
        outage,
        meter,
        user,
    )
    assert not ServiceRequest.objects.exists()


def test_a_report_during_a_planned_cut_that_has_begun_is_told_the_planned_end(
    make_api, utility, home
):
    user, account, meter = home
    outage = outage_on(
        [meter],
        start=NOW - timedelta(hours=1),
        end=NOW + timedelta(hours=2),
        source="staff",
        kind=Outage.Kind.PLANNED,
        status=Outage.Status.PUBLISHED,
        actual_start=None,
        reason="Transformer maintenance",
    )

    body = make_api(user).post(url(account)).json()

    assert body["status"] == "known_outage"
    assert (body["outage"]["id"], body["outage"]["kind"], body["outage"]["source"]) == (
        outage.pk,
        "planned",
        "staff",
    )
    assert body["outage"]["started_at"] == "2026-12-04T21:30:00+03:00"
    assert body["message"].startswith(f"We know the power is off at account {account.consumer_id}")
    assert "expect supply back by" in body["message"] and "+03" in body["message"]


def test_past_its_estimate_the_outage_is_still_known_but_no_time_is_promised(
    make_api, utility, home
):
    user, account, meter = home
    outage_on([meter], start=NOW - timedelta(hours=8), end=NOW - timedelta(hours=2))

    body = make_api(user).post(url(account)).json()

    assert body["status"] == "known_outage"
    assert "still working on it" in body["message"] and "by" not in body["message"]


def test_with_no_outage_known_a_no_supply_request_opens_with_its_deadline_in_hours(
    make_api, utility, home
):
    user, account, meter = home
    api = make_api(user)

    response = api.post(url(account), {"note": "Power went off at 22:00, neighbours have it"})

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "fault_reported" and body["outage"] is None
    request_id = body["service_request"]["id"]
    # Four hours around the clock: past midnight on the weekend, not working days.
    assert body["service_request"]["deadline"] == "2026-12-05T02:30:00+03:00"
    assert body["message"] == (
        f"No outage is known where account {account.consumer_id} is, so we opened request "
        f"{request_id} and a team will check your supply. We aim to restore it by "
        "Sat, Dec 5, 2:30 AM +03."
    )
    request = api.get(f"/api/v1/service-requests/{request_id}/").json()
    assert request["type"] == "supply_fault" and request["type_name"] == "No supply at my premises"
    assert request["deadline_at"] == "2026-12-05T02:30:00+03:00"
    assert request["deadline_working_days"] is None
    assert request["description"] == "Power went off at 22:00, neighbours have it"
    report = OutageReport.objects.get()
    assert (report.service_request_id, report.meter, report.outage) == (request_id, meter, None)


def test_reporting_again_within_the_same_outage_gives_back_the_first_report(
    make_api, utility, home
):
    user, account, meter = home
    outage_on([meter], start=NOW - timedelta(minutes=5), end=NOW + timedelta(hours=4))
    partner = AccountLinkFactory(account=account, user=UserFactory(language="hi")).user

    first = make_api(user).post(url(account))
    again = make_api(user).post(url(account), {"note": "still off"})
    by_partner = make_api(partner).post(url(account))

    assert first.status_code == 201
    assert (again.status_code, again.json()) == (200, first.json())
    # The account's report, told to the other holder in Hindi.
    assert by_partner.status_code == 200
    assert by_partner.json()["report"] == first.json()["report"]
    assert by_partner.json()["message"].startswith("हमें पता है कि खाता")
    assert OutageReport.objects.count() == 1


def test_reporting_again_while_the_request_is_open_gives_back_that_request(
    make_api, utility, home, clock
):
    user, account, _ = home
    first = make_api(user).post(url(account)).json()

    clock.shift(timedelta(hours=1))
    api = make_api(user)  # a fresh token: an access token lives minutes
    again = api.post(url(account))

    assert again.status_code == 200
    assert again.json()["report"] == first["report"]
    assert again.json()["service_request"] == first["service_request"]
    assert ServiceRequest.objects.count() == 1 and OutageReport.objects.count() == 1

    # Once staff close it, a new failure is a new request.
    staff = support_staff(utility)
    services.request_transition(
        request_id=first["service_request"]["id"], to_status="under_review", actor=staff
    )
    services.request_transition(
        request_id=first["service_request"]["id"], to_status="completed", actor=staff
    )
    later = api.post(url(account))
    assert later.status_code == 201
    assert later.json()["service_request"]["id"] != first["service_request"]["id"]
    assert later.json()["service_request"]["deadline"] == "2026-12-05T03:30:00+03:00"


def test_an_outage_detected_after_the_fault_was_reported_is_attached_to_the_next_report(
    make_api, utility, home
):
    user, account, meter = home
    api = make_api(user)
    fault = api.post(url(account)).json()
    outage = outage_on([meter], start=NOW, end=NOW + timedelta(hours=2))

    response = api.post(url(account))

    assert response.status_code == 201
    assert response.json()["outage"]["id"] == outage.pk
    assert response.json()["report"] != fault["report"]


@pytest.mark.parametrize(
    "state",
    [
        {"status": Outage.Status.RESTORED},
        {"status": Outage.Status.CANCELLED},
        {"status": Outage.Status.DRAFT},
        # Published, not begun yet.
        {"status": Outage.Status.PUBLISHED, "kind": Outage.Kind.PLANNED, "starts_in": 2},
        "merged",
    ],
)
def test_an_outage_that_is_not_on_now_is_not_the_answer(make_api, utility, home, state):
    user, account, meter = home
    if state == "merged":
        elsewhere = consumer_with_meter(utility)[2]
        into = outage_on([elsewhere], start=NOW, end=NOW + timedelta(hours=2))
        outage_on([meter], start=NOW, end=NOW + timedelta(hours=2), merged_into=into)
    else:
        state = dict(state)
        start = NOW + timedelta(hours=state.pop("starts_in", -1))
        outage_on([meter], start=start, end=start + timedelta(hours=3), **state)

    body = make_api(user).post(url(account)).json()

    assert body["status"] == "fault_reported"


def test_another_accounts_outage_is_not_this_accounts(make_api, utility, home):
    user, account, _ = home
    _, _, neighbour_meter = consumer_with_meter(utility)
    outage_on([neighbour_meter], start=NOW, end=NOW + timedelta(hours=2))

    assert make_api(user).post(url(account)).json()["status"] == "fault_reported"


def test_only_the_accounts_holder_may_report_or_read_its_reports(make_api, utility, home):
    user, account, meter = home
    outage_on([meter], start=NOW, end=NOW + timedelta(hours=2))

    for intruder in (UserFactory(), support_staff(utility)):
        api = make_api(intruder)
        assert api.post(url(account)).status_code == 404
        assert api.get(url(account)).status_code == 404
    assert make_api().post(url(account)).status_code == 401
    assert make_api().get(url(account)).status_code == 401
    assert not OutageReport.objects.exists()

    owner = make_api(user)
    filed = owner.post(url(account)).json()
    listed = owner.get(url(account))
    assert listed.status_code == 200
    assert [r["report"] for r in listed.json()["results"]] == [filed["report"]]
    assert listed.json()["results"][0]["status"] == "known_outage"


def test_a_closed_account_cannot_report(make_api, utility, home):
    user, account, _ = home
    account.status = ConsumerAccount.Status.CLOSED
    account.save()
    AccountLink.objects.filter(account=account).update(
        unlinked_at=NOW, end_reason=AccountLink.EndReason.ACCOUNT_CLOSED
    )

    response = make_api(user).post(url(account))

    assert (response.status_code, response.json()["error"]["code"]) == (409, "account_closed")
    assert not ServiceRequest.objects.exists()


def test_a_note_too_long_is_refused_and_nothing_is_written(make_api, utility, home):
    user, account, _ = home

    response = make_api(user).post(url(account), {"note": "x" * 2001})

    assert response.status_code == 400
    assert not OutageReport.objects.exists() and not ServiceRequest.objects.exists()


def test_the_request_form_does_not_offer_the_no_supply_type(make_api, utility, home):
    user, account, _ = home

    types = make_api(user).get(f"/api/v1/accounts/{account.pk}/service-request-types/").json()

    assert "supply_fault" not in {t["code"] for t in types}
    assert RequestType.objects.get(utility=utility, code="supply_fault").target_hours == 4


def test_a_no_supply_request_is_late_the_minute_its_hours_run_out(make_api, utility, home, clock):
    user, account, _ = home
    request_id = make_api(user).post(url(account)).json()["service_request"]["id"]

    assert deadlines.deadlines_check(now=NOW + timedelta(hours=4)) == 0
    # 02:31 on a Saturday: no working day has begun, yet four hours have passed.
    assert deadlines.deadlines_check(now=NOW + timedelta(hours=4, minutes=1)) == 1
    request = ServiceRequest.objects.get(pk=request_id)
    assert request.deadline_missed_at == NOW + timedelta(hours=4, minutes=1)


def test_the_migration_gives_every_utility_the_no_supply_type(utility):
    migration = importlib.import_module("servicerequests.migrations.0004_supply_fault_type")
    RequestType.objects.filter(code="supply_fault").delete()
    other = UtilityFactory(code="xx-none", timezone="UTC")

    migration.add(django_apps, None)
    migration.add(django_apps, None)  # again: nothing twice

    added = RequestType.objects.filter(code="supply_fault")
    assert sorted(t.utility_id for t in added) == sorted([utility.pk, other.pk])
    mine = added.get(utility=other)
    assert (mine.target_hours, mine.fields, mine.position, mine.name_en) == (
        4,
        [],
        0,
        "No supply at my premises",
    )
    assert added.get(utility=utility).position == 6
    migration.remove(django_apps, None)
    assert not RequestType.objects.filter(code="supply_fault").exists()
