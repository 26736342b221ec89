from __future__ import annotations

import pytest

from accounts.models import AccountLink
from tests.accounts.factories import (
    AccountLinkFactory,
    ConsumerAccountFactory,
    UserFactory,
    UtilityFactory,
)
from tests.conftest import last_code


def link(api, outbox, account):
    start = api.post(
        "/api/v1/links/", {"utility": account.utility.code, "consumer_id": account.consumer_id}
    )
    assert start.status_code == 202, start.json()
    code = last_code(outbox, to=account.registered_mobile)
    return start, api.post(
        "/api/v1/links/confirm/", {"challenge_id": start.json()["challenge_id"], "code": code}
    )


def test_it_sends_the_code_to_the_registered_mobile_not_the_users(make_api, sms_outbox):
    user = UserFactory(phone="+96560000001")
    account = ConsumerAccountFactory(registered_mobile="+96550001234")

    start, confirm = link(make_api(user), sms_outbox, account)

    assert "sent_to" not in start.json()  # an unknown id's answer could not show one
    assert [m.to for m in sms_outbox] == ["+96550001234"]
    assert account.consumer_id in sms_outbox[0].body
    assert confirm.status_code == 201
    assert confirm.json()["consumer_id"] == account.consumer_id
    assert confirm.json()["registered_mobile"] == "+965 ••••1234"
    assert AccountLink.objects.get().verified_mobile == "+96550001234"


def test_one_user_links_three_apartments(make_api, sms_outbox, settings):
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    user = UserFactory()
    apartments = ConsumerAccountFactory.create_batch(3, registered_mobile="+96550001234")
    api = make_api(user)

    for apartment in apartments:
        assert link(api, sms_outbox, apartment)[1].status_code == 201

    listed = api.get("/api/v1/links/").json()
    assert [item["consumer_id"] for item in listed] == [a.consumer_id for a in apartments]


def test_an_account_can_be_linked_by_several_users(make_api, sms_outbox):
    parent_account = ConsumerAccountFactory(
        utility=UtilityFactory(
            code="in-mpcz",
            country="IN",
            timezone="Asia/Kolkata",
            currency="INR",
            currency_minor_unit=2,
        ),
        registered_mobile="+919812345670",
    )
    parent, child = UserFactory(phone="+919812345670"), UserFactory(phone="+919812345679")

    assert link(make_api(parent), sms_outbox, parent_account)[1].status_code == 201
    assert link(make_api(child), sms_outbox, parent_account)[1].status_code == 201

    assert AccountLink.objects.filter(account=parent_account).count() == 2


def test_linking_twice_is_refused(make_api, sms_outbox):
    existing = AccountLinkFactory()
    response = make_api(existing.user).post(
        "/api/v1/links/",
        {"utility": existing.account.utility.code, "consumer_id": existing.account.consumer_id},
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_linked"
    assert sms_outbox == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"utility": "xx-none", "consumer_id": "10020000"}, 400, "unknown_utility"),
        ({"utility": "kw-mew"}, 400, "invalid"),
        ({"utility": "kw mew!", "consumer_id": "1"}, 400, "invalid"),
        ({"utility": "kw-mew", "consumer_id": "x" * 33}, 400, "invalid"),
    ],
)
def test_it_refuses_bad_link_requests(make_api, sms_outbox, body, status, code):
    ConsumerAccountFactory(consumer_id="10020000")
    response = make_api(UserFactory()).post("/api/v1/links/", body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert sms_outbox == []


def test_a_closed_account_cannot_be_linked(make_api, sms_outbox):
    """Answered like an unknown id (tests/accounts/test_sign_in_abuse.py): no code, no link."""
    account = ConsumerAccountFactory(status="closed")
    api = make_api(UserFactory())
    start = api.post(
        "/api/v1/links/", {"utility": account.utility.code, "consumer_id": account.consumer_id}
    )
    confirm = api.post(
        "/api/v1/links/confirm/", {"challenge_id": start.json()["challenge_id"], "code": "123456"}
    )

    assert start.status_code == 202
    assert sms_outbox == []
    assert (confirm.status_code, confirm.json()["error"]["code"]) == (400, "wrong_code")
    assert not AccountLink.objects.exists()


def test_unlink_hides_the_account_and_allows_linking_again(make_api, sms_outbox):
    mine = AccountLinkFactory()
    api = make_api(mine.user)

    assert api.delete(f"/api/v1/links/{mine.pk}/").status_code == 204
    assert api.get("/api/v1/links/").json() == []
    assert api.get(f"/api/v1/links/{mine.pk}/").status_code == 404
    assert api.delete(f"/api/v1/links/{mine.pk}/").status_code == 404
    assert link(api, sms_outbox, mine.account)[1].status_code == 201
    assert AccountLink.objects.filter(user=mine.user).count() == 2  # the old row stays for audit


class TestOwnership:
    """Owner, another consumer, staff and anonymous, for every endpoint that takes an id."""

    @pytest.fixture
    def link_row(self):
        return AccountLinkFactory()

    def test_owner_reads_the_link(self, make_api, link_row):
        assert make_api(link_row.user).get(f"/api/v1/links/{link_row.pk}/").status_code == 200

    @pytest.mark.parametrize("who", ["other", "staff"])
    def test_others_cannot_read_or_unlink(self, make_api, link_row, who):
        intruder = UserFactory(is_staff=who == "staff")
        api = make_api(intruder)

        assert api.get(f"/api/v1/links/{link_row.pk}/").status_code == 404
        assert api.delete(f"/api/v1/links/{link_row.pk}/").status_code == 404
        assert api.get("/api/v1/links/").json() == []
        link_row.refresh_from_db()
        assert link_row.unlinked_at is None

    def test_anonymous_cannot_read_or_unlink(self, make_api, link_row):
        api = make_api()
        assert api.get(f"/api/v1/links/{link_row.pk}/").status_code == 401
        assert api.delete(f"/api/v1/links/{link_row.pk}/").status_code == 401
        assert api.get("/api/v1/links/").status_code == 401

    def test_another_user_cannot_confirm_my_challenge(self, make_api, sms_outbox):
        account = ConsumerAccountFactory()
        me, intruder = UserFactory(), UserFactory()
        start = (
            make_api(me)
            .post(
                "/api/v1/links/",
                {"utility": account.utility.code, "consumer_id": account.consumer_id},
            )
            .json()
        )

        stolen = make_api(intruder).post(
            "/api/v1/links/confirm/",
            {"challenge_id": start["challenge_id"], "code": last_code(sms_outbox)},
        )

        assert stolen.status_code == 404
        assert not AccountLink.objects.exists()
        # and the owner's code was not spent by the intruder
        mine = make_api(me).post(
            "/api/v1/links/confirm/",
            {"challenge_id": start["challenge_id"], "code": last_code(sms_outbox)},
        )
        assert mine.status_code == 201

    def test_a_sign_in_code_cannot_confirm_a_link(self, make_api, sms_outbox):
        account = ConsumerAccountFactory(registered_mobile="+96550001234")
        attacker = UserFactory()
        anonymous = make_api()
        sign_in = anonymous.post("/api/v1/auth/code/", {"phone": "+96550001234"}).json()

        response = make_api(attacker).post(
            "/api/v1/links/confirm/",
            {"challenge_id": sign_in["challenge_id"], "code": last_code(sms_outbox)},
        )

        assert response.status_code == 404
        assert not AccountLink.objects.filter(account=account).exists()
