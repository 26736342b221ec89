"""Tamper, bypass and overload events land in the utility's work queue: one open case per meter
that new events join, counted once however often the head-end sends them; staff work the case,
and in Egypt record it as the ground for removing a postpaid meter with its events as evidence."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from billing.models import RemovalOrder, TamperCase
from billing.tamper import tamper_events_record
from meters.models import MeterEvent
from tests.billing.factories import role_member
from tests.billing.factories_tamper import (
    egypt_late_path,
    event,
    events_post,
    postpaid_meter,
)
from tests.meters.factories import MeterFactory

pytestmark = pytest.mark.django_db
HOUR = timedelta(hours=1)


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def egypt():
    return egypt_late_path()


@pytest.fixture
def meter(egypt):
    return postpaid_meter(egypt, serial="EGM-0001")


def _case(meter) -> TamperCase:
    return TamperCase.objects.get(meter=meter, status__in=TamperCase.OPEN_STATUSES)


# --- The receiver ------------------------------------------------------------------------------


def test_events_of_two_kinds_join_one_case(make_api, egypt, meter, now):
    first = events_post(
        make_api,
        egypt,
        [
            event(meter, "cover_open", now - 3 * HOUR, code="3.12.29.212"),
            event(meter, "power_off", now - 3 * HOUR),  # not the queue's
        ],
    )
    second = events_post(
        make_api, egypt, [event(meter, "magnetic_tamper", now - HOUR, code="0.12.66.242")]
    )

    assert (first.status_code, second.status_code) == (200, 200)
    case = _case(meter)
    assert (case.kinds, case.events) == (["cover_open", "magnetic_tamper"], 2)
    assert (case.first_event_at, case.last_event_at) == (now - 3 * HOUR, now - HOUR)
    assert case.first_event.kind == "cover_open"
    assert (case.account, case.utility, case.status) == (meter.account, egypt, "open")


def test_a_duplicate_is_not_counted_again(make_api, egypt, meter, now):
    batch = [event(meter, "bypass", now - HOUR), event(meter, "overload", now - HOUR)]
    events_post(make_api, egypt, batch)

    again = events_post(make_api, egypt, batch)
    # The same event without its id (meter, kind and time): stored once as well.
    alike = events_post(make_api, egypt, [{k: v for k, v in batch[0].items() if k != "id"}])

    assert again.json()["duplicates"] == 2 and alike.json()["duplicates"] == 1
    assert (_case(meter).events, _case(meter).kinds) == (2, ["bypass", "overload"])
    assert TamperCase.objects.count() == 1


def test_a_late_event_moves_the_cases_first_event_back(make_api, egypt, meter, now):
    events_post(make_api, egypt, [event(meter, "neutral_tamper", now - HOUR)])

    events_post(make_api, egypt, [event(meter, "reverse_current", now - 5 * HOUR)])

    case = _case(meter)
    assert (case.first_event_at, case.last_event_at, case.events) == (
        now - 5 * HOUR,
        now - HOUR,
        2,
    )
    assert case.first_event.kind == "reverse_current"


def test_after_a_case_is_closed_a_new_event_opens_another(make_api, egypt, meter, now):
    events_post(make_api, egypt, [event(meter, "cover_open", now - 3 * HOUR)])
    closed = _case(meter)
    TamperCase.objects.filter(pk=closed.pk).update(status="dismissed", closed_at=now)

    events_post(make_api, egypt, [event(meter, "cover_open", now - HOUR)])

    reopened = _case(meter)
    assert reopened.pk != closed.pk and reopened.events == 1
    assert TamperCase.objects.get(pk=closed.pk).events == 1


def test_supply_and_relay_events_open_no_case(make_api, egypt, meter, now):
    events_post(
        make_api,
        egypt,
        [
            event(meter, "power_off", now - 2 * HOUR),
            event(meter, "power_on", now - HOUR),
            event(meter, "relay_open", now - HOUR),
        ],
    )

    assert not TamperCase.objects.exists()


def test_one_batch_of_many_meters_opens_a_case_each(make_api, egypt, meter, now):
    others = [MeterFactory(utility=egypt) for _ in range(6)]
    events_post(make_api, egypt, [event(meter, "cover_open", now - 2 * HOUR)])

    events_post(make_api, egypt, [event(m, "bypass", now - HOUR) for m in [meter, *others]])

    cases = {c.meter_id: c for c in TamperCase.objects.all()}
    assert len(cases) == 7
    assert cases[meter.pk].kinds == ["bypass", "cover_open"]
    assert {cases[m.pk].account_id for m in others} == {m.account_id for m in others}


def test_the_receiver_costs_a_few_queries_whatever_the_meters(
    egypt, now, django_assert_max_num_queries
):
    meters = [MeterFactory(utility=egypt) for _ in range(12)]

    def stored(kind):
        return [
            MeterEvent.objects.create(utility=egypt, meter=m, kind=kind, occurred_at=now - HOUR)
            for m in meters
        ]

    tamper_events_record(MeterEvent, utility=egypt, events=stored("cover_open")[:4])
    batch = stored("power_off") + stored("bypass")

    # The open cases (locked), their update, the meters' accounts, the new cases' insert (in a
    # savepoint).
    with django_assert_max_num_queries(6):
        tamper_events_record(MeterEvent, utility=egypt, events=batch)

    assert TamperCase.objects.count() == 12
    assert sorted(TamperCase.objects.values_list("events", flat=True)) == [1] * 8 + [2] * 4


# --- Staff working a case ----------------------------------------------------------------------


def _step(case, step):
    return reverse(f"admin:billing_tampercase_{step}", args=[case.pk])


@pytest.fixture
def case(make_api, egypt, meter, now):
    events_post(
        make_api,
        egypt,
        [
            event(meter, "cover_open", now - 3 * HOUR, code="3.12.29.212"),
            event(meter, "magnetic_tamper", now - 2 * HOUR, code="0.12.66.242"),
        ],
    )
    return _case(meter)


@pytest.mark.parametrize("role", ["support", "approver", "planner", "cashier"])
def test_support_take_a_case_and_others_are_refused(client, egypt, case, role):
    staff = role_member(egypt, role)
    client.force_login(staff)

    response = client.post(_step(case, "assign"))

    case.refresh_from_db()
    if role == "support":
        assert response.status_code == 302 and case.assigned_to == staff
        assert [str(m) for m in get_messages(response.wsgi_request)] == ["The case is yours."]
    else:
        assert response.status_code == 403 and case.assigned_to is None


def test_dismissing_needs_a_note_and_closes_the_case(client, egypt, case):
    staff = role_member(egypt, "support")
    client.force_login(staff)

    empty = client.post(_step(case, "close"), {"outcome": "dismissed", "note": ""})
    assert empty.status_code == 200 and TamperCase.objects.get(pk=case.pk).status == "open"

    done = client.post(
        _step(case, "close"), {"outcome": "dismissed", "note": "Seal intact on inspection."}
    )

    case.refresh_from_db()
    assert done.status_code == 302
    assert (case.status, case.note, case.closed_by) == (
        "dismissed",
        "Seal intact on inspection.",
        staff,
    )


@pytest.mark.parametrize("role", ["approver", "support"])
def test_egypt_records_the_case_as_grounds_for_removal_with_its_events(client, egypt, case, role):
    staff = role_member(egypt, role)
    client.force_login(staff)
    events = list(MeterEvent.objects.filter(meter=case.meter).order_by("occurred_at"))

    page = client.get(_step(case, "removal")).content.decode()
    response = client.post(_step(case, "removal"), {"ground": "tampering", "note": ""})

    assert "Tampering with the meter or its seals" in page
    assert response.status_code == 302
    case.refresh_from_db()
    order = case.removal_order
    assert (case.status, order.ground, order.status) == ("removal", "tampering", "removal_due")
    assert (order.account, order.created_by) == (case.account, staff)
    zone = egypt.zone
    for row in events:
        local = row.occurred_at.astimezone(zone)
        assert (
            f"{row.get_kind_display()} at {local:%Y-%m-%d %H:%M:%S %Z}, code {row.code} "
            f"(event {row.pk})" in order.evidence
        )
    assert order.evidence_data == {
        "tamper_case": case.pk,
        "events": [
            {
                "id": row.pk,
                "kind": row.kind,
                "occurred_at": row.occurred_at.isoformat(),
                "code": row.code,
            }
            for row in events
        ],
    }
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert shown[0].startswith("Tampering with the meter or its seals recorded for ")


def test_bypass_events_are_recorded_as_bypass(make_api, client, egypt, now):
    meter = postpaid_meter(egypt)
    events_post(
        make_api,
        egypt,
        [event(meter, "cover_open", now - 2 * HOUR), event(meter, "reverse_current", now - HOUR)],
    )
    client.force_login(role_member(egypt, "approver"))

    client.post(_step(_case(meter), "removal"), {"ground": "bypass"})

    assert RemovalOrder.objects.get(account=meter.account).ground == "bypass"


def test_no_removal_where_the_late_path_is_off_or_the_meter_is_prepaid(
    make_api, client, egypt, now
):
    prepaid = MeterFactory(utility=egypt)
    events_post(make_api, egypt, [event(prepaid, "bypass", now - HOUR)])
    case = _case(prepaid)
    client.force_login(role_member(egypt, "approver"))

    page = client.get(_step(case, "removal"))
    response = client.post(_step(case, "removal"), {"ground": "bypass"})

    assert "Only a postpaid meter is removed on such grounds" in page.content.decode()
    assert response.status_code == 200
    assert "Only a postpaid meter is removed on such grounds" in response.content.decode()
    assert not RemovalOrder.objects.exists()
    case.refresh_from_db()
    assert case.status == "open"


def test_the_queue_lists_the_utilitys_cases_with_their_events(client, egypt, case):
    client.force_login(role_member(egypt, "support"))

    listed = client.get(reverse("admin:billing_tampercase_changelist"), {"kind": "cover_open"})
    other_kind = client.get(reverse("admin:billing_tampercase_changelist"), {"kind": "bypass"})
    page = client.get(reverse("admin:billing_tampercase_change", args=[case.pk])).content.decode()

    assert [c.pk for c in listed.context["cl"].result_list] == [case.pk]
    assert list(other_kind.context["cl"].result_list) == []
    assert "Cover opened, Magnetic tamper" in listed.content.decode()
    assert "3.12.29.212" in page and "0.12.66.242" in page
    assert 'id="case-assign"' in page and 'id="case-removal"' in page
