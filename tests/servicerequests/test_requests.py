"""Consumers open, follow, comment on and cancel service requests; bad input is refused whole."""

from __future__ import annotations

import pytest

from notifications.models import Notification
from servicerequests.models import RequestEvent, ServiceRequest
from tests.accounts.factories import UserFactory
from tests.servicerequests.factories import (
    ServiceRequestFactory,
    consumer,
    kuwait,
    saudi,
    support_staff,
)

pytestmark = pytest.mark.django_db
URL = "/api/v1/service-requests/"

CONNECTION = {
    "voltage": "low",
    "load_kw": "12.5",
    "premises_type": "residential",
    "plot_number": "17/B",
}


@pytest.fixture
def utility():
    return saudi()


@pytest.fixture
def owner(utility):
    return consumer(utility)


def test_a_consumer_files_a_complaint_and_follows_it(make_api, owner):
    user, account = owner
    api = make_api(user)

    response = api.post(
        URL,
        {
            "account": account.pk,
            "type": "complaint",
            "details": {"category": "billing", "subject": "Bill doubled in October"},
            "description": "My October bill is twice September's with the same usage.",
        },
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "submitted" and body["type"] == "complaint"
    assert body["details"] == {"category": "billing", "subject": "Bill doubled in October"}
    # A complaint has the utility's target of 10 working days from submission.
    assert body["deadline_working_days"] == 10 and body["deadline_at"].endswith("+03:00")
    assert [e["kind"] for e in body["timeline"]] == ["created"]
    listed = api.get(URL).json()
    assert [r["id"] for r in listed["results"]] == [body["id"]]
    assert api.get(f"{URL}{body['id']}/").json()["description"].startswith("My October bill")


def test_the_types_of_the_accounts_utility_are_listed_with_their_fields(make_api, owner):
    user, account = owner
    response = make_api(user).get(f"/api/v1/accounts/{account.pk}/service-request-types/")

    assert response.status_code == 200
    types = {t["code"]: t for t in response.json()}
    assert set(types) == {
        "new_connection",
        "meter_installation",
        "meter_conversion",
        "cost_estimate",
        "meter_inspection",
        "complaint",
    }
    assert types["new_connection"]["takes_estimate"] and types["new_connection"]["regulated"]
    voltage = next(f for f in types["new_connection"]["fields"] if f["name"] == "voltage")
    assert voltage["choices"] == ["low", "medium"] and voltage["required"]


def test_the_helpline_and_opening_hours_are_the_utilitys(make_api, owner):
    user, account = owner
    body = make_api(user).get(f"/api/v1/accounts/{account.pk}/helpline/").json()

    assert body["helpline"] == "933" and body["timezone"] == "Asia/Riyadh"
    # Sunday to Thursday, the Saudi working week.
    assert sorted(h["weekday"] for h in body["opening_hours"]) == [0, 1, 2, 3, 6]
    assert body["opening_hours"][0]["opens"] == "08:00"


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        ({"type": "teleportation", "details": {}}, "unknown_request_type", "type"),
        (
            {"type": "new_connection", "details": {**CONNECTION, "voltage": None}},
            "invalid",
            "details.voltage",
        ),
        (
            {"type": "new_connection", "details": {**CONNECTION, "voltage": "high"}},
            "invalid",
            "details.voltage",
        ),
        (
            {"type": "new_connection", "details": {**CONNECTION, "load_kw": "lots"}},
            "invalid",
            "details.load_kw",
        ),
        (
            {"type": "new_connection", "details": {**CONNECTION, "colour": "red"}},
            "invalid",
            "details.colour",
        ),
        (
            {
                "type": "meter_inspection",
                "details": {"reason": "stopped", "preferred_date": "soon"},
            },
            "invalid",
            "details.preferred_date",
        ),
        ({"type": "complaint", "details": "angry"}, "invalid", "details"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(make_api, owner, payload, code, field):
    user, account = owner
    response = make_api(user).post(URL, {"account": account.pk, **payload})

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == code and field in error["fields"]
    assert not ServiceRequest.objects.exists() and not RequestEvent.objects.exists()


def test_every_missing_field_is_reported_at_once(make_api, owner):
    user, account = owner
    response = make_api(user).post(URL, {"account": account.pk, "type": "new_connection"})

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert {f: v[0]["code"] for f, v in fields.items()} == {
        "details.voltage": "required",
        "details.load_kw": "required",
        "details.premises_type": "required",
        "details.plot_number": "required",
    }


def test_nobody_opens_a_request_on_an_account_they_did_not_link(make_api, owner):
    _, account = owner
    for intruder in (UserFactory(), support_staff(account.utility)):
        response = make_api(intruder).post(
            URL, {"account": account.pk, "type": "complaint", "details": {}}
        )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "account_not_found"
    assert make_api().post(URL, {"account": account.pk, "type": "complaint"}).status_code == 401
    assert not ServiceRequest.objects.exists()


def test_a_type_of_another_utility_is_unknown(make_api, owner):
    kuwait()
    user, account = owner
    response = make_api(user).post(
        URL, {"account": account.pk, "type": "lunar_connection", "details": {}}
    )
    assert response.json()["error"]["code"] == "unknown_request_type"


def test_a_comment_joins_the_timeline(make_api, owner):
    user, account = owner
    request = ServiceRequestFactory(account=account)
    api = make_api(user)

    response = api.post(f"{URL}{request.pk}/comments/", {"text": "Any news?"})

    assert response.status_code == 201
    assert response.json()["timeline"][-1] == {
        **response.json()["timeline"][-1],
        "kind": "comment",
        "text": "Any news?",
        "by": "you",
    }
    empty = api.post(f"{URL}{request.pk}/comments/", {"text": ""})
    assert empty.status_code == 400 and "text" in empty.json()["error"]["fields"]


def test_a_consumer_cancels_an_open_request_and_is_told(make_api, owner):
    user, account = owner
    request = ServiceRequestFactory(account=account)
    api = make_api(user)

    response = api.post(f"{URL}{request.pk}/cancel/", {"reason": "Sorted out at the office."})

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "cancelled"
    alert = Notification.objects.get(user=user, category="service_request_update")
    assert alert.body == (
        f"Your request {request.pk} (Complaint) for account {account.consumer_id} is now: cancelled."
    )
    again = api.post(f"{URL}{request.pk}/cancel/")
    assert again.status_code == 409 and again.json()["error"]["code"] == "illegal_transition"
    assert RequestEvent.objects.filter(kind="status").count() == 1


def test_a_paid_request_can_no_longer_be_cancelled(make_api, owner):
    user, account = owner
    request = ServiceRequestFactory(account=account, status=ServiceRequest.Status.PAID)
    response = make_api(user).post(f"{URL}{request.pk}/cancel/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "illegal_transition"
    request.refresh_from_db()
    assert request.status == "paid"


def test_closed_requests_take_no_comments(make_api, owner):
    user, account = owner
    request = ServiceRequestFactory(account=account, status=ServiceRequest.Status.COMPLETED)
    response = make_api(user).post(f"{URL}{request.pk}/comments/", {"text": "Thanks"})
    assert response.status_code == 409 and response.json()["error"]["code"] == "request_closed"


def test_everyone_linked_to_the_account_follows_its_requests(make_api, owner):
    user, account = owner
    from tests.accounts.factories import AccountLinkFactory

    spouse = AccountLinkFactory(account=account).user
    request = ServiceRequestFactory(account=account, created_by=user)
    assert make_api(spouse).get(f"{URL}{request.pk}/").status_code == 200


class TestOwnership:
    """Every endpoint taking an id: the owner may, another consumer and staff (through the consumer
    API) find nothing there, anonymous callers are asked to sign in. Nothing is written."""

    @pytest.fixture
    def request_obj(self, owner):
        return ServiceRequestFactory(account=owner[1])

    @pytest.mark.parametrize(
        ("method", "path", "data", "ok"),
        [
            ("get", "", None, 200),
            ("post", "comments/", {"text": "hello"}, 201),
            ("post", "cancel/", {}, 200),
            ("post", "estimate/pay/", {}, 409),  # the owner reaches it; no estimate is waiting
        ],
    )
    def test_request_endpoints(self, make_api, owner, request_obj, method, path, data, ok):
        url = f"{URL}{request_obj.pk}/{path}"
        staff = support_staff(request_obj.utility)
        for intruder in (UserFactory(), staff):
            response = getattr(make_api(intruder), method)(url, data)
            assert response.status_code == 404, (intruder, response.json())
            assert response.json()["error"]["code"] == "request_not_found"
        assert getattr(make_api(), method)(url, data).status_code == 401
        assert RequestEvent.objects.count() == 0
        assert getattr(make_api(owner[0]), method)(url, data).status_code == ok

    @pytest.mark.parametrize("path", ["service-request-types/", "helpline/"])
    def test_account_endpoints(self, make_api, owner, path):
        url = f"/api/v1/accounts/{owner[1].pk}/{path}"
        assert make_api(owner[0]).get(url).status_code == 200
        for intruder in (UserFactory(), support_staff(owner[1].utility)):
            response = make_api(intruder).get(url)
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "account_not_found"
        assert make_api().get(url).status_code == 401

    def test_lists_show_only_ones_own(self, make_api, owner, request_obj):
        _, other_account = consumer(owner[1].utility)
        ServiceRequestFactory(account=other_account)
        mine = make_api(owner[0]).get(URL).json()["results"]
        assert [r["id"] for r in mine] == [request_obj.pk]
        foreign = make_api(owner[0]).get(URL, {"account": other_account.pk}).json()["results"]
        assert foreign == []
        assert make_api().get(URL).status_code == 401
