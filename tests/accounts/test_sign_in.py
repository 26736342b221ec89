from __future__ import annotations

import time_machine
from django.utils import timezone

from accounts.models import OneTimeCode, User
from tests.conftest import last_code

PHONE = "+96550001234"


def test_it_signs_in_a_new_number_and_creates_the_user(api, sms_outbox):
    start = api.post("/api/v1/auth/code/", {"phone": PHONE, "language": "ar"})

    assert start.status_code == 202
    assert start.json()["sent_to"] == "+965 ••••1234"
    assert [m.to for m in sms_outbox] == [PHONE]
    assert "تطبيق" in sms_outbox[0].body  # the SMS is in the language asked for

    done = api.post(
        "/api/v1/auth/token/",
        {"challenge_id": start.json()["challenge_id"], "code": last_code(sms_outbox)},
    )
    assert done.status_code == 200
    body = done.json()
    assert body["created"] is True
    assert body["user"]["phone"] == PHONE and body["user"]["language"] == "ar"
    assert User.objects.filter(phone=PHONE).count() == 1

    api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    assert api.get("/api/v1/me/").json()["phone"] == PHONE


def test_it_signs_in_an_existing_user_without_creating_another(api, sms_outbox):
    User.objects.create(username=PHONE, phone=PHONE)
    start = api.post("/api/v1/auth/code/", {"phone": "50001234", "country": "kw"})
    done = api.post(
        "/api/v1/auth/token/",
        {"challenge_id": start.json()["challenge_id"], "code": last_code(sms_outbox)},
    )
    assert done.status_code == 200 and done.json()["created"] is False
    assert User.objects.count() == 1


def test_it_refuses_malformed_numbers(api, sms_outbox):
    for phone, code in [
        ("not a number", "invalid_phone"),
        ("+965123", "invalid_phone"),
        ("50001234", "invalid_phone"),  # national form without a country
        ("+96522001234", "not_a_mobile"),  # a Kuwaiti landline cannot get SMS
        ("", "invalid"),
    ]:
        response = api.post("/api/v1/auth/code/", {"phone": phone})
        assert response.status_code == 400, phone
        error = response.json()["error"]
        assert error["code"] == code or "phone" in error["fields"], (phone, error)
        assert error["message"]
    assert sms_outbox == []
    assert OneTimeCode.objects.count() == 0


def test_it_refuses_a_wrong_code_and_counts_the_attempt(api, sms_outbox):
    start = api.post("/api/v1/auth/code/", {"phone": PHONE}).json()
    wrong = "000000" if last_code(sms_outbox) != "000000" else "111111"

    response = api.post(
        "/api/v1/auth/token/", {"challenge_id": start["challenge_id"], "code": wrong}
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "wrong_code"
    assert response.json()["error"]["attempts_left"] == 4
    assert OneTimeCode.objects.get().attempts == 1
    assert not User.objects.exists()


def test_it_refuses_a_reused_code(api, sms_outbox):
    start = api.post("/api/v1/auth/code/", {"phone": PHONE}).json()
    body = {"challenge_id": start["challenge_id"], "code": last_code(sms_outbox)}
    assert api.post("/api/v1/auth/token/", body).status_code == 200

    again = api.post("/api/v1/auth/token/", body)

    assert again.status_code == 400
    assert again.json()["error"]["code"] == "code_used"


def test_it_refuses_an_expired_code(api, sms_outbox):
    start = api.post("/api/v1/auth/code/", {"phone": PHONE}).json()
    with time_machine.travel(timezone.now() + timezone.timedelta(minutes=5, seconds=1)):
        response = api.post(
            "/api/v1/auth/token/",
            {"challenge_id": start["challenge_id"], "code": last_code(sms_outbox)},
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "code_expired"
    assert not User.objects.exists()


def test_a_new_code_replaces_the_previous_one(api, sms_outbox, settings):
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    first = api.post("/api/v1/auth/code/", {"phone": PHONE}).json()
    first_code = last_code(sms_outbox)
    second = api.post("/api/v1/auth/code/", {"phone": PHONE}).json()

    old = api.post(
        "/api/v1/auth/token/", {"challenge_id": first["challenge_id"], "code": first_code}
    )
    new = api.post(
        "/api/v1/auth/token/",
        {"challenge_id": second["challenge_id"], "code": last_code(sms_outbox)},
    )

    assert old.status_code == 400 and old.json()["error"]["code"] == "code_replaced"
    assert new.status_code == 200


def test_it_refuses_an_unknown_challenge(api):
    response = api.post(
        "/api/v1/auth/token/",
        {"challenge_id": "6d3b7a52-0f5e-4a57-9c1a-2f6f9d1c0b11", "code": "123456"},
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "challenge_not_found"


def test_it_refuses_malformed_code_bodies(api):
    for body in [
        {},
        {"challenge_id": "nope", "code": "123456"},
        {"challenge_id": None, "code": "12ab56"},
    ]:
        response = api.post("/api/v1/auth/token/", body)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid"
        assert response.json()["error"]["fields"]


def test_refresh_rotates_and_logout_revokes(api, sms_outbox):
    start = api.post("/api/v1/auth/code/", {"phone": PHONE}).json()
    tokens = api.post(
        "/api/v1/auth/token/",
        {"challenge_id": start["challenge_id"], "code": last_code(sms_outbox)},
    ).json()

    refreshed = api.post("/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]})
    assert refreshed.status_code == 200
    new_refresh = refreshed.json()["refresh"]
    # The rotated-out refresh token is dead.
    assert (
        api.post("/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]}).status_code == 401
    )

    api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {refreshed.json()['access']}")
    assert api.post("/api/v1/auth/logout/", {"refresh": new_refresh}).status_code == 204

    after = api.post("/api/v1/auth/token/refresh/", {"refresh": new_refresh})
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "token_not_valid"


def test_logout_refuses_another_users_refresh_token(make_api):
    from accounts.services import tokens_issue

    me = User.objects.create(username="+96550000001", phone="+96550000001")
    other = User.objects.create(username="+96550000002", phone="+96550000002")
    others_refresh = tokens_issue(user=other).refresh

    response = make_api(me).post("/api/v1/auth/logout/", {"refresh": others_refresh})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "token_not_yours"
    still = make_api().post("/api/v1/auth/token/refresh/", {"refresh": others_refresh})
    assert still.status_code == 200


def test_logout_everywhere_revokes_every_session(make_api):
    from accounts.services import tokens_issue

    me = User.objects.create(username="+96550000001", phone="+96550000001")
    phone_session, tablet_session = tokens_issue(user=me), tokens_issue(user=me)

    response = make_api(me).post(
        "/api/v1/auth/logout/", {"refresh": phone_session.refresh, "everywhere": True}
    )

    assert response.status_code == 204
    anonymous = make_api()
    assert (
        anonymous.post(
            "/api/v1/auth/token/refresh/", {"refresh": tablet_session.refresh}
        ).status_code
        == 401
    )


def test_profile_language_is_validated(make_api):
    me = User.objects.create(username="+96550000001", phone="+96550000001")
    api = make_api(me)

    bad = api.patch("/api/v1/me/", {"language": "fr"})
    good = api.patch("/api/v1/me/", {"language": "hi", "name": "Asha"})

    assert bad.status_code == 400 and "language" in bad.json()["error"]["fields"]
    assert (
        good.status_code == 200
        and good.json()["language"] == "hi"
        and good.json()["name"] == "Asha"
    )
    me.refresh_from_db()
    assert me.language == "hi"


def test_anonymous_and_forged_tokens_are_refused(make_api):
    anonymous = make_api()
    assert anonymous.get("/api/v1/me/").status_code == 401
    assert anonymous.get("/api/v1/me/").json()["error"]["code"] == "not_authenticated"
    anonymous.client.credentials(HTTP_AUTHORIZATION="Bearer not.a.jwt")
    forged = anonymous.get("/api/v1/me/")
    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "token_not_valid"
