from __future__ import annotations

import pytest

from notifications.models import NotificationPreference
from tests.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/notification-preferences/"


def test_the_defaults_have_everything_on_and_no_quiet_hours(make_api):
    body = make_api(UserFactory()).get(URL).json()
    assert all(body["categories"].values()) and "zero_balance" in body["categories"]
    assert body["quiet_hours"] is None and body["low_balance_amount"] is None


def test_it_saves_my_choices(make_api):
    user = UserFactory()
    response = make_api(user).patch(
        URL,
        {
            "categories": {"outage_restored": False, "topup_received": False},
            "low_balance_amount": "2.500",
            "low_balance_days": 3,
            "quiet_hours": {"start": "22:30", "end": "06:45"},
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["categories"]["outage_restored"] is False and body["categories"]["low_balance"]
    assert body["low_balance_amount"] == "2.500" and body["low_balance_days"] == 3
    assert body["quiet_hours"] == {"start": "22:30", "end": "06:45"}

    # A later change leaves the rest alone; null turns quiet hours off.
    again = make_api(user).patch(
        URL, {"categories": {"outage_restored": True}, "quiet_hours": None}
    )
    assert again.json()["categories"]["topup_received"] is False
    assert again.json()["categories"]["outage_restored"] is True
    assert again.json()["quiet_hours"] is None and again.json()["low_balance_days"] == 3


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"categories": {"zero_balance": False}}, "categories.zero_balance", "category_is_urgent"),
        ({"categories": {"horoscope": True}}, "categories.horoscope", "unknown_category"),
        ({"categories": {"low_balance": "maybe"}}, "categories.low_balance", "invalid"),
        ({"categories": ["low_balance"]}, "categories", "not_a_dict"),
        ({"low_balance_amount": "-1"}, "low_balance_amount", "min_value"),
        ({"low_balance_amount": "1.0001"}, "low_balance_amount", "max_decimal_places"),
        ({"low_balance_amount": "lots"}, "low_balance_amount", "invalid"),
        ({"low_balance_days": -2}, "low_balance_days", "min_value"),
        ({"quiet_hours": {"start": "22:00", "end": "22:00"}}, "quiet_hours", "invalid_quiet_hours"),
        ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours.start", "invalid"),
        ({"quiet_hours": {"start": "22:00"}}, "quiet_hours.end", "required"),
    ],
)
def test_it_refuses_bad_preferences(make_api, body, field, code):
    response = make_api(UserFactory()).patch(URL, body)
    assert response.status_code == 400
    assert response.json()["error"]["fields"][field][0]["code"] == code
    assert not NotificationPreference.objects.exclude(disabled_categories=[]).exists()


def test_anonymous_gets_401(make_api):
    assert make_api().get(URL).status_code == 401
    assert make_api().patch(URL, {"low_balance_days": 1}).status_code == 401


def test_the_categories_are_listed(make_api):
    body = make_api(UserFactory()).get("/api/v1/notification-categories/").json()
    urgent = {c["code"] for c in body if c["urgent"]}
    assert urgent == {
        "zero_balance",
        "disconnection_pending",
        "outage_unplanned",
        "outage_unplanned_eta",
        "removal_notice",
        "removal_confirmed",
    }
