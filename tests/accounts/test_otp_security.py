"""One-time codes cannot be guessed, flooded or used to learn a registered number."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection

from accounts.models import AccountLink, OneTimeCode
from tests.accounts.factories import ConsumerAccountFactory, UserFactory
from tests.conftest import last_code

PHONE = "+96550001234"


def wrong_codes(right: str):
    return (f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" != right)


def test_five_wrong_guesses_kill_the_code_even_for_the_right_answer(api, sms_outbox):
    start = api.post("/api/v1/auth/code/", {"phone": PHONE}).json()
    right = last_code(sms_outbox)
    guesses = wrong_codes(right)

    answers = [
        api.post(
            "/api/v1/auth/token/", {"challenge_id": start["challenge_id"], "code": next(guesses)}
        )
        for _ in range(5)
    ]
    final = api.post("/api/v1/auth/token/", {"challenge_id": start["challenge_id"], "code": right})

    assert [a.json()["error"]["code"] for a in answers] == ["wrong_code"] * 4 + ["code_locked"]
    assert [a.json()["error"].get("attempts_left") for a in answers[:4]] == [4, 3, 2, 1]
    assert final.status_code == 400
    assert final.json()["error"]["code"] == "code_locked"


def test_guesses_within_a_codes_lifetime_are_bounded(api, sms_outbox, settings):
    """However an attacker asks for codes, one number yields at most 5 codes × 5 guesses an hour."""
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    guesses_accepted = 0
    refused = None
    for _ in range(10):
        start = api.post("/api/v1/auth/code/", {"phone": PHONE})
        if start.status_code == 429:
            refused = start
            break
        right = last_code(sms_outbox)
        guesses = wrong_codes(right)
        for _ in range(10):
            answer = api.post(
                "/api/v1/auth/token/",
                {"challenge_id": start.json()["challenge_id"], "code": next(guesses)},
            )
            if answer.json()["error"]["code"] == "wrong_code":
                guesses_accepted += 1
    assert refused is not None
    assert refused.json()["error"]["code"] == "too_many_codes"
    assert int(refused["Retry-After"]) > 0
    assert sum(c.attempts for c in OneTimeCode.objects.all()) == 25
    assert guesses_accepted == 5 * 4  # the fifth wrong guess of each code answers code_locked


@pytest.mark.django_db(transaction=True)
def test_concurrent_guesses_cannot_exceed_the_attempt_limit(sms_outbox):
    from accounts import services
    from core.errors import DomainError

    challenge = services.sign_in_start(phone=PHONE, country=None, language="en", client_ip=None)
    right = last_code(sms_outbox)
    guesses = list(zip(range(20), wrong_codes(right), strict=False))
    outcomes: list[str] = []
    barrier = threading.Barrier(len(guesses))

    def guess(code: str) -> None:
        barrier.wait()
        try:
            services.otp_verify(challenge_id=challenge.id, code=code, purpose="sign_in")
            outcomes.append("ok")
        except DomainError as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=guess, args=(code,)) for _, code in guesses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert OneTimeCode.objects.get().attempts == 5
    assert outcomes.count("wrong_code") + outcomes.count("code_locked") == 20
    assert sorted(outcomes).count("wrong_code") == 4  # each told the truth about attempts left


def test_resend_has_a_cooldown(api, sms_outbox):
    assert api.post("/api/v1/auth/code/", {"phone": PHONE}).status_code == 202
    again = api.post("/api/v1/auth/code/", {"phone": PHONE})

    assert again.status_code == 429
    assert again.json()["error"]["code"] == "resend_too_soon"
    assert 0 < again.json()["error"]["retry_after"] <= 61
    assert again["Retry-After"] == str(again.json()["error"]["retry_after"])
    assert len(sms_outbox) == 1


def test_codes_are_throttled_per_client_address(api, sms_outbox, settings):
    settings.OTP_HOURLY_LIMIT_PER_CLIENT = 3
    numbers = [f"+9655000{n:04d}" for n in range(4)]
    answers = [
        api.post("/api/v1/auth/code/", {"phone": p}, REMOTE_ADDR="203.0.113.9") for p in numbers
    ]
    elsewhere = api.post("/api/v1/auth/code/", {"phone": numbers[3]}, REMOTE_ADDR="198.51.100.7")

    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert elsewhere.status_code == 202


def test_codes_are_throttled_per_consumer_account(make_api, sms_outbox, settings):
    """Many users cannot flood one account holder's phone with link codes."""
    settings.LINK_HOURLY_LIMIT_PER_ACCOUNT = 2
    account = ConsumerAccountFactory()
    body = {"utility": account.utility.code, "consumer_id": account.consumer_id}

    answers = [make_api(UserFactory()).post("/api/v1/links/", body).status_code for _ in range(3)]

    assert answers == [202, 202, 429]
    assert len(sms_outbox) == 2


def test_codes_are_stored_hashed(api, sms_outbox):
    api.post("/api/v1/auth/code/", {"phone": PHONE})
    code = last_code(sms_outbox)
    stored = OneTimeCode.objects.values().get()
    assert code not in json.dumps(stored, default=str)
    assert len(stored["code_hash"]) == 64


def test_a_registered_number_never_leaks_beyond_its_masked_form(make_api, sms_outbox, settings):
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    account = ConsumerAccountFactory(registered_mobile="+96550007788")
    intruder, owner = UserFactory(), UserFactory()
    body = {"utility": account.utility.code, "consumer_id": account.consumer_id}
    owner_api, intruder_api = make_api(owner), make_api(intruder)

    start = owner_api.post("/api/v1/links/", body).json()
    owner_api.post(
        "/api/v1/links/confirm/", {"challenge_id": start["challenge_id"], "code": "000000"}
    )
    owner_api.post("/api/v1/links/", body)  # a resend
    confirm = owner_api.post(
        "/api/v1/links/confirm/",
        {
            "challenge_id": owner_api.responses[-1].json()["challenge_id"],
            "code": last_code(sms_outbox),
        },
    )
    link_id = confirm.json()["id"]
    owner_api.get("/api/v1/links/")
    owner_api.get(f"/api/v1/links/{link_id}/")
    intruder_api.post("/api/v1/links/", body)
    intruder_api.get(f"/api/v1/links/{link_id}/")
    intruder_api.post(
        "/api/v1/links/confirm/", {"challenge_id": start["challenge_id"], "code": "123456"}
    )

    everything = [r.content.decode() for r in owner_api.responses + intruder_api.responses]
    assert AccountLink.objects.filter(user=owner).count() == 1
    assert any("+965 ••••7788" in text for text in everything)
    for text in everything:
        assert "50007788" not in text
        assert "5000778" not in text  # not even one digit more than the mask shows
