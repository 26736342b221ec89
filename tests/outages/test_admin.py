"""The outage desk in the admin, through Django's test client: what staff see and what it writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from billing.models import RelayCommand
from core.models import AuditEntry
from notifications.models import Notification
from outages import services
from outages.models import Compensation, ExemptionRequest, Outage, Standard
from tests.accounts.factories import UtilityFactory
from tests.outages.factories import (
    OutageFactory,
    consumer_on,
    outage_publish_delivered,
    outage_run,
    saudi,
    staff_member,
    transformer_of,
)

pytestmark = pytest.mark.django_db
URL = "/admin/outages/outage/"


@pytest.fixture
def desk(client):
    utility = saudi()
    transformer = transformer_of(utility)
    for _ in range(3):
        consumer_on(transformer)
    planner = staff_member(utility, "planner")
    client.force_login(planner)
    return {"client": client, "utility": utility, "transformer": transformer, "planner": planner}


def _draft_form(desk, **overrides):
    data = {
        "utility": desk["utility"].pk,
        "kind": "planned",
        "reason": "Transformer T-114 maintenance",
        "planned_start_0": "2026-12-03",
        "planned_start_1": "09:00",
        "planned_end_0": "2026-12-03",
        "planned_end_1": "13:00",
        "transformers": [desk["transformer"].pk],
        "events-TOTAL_FORMS": 0,
        "events-INITIAL_FORMS": 0,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_a_planner_creates_a_draft_in_local_time(desk):
    response = desk["client"].post(f"{URL}add/", _draft_form(desk))

    assert response.status_code == 302, response.context["adminform"].form.errors
    outage = Outage.objects.get()
    # Thursday 09:00 in Riyadh is 06:00 UTC.
    assert outage.planned_start == datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
    assert outage.status == Outage.Status.DRAFT and outage.created_by == desk["planner"]
    assert AuditEntry.objects.filter(action="add", object_id=str(outage.pk)).exists()
    page = desk["client"].get(f"{URL}{outage.pk}/change/")
    assert b"3 meters, 3 consumer accounts, 3 people to notify" in page.content
    assert b"Preview and publish" in page.content


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"planned_end_1": "08:00"}, b"The end must be after the start."),
        ({"transformers": None}, b"Choose where the outage is"),
    ],
)
def test_bad_drafts_are_refused_with_a_clear_message(desk, overrides, message):
    response = desk["client"].post(f"{URL}add/", _draft_form(desk, **overrides))

    assert response.status_code == 200
    assert message in response.content
    assert not Outage.objects.exists()


def test_publishing_late_asks_for_confirmation_then_records_it(desk):
    soon = timezone.now() + timedelta(hours=20)
    outage = OutageFactory(
        utility=desk["utility"],
        planned_start=soon,
        planned_end=soon + timedelta(hours=4),
        transformers=[desk["transformer"]],
    )
    client = desk["client"]

    preview = client.get(f"{URL}{outage.pk}/publish/")
    assert b"3 meters, 3 consumer accounts, 3 people to notify" in preview.content
    assert b"less than the 48 hours" in preview.content

    refused = client.post(f"{URL}{outage.pk}/publish/", {})
    assert refused.status_code == 200
    assert b"Tick this box to publish with late notice" in refused.content
    assert Outage.objects.get().status == Outage.Status.DRAFT
    assert not Notification.objects.exists()

    done = client.post(f"{URL}{outage.pk}/publish/", {"confirm_late": "on"}, follow=True)
    assert b"Published. 3 meters affected" in done.content
    outage.refresh_from_db()
    assert outage.status == Outage.Status.PUBLISHED and outage.late_notice
    assert Notification.objects.filter(category="outage_planned").count() == 3
    entry = AuditEntry.objects.get(action="outage:publish")
    assert entry.actor == desk["planner"] and entry.utility == desk["utility"]


def test_restoring_twice_shows_an_error_and_changes_nothing(desk):
    outage = outage_run(
        desk["transformer"],
        start=timezone.now() - timedelta(hours=5),
        duration=timedelta(hours=2),
    )
    assert outage.status == Outage.Status.RESTORED
    # The page offers no restore step any more; posting to it anyway is refused.
    page = desk["client"].post(
        f"{URL}{outage.pk}/restore/", {"at_0": "2026-11-22", "at_1": "10:00"}
    )
    assert b"This outage was already restored." in page.content
    assert Outage.objects.get().actual_end == outage.actual_end


def test_staff_see_only_their_utility(desk):
    other = UtilityFactory()
    foreign = OutageFactory(utility=other, reason="Kuwait feeder work")
    mine = OutageFactory(utility=desk["utility"], reason="Riyadh transformer work")

    listing = desk["client"].get(URL)
    assert b"Riyadh transformer work" in listing.content
    assert b"Kuwait feeder work" not in listing.content
    assert desk["client"].get(f"{URL}{foreign.pk}/change/").status_code == 302
    assert desk["client"].get(f"{URL}{foreign.pk}/publish/").status_code == 302
    assert desk["client"].get(f"{URL}{mine.pk}/change/").status_code == 200
    # Nor can they put another utility's transformer into their outage.
    response = desk["client"].post(
        f"{URL}add/", _draft_form(desk, transformers=[transformer_of(other).pk])
    )
    assert b"Select a valid choice" in response.content


def test_support_cannot_publish(desk, client):
    outage = OutageFactory(utility=desk["utility"], transformers=[desk["transformer"]])
    client.force_login(staff_member(desk["utility"], "support"))
    assert client.post(f"{URL}{outage.pk}/publish/", {}).status_code == 403
    assert Outage.objects.get().status == Outage.Status.DRAFT


def _restoration_compensation(desk, start):
    outage_run(desk["transformer"], start=start, duration=timedelta(hours=8))
    return Compensation.objects.filter(standard=Standard.RESTORATION)


def test_an_exemption_is_filed_and_an_approver_approves_it(desk, client):
    rows = _restoration_compensation(desk, timezone.now() - timedelta(hours=9))
    event = f"restoration|{rows.first().event_key}"
    form = desk["client"].get("/admin/outages/exemptionrequest/add/", {"event": event})
    assert b"3 consumers" in form.content

    filed = desk["client"].post(
        "/admin/outages/exemptionrequest/add/",
        {
            "event": event,
            "justification": "Sandstorm brought down the 33 kV line to the substation.",
        },
        follow=True,
    )
    assert b"Exemption filed" in filed.content
    exemption = ExemptionRequest.objects.get()

    # Deciding is an approver's (outages.decide_exemptionrequest): a planner is not offered it.
    listing = desk["client"].get("/admin/outages/exemptionrequest/")
    assert b'value="approve"' not in listing.content
    planner_tries = desk["client"].post(
        "/admin/outages/exemptionrequest/",
        {"action": "approve", "_selected_action": [exemption.pk]},
        follow=True,
    )
    assert b"approved;" not in planner_tries.content
    assert ExemptionRequest.objects.get().status == "pending"

    client.force_login(staff_member(desk["utility"], "approver"))
    decided = client.post(
        "/admin/outages/exemptionrequest/",
        {"action": "approve", "_selected_action": [exemption.pk]},
        follow=True,
    )
    assert b"approved; 3 compensations cancelled" in decided.content
    assert set(rows.values_list("status", flat=True)) == {"cancelled"}
    assert AuditEntry.objects.filter(action="action:approve").exists()


def test_an_exemption_after_the_deadline_is_refused_with_a_message(desk):
    rows = _restoration_compensation(desk, datetime(2026, 10, 1, 6, tzinfo=UTC))
    event = f"restoration|{rows.first().event_key}"

    response = desk["client"].post(
        "/admin/outages/exemptionrequest/add/",
        {
            "event": event,
            "justification": "Sandstorm brought down the 33 kV line to the substation.",
        },
    )

    assert response.status_code == 200
    assert b"Select a valid choice" in response.content  # the event is no longer offered
    assert not ExemptionRequest.objects.exists()


def test_support_marks_a_disconnection_wrongful(desk, client):
    meter = desk["transformer"].meters.first()
    disconnect = RelayCommand.objects.create(
        meter=meter,
        account=meter.account,
        action="disconnect",
        reason="non_payment",
        status="done",
        not_before=timezone.now(),
        completed_at=timezone.now(),
    )
    client.force_login(staff_member(desk["utility"], "support"))

    response = client.post(
        "/admin/outages/disconnection/",
        {"action": "mark_wrongful", "_selected_action": [disconnect.pk]},
        follow=True,
    )

    assert b"500.00 SAR compensation recorded; reconnection ordered." in response.content
    assert Compensation.objects.get().standard == Standard.WRONGFUL_DISCONNECTION
    assert RelayCommand.objects.filter(action="reconnect", status="waiting").count() == 1
    assert AuditEntry.objects.filter(action="action:mark_wrongful").count() == 1


def test_the_policy_and_reminder_schedule_are_editable_data(desk, client):
    client.force_login(staff_member(desk["utility"], "approver", is_superuser=True))
    assert client.get("/admin/outages/standardspolicy/").status_code == 200
    published = OutageFactory(utility=desk["utility"], transformers=[desk["transformer"]])
    services.outage_publish(outage_id=published.pk)
    page = desk["client"].get(URL)
    assert b"18:00" in page.content  # the computed evening-before reminder, local time


def test_the_outage_page_shows_how_the_notice_travelled(desk):
    start = timezone.now() + timedelta(days=3)
    outage = OutageFactory(
        utility=desk["utility"],
        planned_start=start,
        planned_end=start + timedelta(hours=4),
        transformers=[desk["transformer"]],
    )
    outage_publish_delivered(outage, now=timezone.now())  # nobody has a phone: 3 SMS

    page = desk["client"].get(f"{URL}{outage.pk}/change/")

    assert (
        b"Version 1: 0 accounts by the app, 3 by SMS, 0 on the way, 0 not delivered; "
        b"0 reached later than 48 h before the start" in page.content
    )
