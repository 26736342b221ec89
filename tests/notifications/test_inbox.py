from __future__ import annotations

import pytest

from notifications.models import Notification
from tests.accounts.factories import UserFactory
from tests.notifications.factories import NotificationFactory

pytestmark = pytest.mark.django_db


def test_it_lists_my_notifications_newest_first(make_api):
    user = UserFactory()
    older = NotificationFactory(user=user, title="Older")
    newer = NotificationFactory(user=user, title="Newer")
    NotificationFactory()  # someone else's

    body = make_api(user).get("/api/v1/notifications/").json()

    assert body["count"] == 2
    assert [n["id"] for n in body["results"]] == [newer.pk, older.pk]
    first = body["results"][0]
    assert (first["title"], first["category"], first["read"]) == ("Newer", "outage_restored", False)


def test_it_filters_unread_and_counts_them(make_api):
    user = UserFactory()
    NotificationFactory(user=user)
    unread = NotificationFactory(user=user)
    api = make_api(user)
    api.post(f"/api/v1/notifications/{Notification.objects.exclude(pk=unread.pk).get().pk}/read/")

    assert [n["id"] for n in api.get("/api/v1/notifications/?unread=true").json()["results"]] == [
        unread.pk
    ]
    assert api.get("/api/v1/notifications/unread-count/").json() == {"unread": 1}


def test_marking_read_is_idempotent(make_api):
    notification = NotificationFactory()
    api = make_api(notification.user)
    first = api.post(f"/api/v1/notifications/{notification.pk}/read/")
    second = api.post(f"/api/v1/notifications/{notification.pk}/read/")

    assert first.status_code == second.status_code == 200
    assert first.json()["read"] is True and first.json()["read_at"] == second.json()["read_at"]


def test_it_marks_all_read(make_api):
    user = UserFactory()
    NotificationFactory.create_batch(3, user=user)
    other = NotificationFactory()
    api = make_api(user)

    assert api.post("/api/v1/notifications/read-all/").json() == {"marked": 3}
    assert api.get("/api/v1/notifications/unread-count/").json() == {"unread": 0}
    other.refresh_from_db()
    assert other.read_at is None


@pytest.mark.parametrize("bad_id", ["abc", "0", "-1", "99999999999999999999", "1.5"])
def test_malformed_ids_are_not_found(make_api, bad_id):
    api = make_api(UserFactory())
    for response in (
        api.get(f"/api/v1/notifications/{bad_id}/"),
        api.post(f"/api/v1/notifications/{bad_id}/read/"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "notification_not_found"


def test_bad_filters_are_refused(make_api):
    response = make_api(UserFactory()).get("/api/v1/notifications/?unread=perhaps")
    assert response.status_code == 400 and "unread" in response.json()["error"]["fields"]


class TestOwnership:
    def test_owner_reads_it(self, make_api):
        notification = NotificationFactory()
        response = make_api(notification.user).get(f"/api/v1/notifications/{notification.pk}/")
        assert response.status_code == 200 and response.json()["id"] == notification.pk

    @pytest.mark.parametrize("staff", [False, True])
    def test_others_cannot_see_or_mark_it(self, make_api, staff):
        notification = NotificationFactory()
        api = make_api(UserFactory(is_staff=staff))
        for response in (
            api.get(f"/api/v1/notifications/{notification.pk}/"),
            api.post(f"/api/v1/notifications/{notification.pk}/read/"),
        ):
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "notification_not_found"
        assert api.get("/api/v1/notifications/").json()["count"] == 0
        notification.refresh_from_db()
        assert notification.read_at is None

    def test_anonymous_gets_401(self, make_api):
        notification = NotificationFactory()
        anonymous = make_api()
        assert anonymous.get("/api/v1/notifications/").status_code == 401
        assert anonymous.get(f"/api/v1/notifications/{notification.pk}/").status_code == 401
        assert anonymous.post(f"/api/v1/notifications/{notification.pk}/read/").status_code == 401
        assert anonymous.post("/api/v1/notifications/read-all/").status_code == 401
        assert anonymous.get("/api/v1/notifications/unread-count/").status_code == 401
        notification.refresh_from_db()
        assert notification.read_at is None
