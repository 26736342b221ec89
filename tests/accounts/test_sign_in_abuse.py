"""Sign-in that others cannot block, and consumer ids that cannot be mined (issue 12).

An outside probe locked a consumer out of sign-in by asking for link codes to their account
(429 too_many_codes for an hour), and told real consumer ids from unknown ones by the answer
(202 against 404 unknown_consumer), with no throttle on trying.
"""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.models import AccountLink, OneTimeCode
from accounts.services import tokens_issue
from tests.accounts.factories import SAUDI, ConsumerAccountFactory, UserFactory, UtilityFactory
from tests.conftest import last_code

OWNER_PHONE = "+96550001234"


def link_start(api, utility: str, consumer_id: str, **extra):
    return api.post("/api/v1/links/", {"utility": utility, "consumer_id": consumer_id}, **extra)


def refusal(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


# --- One budget per purpose -----------------------------------------------------------------


def test_link_starts_by_others_never_lock_the_holder_out_of_sign_in(make_api, sms_outbox, settings):
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    settings.LINK_HOURLY_LIMIT_PER_ACCOUNT = 5
    homes = ConsumerAccountFactory.create_batch(2, registered_mobile=OWNER_PHONE)

    floods = [
        link_start(make_api(UserFactory()), home.utility.code, home.consumer_id).status_code
        for home in homes
        for _ in range(7)
    ]
    sign_ins = [make_api().post("/api/v1/auth/code/", {"phone": OWNER_PHONE}) for _ in range(6)]

    assert floods == ([202] * 5 + [429] * 2) * 2
    assert [s.status_code for s in sign_ins] == [202] * 5 + [429]
    assert refusal(sign_ins[-1]) == (429, "too_many_codes")  # the sign-in budget, spent by sign-ins
    assert len(sms_outbox) == 10 + 5
    tokens = make_api().post(
        "/api/v1/auth/token/",
        {"challenge_id": sign_ins[4].json()["challenge_id"], "code": last_code(sms_outbox)},
    )
    assert tokens.status_code == 200


def test_a_crowd_spending_an_accounts_link_budget_never_blocks_its_holder(
    make_api, sms_outbox, settings
):
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    settings.LINK_HOURLY_LIMIT_PER_ACCOUNT = 3
    home = ConsumerAccountFactory(registered_mobile=OWNER_PHONE)
    crowd = [
        link_start(make_api(UserFactory()), home.utility.code, home.consumer_id).status_code
        for _ in range(4)
    ]
    stranger = link_start(make_api(UserFactory()), home.utility.code, home.consumer_id)

    holder = make_api(UserFactory(phone=OWNER_PHONE))
    started = link_start(holder, home.utility.code, home.consumer_id)
    confirmed = holder.post(
        "/api/v1/links/confirm/",
        {"challenge_id": started.json()["challenge_id"], "code": last_code(sms_outbox)},
    )

    assert crowd == [202] * 3 + [429]
    assert refusal(stranger) == (429, "too_many_codes")
    assert started.status_code == 202 and confirmed.status_code == 201, confirmed.json()
    assert AccountLink.objects.filter(account=home, user__phone=OWNER_PHONE).exists()


def test_sign_ins_do_not_spend_the_link_budgets(make_api, sms_outbox, settings):
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    settings.OTP_HOURLY_LIMIT_PER_CLIENT = 2
    user = UserFactory(phone=OWNER_PHONE)
    home = ConsumerAccountFactory(registered_mobile=OWNER_PHONE)
    anonymous, me = make_api(), make_api(user)
    for _ in range(3):
        anonymous.post("/api/v1/auth/code/", {"phone": OWNER_PHONE}, REMOTE_ADDR="203.0.113.9")

    linked = link_start(me, home.utility.code, home.consumer_id, REMOTE_ADDR="203.0.113.9")

    assert refusal(anonymous.responses[-1]) == (429, "too_many_codes")
    assert linked.status_code == 202


# --- Link starts: per user and per client ---------------------------------------------------


def test_link_starts_are_throttled_per_user(make_api, sms_outbox, settings):
    settings.LINK_HOURLY_LIMIT_PER_USER = 3
    accounts = ConsumerAccountFactory.create_batch(3)
    utility = accounts[0].utility.code
    asked = [a.consumer_id for a in accounts[:2]] + ["99990001", accounts[2].consumer_id]
    me, someone_else = make_api(UserFactory()), make_api(UserFactory())

    answers = [
        link_start(me, utility, consumer_id, REMOTE_ADDR=f"198.51.100.{n}")
        for n, consumer_id in enumerate(asked)
    ]
    elsewhere = link_start(someone_else, utility, accounts[2].consumer_id)

    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert refusal(answers[-1]) == (429, "too_many_codes")
    assert 0 < int(answers[-1]["Retry-After"]) <= 3601
    assert answers[-1]["Retry-After"] == str(answers[-1].json()["error"]["retry_after"])
    assert elsewhere.status_code == 202
    assert [m.to for m in sms_outbox] == [a.registered_mobile for a in accounts]


def test_link_starts_are_throttled_per_client_address(make_api, sms_outbox, settings):
    settings.LINK_HOURLY_LIMIT_PER_CLIENT = 3
    account = ConsumerAccountFactory()
    utility, consumer_id = account.utility.code, account.consumer_id

    answers = [
        link_start(make_api(UserFactory()), utility, consumer_id, REMOTE_ADDR="203.0.113.9")
        for _ in range(4)
    ]
    elsewhere = link_start(
        make_api(UserFactory()), utility, consumer_id, REMOTE_ADDR="198.51.100.7"
    )
    sign_in = make_api().post(
        "/api/v1/auth/code/", {"phone": OWNER_PHONE}, REMOTE_ADDR="203.0.113.9"
    )

    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert refusal(answers[-1]) == (429, "too_many_codes")
    assert int(answers[-1]["Retry-After"]) > 0
    assert elsewhere.status_code == 202
    assert sign_in.status_code == 202  # the address's sign-in budget is its own


@pytest.mark.parametrize("behind_our_proxy", [True, False])
def test_the_client_address_is_read_as_the_sign_in_throttle_reads_it(
    make_api, sms_outbox, settings, behind_our_proxy
):
    settings.USE_X_FORWARDED_FOR = behind_our_proxy
    settings.LINK_HOURLY_LIMIT_PER_CLIENT = 2
    account = ConsumerAccountFactory()

    def start(forwarded_for: str):
        return link_start(
            make_api(UserFactory()),
            account.utility.code,
            account.consumer_id,
            REMOTE_ADDR="10.0.0.1",
            HTTP_X_FORWARDED_FOR=f"{forwarded_for}, 10.0.0.1",
        ).status_code

    answers = [start("203.0.113.1"), start("203.0.113.1"), start("203.0.113.1")]
    other_client = start("203.0.113.2")

    assert answers == [202, 202, 429]
    # Behind our proxy each caller has its own budget; otherwise the header is the caller's word.
    assert other_client == (202 if behind_our_proxy else 429)


# --- Unknown and known consumer ids answer alike --------------------------------------------


@pytest.fixture
def known(db):
    return ConsumerAccountFactory(consumer_id="70000001", registered_mobile=OWNER_PHONE)


@pytest.fixture(params=["unknown", "another_utilitys", "closed"])
def missing(request, known) -> str:
    """A consumer id asked for at the known account's utility with no open account behind it."""
    if request.param == "another_utilitys":
        other = UtilityFactory(**SAUDI)
        return ConsumerAccountFactory(utility=other, consumer_id="70000002").consumer_id
    if request.param == "closed":
        return ConsumerAccountFactory(
            utility=known.utility, consumer_id="70000003", status="closed"
        ).consumer_id
    return "70000004"


def test_a_missing_account_is_answered_like_a_real_one(make_api, sms_outbox, known, missing):
    utility = known.utility.code
    real = link_start(make_api(UserFactory()), utility, known.consumer_id)
    texted = list(sms_outbox)
    unreal = link_start(make_api(UserFactory()), utility, missing)

    assert (real.status_code, unreal.status_code) == (202, 202)
    assert real.json().keys() == unreal.json().keys() == {"challenge_id", "expires_in", "resend_in"}
    assert {k: v for k, v in real.json().items() if k != "challenge_id"} == {
        k: v for k, v in unreal.json().items() if k != "challenge_id"
    }
    assert [m.to for m in texted] == [OWNER_PHONE]
    assert sms_outbox == texted  # nobody is texted for the missing account


def test_a_missing_account_spends_the_same_budgets(make_api, sms_outbox, settings, known, missing):
    settings.LINK_HOURLY_LIMIT_PER_ACCOUNT = 2
    settings.LINK_HOURLY_LIMIT_PER_USER = 3
    utility = known.utility.code

    def crowd(consumer_id: str) -> list[tuple[int, str | None]]:
        answers = [link_start(make_api(UserFactory()), utility, consumer_id) for _ in range(3)]
        return [(a.status_code, a.json().get("error", {}).get("code")) for a in answers]

    def one_user(consumer_id: str) -> list[int]:
        api = make_api(UserFactory())
        others = ConsumerAccountFactory.create_batch(2, utility=known.utility)
        asked = [consumer_id, *[o.consumer_id for o in others], consumer_id]
        return [link_start(api, utility, c).status_code for c in asked]

    assert (
        crowd(known.consumer_id) == crowd(missing) == [(202, None)] * 2 + [(429, "too_many_codes")]
    )
    settings.LINK_HOURLY_LIMIT_PER_ACCOUNT = 10
    assert one_user(known.consumer_id) == one_user(missing) == [202, 202, 202, 429]
    assert OneTimeCode.objects.filter(account=None, purpose="link").count() == 2 + 1


def test_a_missing_accounts_start_does_the_same_database_work(db, known, missing):
    def queries(consumer_id: str) -> list[str]:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_issue(user=UserFactory()).access}")
        with CaptureQueriesContext(connection) as captured:
            response = client.post(
                "/api/v1/links/",
                {"utility": known.utility.code, "consumer_id": consumer_id},
                format="json",
            )
        assert response.status_code == 202
        # Each statement as its verb and tables (values and savepoint names differ per call).
        return [
            " ".join(re.findall(r'^\w+|(?:FROM|UPDATE|INTO|JOIN) "\w+"', q["sql"]))
            for q in captured.captured_queries
        ]

    # The same statements, in the same order: no early return a stopwatch could see.
    assert queries(known.consumer_id) == queries(missing)


def test_any_code_on_a_missing_accounts_challenge_fails_like_a_wrong_code(
    make_api, sms_outbox, known, missing
):
    def tries(consumer_id: str) -> list[tuple]:
        api = make_api(UserFactory())
        start = link_start(api, known.utility.code, consumer_id).json()
        right = last_code(sms_outbox) if sms_outbox else "000000"
        wrong = [f"{n:06d}" for n in range(6) if f"{n:06d}" != right][:5]
        answers = [
            api.post(
                "/api/v1/links/confirm/", {"challenge_id": start["challenge_id"], "code": code}
            )
            for code in [*wrong, right]
        ]
        return [
            (a.status_code, a.json()["error"]["code"], a.json()["error"].get("attempts_left"))
            for a in answers
        ]

    expected = [(400, "wrong_code", n) for n in (4, 3, 2, 1)] + [(400, "code_locked", None)] * 2
    assert tries(known.consumer_id) == tries(missing) == expected
    assert not AccountLink.objects.exists()
    assert sorted(OneTimeCode.objects.values_list("attempts", flat=True)) == [5, 5]


def test_a_missing_accounts_challenge_is_nobody_elses(make_api, sms_outbox, known, missing):
    start = link_start(make_api(UserFactory()), known.utility.code, missing).json()

    stolen = make_api(UserFactory()).post(
        "/api/v1/links/confirm/", {"challenge_id": start["challenge_id"], "code": "123456"}
    )

    assert refusal(stolen) == (404, "challenge_not_found")
