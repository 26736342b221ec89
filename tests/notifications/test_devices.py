from __future__ import annotations

import pytest

from notifications.models import Device
from tests.accounts.factories import UserFactory

TOKEN = "fcm-token-" + "a" * 150


def register(api, **overrides):
    body = {
        "token": TOKEN,
        "platform": "android",
        "app_version": "2.4.1",
        "language": "ar",
        **overrides,
    }
    return api.post("/api/v1/devices/", body)


def test_it_registers_a_device(make_api):
    user = UserFactory()
    response = register(make_api(user))

    assert response.status_code == 201
    assert response.json()["platform"] == "android" and response.json()["language"] == "ar"
    assert response.json()["token_suffix"] == TOKEN[-8:]
    device = Device.objects.get()
    assert (device.user, device.token, device.app_version) == (user, TOKEN, "2.4.1")


def test_registering_again_is_idempotent(make_api):
    api = make_api(UserFactory())
    first = register(api)
    second = register(api, app_version="2.5.0")

    assert (first.status_code, second.status_code) == (201, 200)
    assert Device.objects.count() == 1
    assert Device.objects.get().app_version == "2.5.0"


def test_a_token_moves_to_the_user_who_registers_it_last(make_api):
    previous_owner, new_owner = UserFactory(), UserFactory()
    register(make_api(previous_owner))

    response = register(make_api(new_owner))

    assert response.status_code == 200
    assert Device.objects.get().user == new_owner
    assert make_api(previous_owner).get("/api/v1/devices/").json() == []


def test_a_rotated_token_replaces_the_old_one(make_api):
    api = make_api(UserFactory())
    register(api)

    response = register(api, token="fcm-token-rotated", replaces=TOKEN)

    assert response.status_code == 201
    assert list(Device.objects.values_list("token", flat=True)) == ["fcm-token-rotated"]


def test_replaces_cannot_remove_another_users_device(make_api):
    victim = UserFactory()
    register(make_api(victim))

    register(make_api(UserFactory()), token="fcm-token-mine", replaces=TOKEN)

    assert Device.objects.filter(user=victim, token=TOKEN).exists()


@pytest.mark.parametrize(
    "body",
    [
        {"platform": "android"},
        {"token": TOKEN, "platform": "symbian"},
        {"token": "has spaces in it", "platform": "ios"},
        {"token": "x" * 513, "platform": "ios"},
        {"token": TOKEN, "platform": "ios", "language": "fr"},
    ],
)
def test_it_refuses_bad_registrations(make_api, body):
    response = make_api(UserFactory()).post("/api/v1/devices/", body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid" and response.json()["error"]["fields"]
    assert not Device.objects.exists()


class TestOwnership:
    def test_owner_removes_the_device(self, make_api):
        owner = UserFactory()
        device_id = register(make_api(owner)).json()["id"]
        assert make_api(owner).delete(f"/api/v1/devices/{device_id}/").status_code == 204
        assert not Device.objects.exists()

    @pytest.mark.parametrize("staff", [False, True])
    def test_others_cannot_remove_it(self, make_api, staff):
        device_id = register(make_api(UserFactory())).json()["id"]
        response = make_api(UserFactory(is_staff=staff)).delete(f"/api/v1/devices/{device_id}/")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "device_not_found"
        assert Device.objects.count() == 1

    def test_anonymous_cannot_register_or_remove(self, make_api):
        device_id = register(make_api(UserFactory())).json()["id"]
        anonymous = make_api()
        assert register(anonymous).status_code == 401
        assert anonymous.delete(f"/api/v1/devices/{device_id}/").status_code == 401
        assert Device.objects.count() == 1
