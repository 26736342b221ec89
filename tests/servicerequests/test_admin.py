"""The staff work queue in the admin: scoped to the staff member's utility, with deadlines, what is
overdue, assignment, replies and status changes that reach the consumer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import AuditEntry
from notifications.models import Notification
from servicerequests.models import RequestEvent, ServiceRequest
from tests.servicerequests.factories import (
    ServiceRequestFactory,
    consumer,
    kuwait,
    saudi,
    support_staff,
)

pytestmark = pytest.mark.django_db
URL = "/admin/servicerequests/servicerequest/"


@pytest.fixture
def desk(client):
    utility = saudi()
    user, account = consumer(utility, language="ar")
    staff = support_staff(utility, username="noura")
    client.force_login(staff)
    return {"client": client, "utility": utility, "user": user, "account": account, "staff": staff}


def test_the_queue_shows_only_the_staff_members_utility_and_what_is_overdue(desk):
    late = ServiceRequestFactory(
        account=desk["account"], deadline_at=timezone.now() - timedelta(hours=1)
    )
    on_time = ServiceRequestFactory(
        account=desk["account"], deadline_at=timezone.now() + timedelta(days=5)
    )
    _, kuwaiti = consumer(kuwait())
    foreign = ServiceRequestFactory(account=kuwaiti)

    page = desk["client"].get(URL)
    shown = {row.pk for row in page.context["cl"].result_list}
    assert shown == {late.pk, on_time.pk}
    overdue = desk["client"].get(URL, {"overdue": "yes"})
    assert [row.pk for row in overdue.context["cl"].result_list] == [late.pk]
    assert desk["client"].get(f"{URL}{foreign.pk}/change/").status_code == 302  # not found


def test_assign_to_me(desk):
    request = ServiceRequestFactory(account=desk["account"])
    response = desk["client"].post(
        URL, {"action": "assign_to_me", "_selected_action": [request.pk]}
    )
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.assigned_to == desk["staff"]
    assert RequestEvent.objects.get(kind="assigned").visible_to_consumer is False
    assert AuditEntry.objects.filter(action="action:assign_to_me").exists()
    mine = desk["client"].get(URL, {"assigned_to__id__exact": desk["staff"].pk})
    assert [row.pk for row in mine.context["cl"].result_list] == [request.pk]


def test_a_status_change_with_a_reply_reaches_the_consumer_in_arabic(desk):
    request = ServiceRequestFactory(account=desk["account"])

    response = desk["client"].post(
        f"{URL}{request.pk}/move/", {"status": "under_review", "text": "نراجع طلبك الآن."}
    )

    assert response.status_code == 302
    request.refresh_from_db()
    assert request.status == "under_review"
    alert = Notification.objects.get(user=desk["user"], category="service_request_update")
    assert alert.title == f"تحديث على طلبك رقم {request.pk}"
    assert alert.body == (
        f"أصبحت حالة طلبك رقم {request.pk} (شكوى) للحساب رقم "
        f"{desk['account'].consumer_id}: قيد المراجعة."
    )
    assert alert.data["deep_link"] == f"smartmeter://service-requests/{request.pk}"


def test_an_illegal_move_is_not_offered_and_is_refused(desk):
    request = ServiceRequestFactory(account=desk["account"])
    page = desk["client"].get(f"{URL}{request.pk}/move/")
    offered = [value for value, _ in page.context["form"].fields["status"].choices]
    assert offered == ["", "under_review", "rejected"]  # no choice made for staff; reject last

    response = desk["client"].post(f"{URL}{request.pk}/move/", {"status": "completed"})

    assert response.status_code == 200 and response.context["form"].errors
    request.refresh_from_db()
    assert request.status == "submitted" and not Notification.objects.exists()


def test_a_bad_estimate_amount_is_shown_and_nothing_changes(desk):
    from servicerequests.models import RequestType

    request = ServiceRequestFactory(
        account=desk["account"],
        type=RequestType.objects.get(utility=desk["utility"], code="cost_estimate"),
        details={"work": "load_increase", "plot_number": "4"},
        status=ServiceRequest.Status.UNDER_REVIEW,
    )
    response = desk["client"].post(f"{URL}{request.pk}/estimate/", {"amount": "12.345"})

    assert response.status_code == 200
    assert "At most 2 decimal places" in response.content.decode()
    request.refresh_from_db()
    assert request.status == "under_review" and request.estimate_amount is None


def test_a_reply_is_on_the_consumers_timeline(desk, make_api):
    request = ServiceRequestFactory(account=desk["account"])
    desk["client"].post(f"{URL}{request.pk}/reply/", {"text": "We called you twice."})

    timeline = (
        make_api(desk["user"]).get(f"/api/v1/service-requests/{request.pk}/").json()["timeline"]
    )
    assert timeline[-1]["kind"] == "reply" and timeline[-1]["by"] == "staff"
    assert timeline[-1]["text"] == "We called you twice."


def test_staff_without_the_role_cannot_move_requests(desk, client):
    from core.models import StaffMembership
    from tests.accounts.factories import UserFactory

    request = ServiceRequestFactory(account=desk["account"])
    clerk = UserFactory(is_staff=True, phone=None)
    StaffMembership.objects.create(user=clerk, utility=desk["utility"], role="cashier")
    client.force_login(clerk)
    response = client.post(f"{URL}{request.pk}/move/", {"status": "under_review"})
    assert response.status_code in (302, 403)
    request.refresh_from_db()
    assert request.status == "submitted"
