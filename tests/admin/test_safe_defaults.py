"""Safe defaults and plain words in the staff console: no destructive choice preselected, counts
said with the right plural, and only what a utility's staff work with on the index."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from core.models import AuditEntry, StaffMembership
from notifications.models import Notification
from servicerequests.models import RequestEvent, ServiceRequest
from tests.accounts.factories import UserFactory
from tests.outages import factories as outage_factories
from tests.servicerequests import factories as request_factories

pytestmark = pytest.mark.django_db
DESTRUCTIVE = {ServiceRequest.Status.REJECTED, ServiceRequest.Status.CANCELLED}


class _Select(HTMLParser):
    """The options of one <select name=...>: [(value, label, selected)]."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name, self.inside, self.options = name, False, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "select":
            self.inside = attrs.get("name") == self.name
        elif tag == "option" and self.inside:
            self.options.append([attrs.get("value"), "", "selected" in attrs])

    def handle_endtag(self, tag):
        if tag == "select":
            self.inside = False

    def handle_data(self, data):
        if self.inside and self.options:
            self.options[-1][1] += data.strip()


def select_options(html: str, name: str) -> list[tuple[str, str, bool]]:
    parser = _Select(name)
    parser.feed(html)
    return [tuple(option) for option in parser.options]


# --- The service-request status form ---------------------------------------------------------


@pytest.fixture
def desk(client):
    utility = request_factories.saudi()
    _, account = request_factories.consumer(utility)
    staff = request_factories.support_staff(utility, username="noura")
    client.force_login(staff)
    request = request_factories.ServiceRequestFactory(account=account)
    return client, request


@pytest.mark.parametrize(
    "status", [ServiceRequest.Status.SUBMITTED, ServiceRequest.Status.UNDER_REVIEW]
)
def test_the_status_form_starts_with_no_choice_and_never_a_rejection(desk, status):
    client, request = desk
    ServiceRequest.objects.filter(pk=request.pk).update(status=status)

    page = client.get(f"/admin/servicerequests/servicerequest/{request.pk}/move/")

    assert page.status_code == 200
    options = select_options(page.content.decode(), "status")
    # A browser shows the selected option, or the first when none is: that must be no choice.
    shown = next((o for o in options if o[2]), options[0])
    assert shown[0] == "" and shown[1] == "— choose —"
    assert "rejected" in {o[0] for o in options}  # still offered, only never preselected
    assert options[-1][0] in DESTRUCTIVE  # and offered last, after the next natural steps


def test_an_unchosen_status_is_a_form_error_and_writes_nothing(desk):
    client, request = desk
    events_before = RequestEvent.objects.filter(request=request).count()

    for data in ({"status": "", "text": "We are on it."}, {"text": "We are on it."}):
        response = client.post(f"/admin/servicerequests/servicerequest/{request.pk}/move/", data)
        assert response.status_code == 200
        assert response.context["form"].errors["status"] == ["This field is required."]

    request.refresh_from_db()
    assert request.status == ServiceRequest.Status.SUBMITTED
    assert RequestEvent.objects.filter(request=request).count() == events_before
    assert not Notification.objects.exists()
    assert not AuditEntry.objects.filter(action="move").exists()


# --- Plurals in the outage preview -----------------------------------------------------------


@pytest.mark.parametrize(
    ("people", "said"),
    [
        (1, "1 meter, 1 consumer account, 1 person to notify"),
        (2, "1 meter, 1 consumer account, 2 people to notify"),
    ],
)
def test_the_outage_preview_counts_in_words_that_agree(client, people, said):
    utility = outage_factories.saudi()
    transformer = outage_factories.transformer_of(utility)
    outage_factories.consumer_on(transformer, users=people)
    client.force_login(outage_factories.staff_member(utility, "planner"))
    outage = outage_factories.OutageFactory(
        utility=utility,
        planned_start=timezone.now() + timedelta(days=4),
        transformers=[transformer],
    )

    preview = client.get(f"/admin/outages/outage/{outage.pk}/publish/")
    change = client.get(f"/admin/outages/outage/{outage.pk}/change/")

    assert said in preview.content.decode()
    assert said in change.content.decode()


# --- The index ---------------------------------------------------------------------------------


@pytest.fixture
def utility_staff(client):
    """A utility's staff member who was given every view permission, the token models' too."""
    utility = outage_factories.saudi()
    user = UserFactory(username="sees-a-lot", phone=None, is_staff=True)
    StaffMembership.objects.create(user=user, utility=utility, role="support")
    user.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    client.force_login(user)
    return client


def test_utility_staff_do_not_see_the_token_blacklist(utility_staff):
    index = utility_staff.get("/admin/")

    assert index.status_code == 200
    page = index.content.decode().lower()
    assert "service requests" in page  # the index does list what they work with
    for hidden in (
        "token blacklist",
        "outstanding tokens",
        "blacklisted tokens",
        "/token_blacklist/",
    ):
        assert hidden not in page
    listing = utility_staff.get("/admin/token_blacklist/outstandingtoken/")
    assert listing.status_code == 403


def test_superusers_keep_the_token_blacklist(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True, phone=None))

    page = client.get("/admin/").content.decode().lower()

    assert "outstanding tokens" in page and "blacklisted tokens" in page
    assert client.get("/admin/token_blacklist/outstandingtoken/").status_code == 200


def test_view_site_leads_somewhere_real_or_is_not_offered(utility_staff):
    page = utility_staff.get("/admin/").content.decode()

    link = re.search(r'<a href="([^"]*)">View site</a>', page)
    if link is not None:
        assert utility_staff.get(link.group(1)).status_code == 200
    assert "View site" not in page  # there is no site behind the admin: the link is gone
