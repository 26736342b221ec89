"""Sharing an account: the holder invites a number with rights (view, pay, alerts), changes and
removes them; the invitee accepts or declines; every share ends with its holder's link (unlink, a
new registered mobile, a move-out)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import AccountLink, AccountShare
from billing import moves
from billing.gateway import GATEWAYS
from billing.ledger import ledger_post
from billing.models import TopUp
from notifications.models import Notification
from tests.accounts.factories import AccountLinkFactory, UserFactory
from tests.accounts.factories_shares import AccountShareFactory, settle, shared_link
from tests.billing.factories import flat_tariff, policy
from tests.meters.factories import MeterFactory, head_end_token

SIM = GATEWAYS["simulated"]
SINCE = datetime(2026, 3, 1, 21, tzinfo=UTC)


@pytest.fixture
def meter(db):
    meter = MeterFactory(account__name="Fatima Al Sabah", account__registered_mobile="+96550001231")
    flat_tariff(meter.utility)
    return meter


@pytest.fixture
def holder_link(meter):
    return AccountLinkFactory(
        account=meter.account, verified_mobile="+96550001231", visible_from=SINCE
    )


@pytest.fixture
def holder(make_api, holder_link):
    return make_api(holder_link.user)


@pytest.fixture
def invitee(db):
    return UserFactory(phone="+96566123456", username="+96566123456")


def shares_path(link, share_id=None):
    base = f"/api/v1/accounts/{link.account_id}/shares/"
    return f"{base}{share_id}/" if share_id else base


def invite(api, link, mobile="+96566123456", **rights):
    return api.post(shares_path(link), {"mobile": mobile, **rights})


def accept(api, share_id):
    return api.post(f"/api/v1/share-invitations/{share_id}/accept/")


def readable(api, meter) -> list[int]:
    """The status of each read a viewer makes of the account and its meter."""
    account = meter.account
    return [
        api.get(path).status_code
        for path in (
            f"/api/v1/accounts/{account.pk}/balance/",
            f"/api/v1/accounts/{account.pk}/statement/",
            f"/api/v1/meters/{meter.pk}/consumption/?period_from=2026-11-01&period_to=2026-11-02",
        )
    ]


def top_up(api, account, key="k-1", amount="1.500"):
    return api.post(
        f"/api/v1/accounts/{account.pk}/topups/",
        {"amount": amount},
        HTTP_IDEMPOTENCY_KEY=key,
    )


def test_a_holder_shares_with_a_viewer_who_sees_but_cannot_pay_or_invite(
    holder, holder_link, invitee, make_api, meter
):
    created = invite(holder, holder_link, mobile="66123456")  # national, read in Kuwait

    assert created.status_code == 201, created.json()
    share = created.json()
    assert share["mobile"] == "+965 ••••3456" and share["status"] == "pending"
    assert (share["can_view"], share["can_pay"], share["receives_alerts"]) == (True, False, False)
    told = Notification.objects.get(user=invitee, category="share_invitation")
    assert "F***** A* S****" in told.body and meter.account.consumer_id in told.body
    assert told.data["share_id"] == str(share["id"])

    viewer = make_api(invitee)
    assert readable(viewer, meter) == [404, 404, 404]
    listed = viewer.get("/api/v1/share-invitations/").json()
    assert [(i["id"], i["holder"], i["consumer_id"]) for i in listed] == [
        (share["id"], "F***** A* S****", meter.account.consumer_id)
    ]
    accepted = accept(viewer, share["id"])
    assert accepted.status_code == 200, accepted.json()
    link = AccountLink.objects.get(pk=accepted.json()["id"])
    assert (link.role, link.shared_by, link.verified_mobile) == (
        "shared",
        holder_link,
        invitee.phone,
    )
    assert link.visible_from == SINCE  # never more than the holder sees
    assert accept(viewer, share["id"]).json()["id"] == link.pk  # accepting twice: the same link
    assert AccountLink.objects.filter(user=invitee).count() == 1
    assert viewer.get("/api/v1/share-invitations/").json() == []

    assert readable(viewer, meter) == [200, 200, 200]
    mine = viewer.get("/api/v1/links/").json()
    assert [(m["role"], m["can_view"], m["can_pay"]) for m in mine] == [("shared", True, False)]
    assert holder.get("/api/v1/links/").json()[0]["role"] == "holder"
    refused = top_up(viewer, meter.account)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "share_not_allowed"
    assert invite(viewer, holder_link, mobile="+96566999999").status_code == 403
    assert viewer.get(shares_path(holder_link)).status_code == 403
    assert TopUp.objects.count() == 0 and AccountShare.objects.count() == 1


def test_a_view_and_pay_share_can_top_up(holder_link, make_api, meter):
    link = shared_link(holder_link, can_pay=True)
    response = top_up(make_api(link.user), meter.account)
    assert response.status_code == 201, response.json()
    assert TopUp.objects.get().user == link.user


def test_an_alerts_share_hears_a_low_balance_and_a_view_only_one_does_not(
    holder, holder_link, make_api, meter
):
    alerted = shared_link(holder_link, receives_alerts=True)
    viewer = shared_link(holder_link)
    top_up(holder, meter.account, amount="1.500")  # below Kuwait's 2.000 KWD default alert level
    settle(make_api, TopUp.objects.get())

    def categories(link):
        return set(Notification.objects.filter(user=link.user).values_list("category", flat=True))

    assert {"low_balance", "topup_received"} <= categories(alerted)
    assert {"low_balance", "topup_received"} <= categories(holder_link)
    assert categories(viewer) == set()


def test_an_invitation_to_a_number_without_the_app_is_one_sms_in_the_utilitys_language(
    holder, holder_link, sms_outbox, meter
):
    assert invite(holder, holder_link, mobile="+96566777888").status_code == 201
    assert [m.to for m in sms_outbox] == ["+96566777888"]
    assert meter.account.consumer_id in sms_outbox[0].body
    assert "شارك" in sms_outbox[0].body  # Kuwait's default language is Arabic
    assert Notification.objects.count() == 0


def test_the_holder_changes_rights_and_the_live_link_follows_at_once(
    holder, holder_link, make_api, meter
):
    link = shared_link(holder_link)
    share = AccountShare.objects.get(link=link)
    viewer = make_api(link.user)
    assert top_up(viewer, meter.account).status_code == 403

    changed = holder.patch(shares_path(holder_link, share.pk), {"can_pay": True})

    assert changed.status_code == 200 and changed.json()["can_pay"] is True
    assert top_up(viewer, meter.account).status_code == 201
    hidden = holder.patch(shares_path(holder_link, share.pk), {"can_view": False})
    assert hidden.status_code == 200
    assert readable(viewer, meter) == [404, 404, 404]
    nothing = holder.patch(shares_path(holder_link, share.pk), {"can_pay": False})
    assert nothing.status_code == 400 and nothing.json()["error"]["code"] == "no_rights"
    link.refresh_from_db()
    assert (link.can_view, link.can_pay) == (False, True)


def test_revoking_an_accepted_share_ends_its_link_and_tells_the_person(
    holder, holder_link, make_api, meter
):
    link = shared_link(holder_link)
    share = AccountShare.objects.get(link=link)
    viewer = make_api(link.user)

    assert holder.delete(shares_path(holder_link, share.pk)).status_code == 204

    link.refresh_from_db()
    share.refresh_from_db()
    assert link.end_reason == "share_ended" and link.unlinked_at is not None
    assert share.status == "revoked" and share.ended_at is not None
    assert readable(viewer, meter) == [404, 404, 404]
    assert Notification.objects.filter(user=link.user, category="share_ended").count() == 1
    assert holder.delete(shares_path(holder_link, share.pk)).status_code == 204  # idempotent
    assert Notification.objects.filter(category="share_ended").count() == 1


def test_a_revoked_invitation_cannot_be_accepted(holder, holder_link, invitee, make_api):
    share_id = invite(holder, holder_link).json()["id"]
    assert holder.delete(shares_path(holder_link, share_id)).status_code == 204
    refused = accept(make_api(invitee), share_id)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "share_closed"
    assert not AccountLink.objects.filter(user=invitee).exists()


def test_declining_an_invitation(holder, holder_link, invitee, make_api):
    share_id = invite(holder, holder_link).json()["id"]
    viewer = make_api(invitee)
    declined = viewer.post(f"/api/v1/share-invitations/{share_id}/decline/")
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    assert viewer.post(f"/api/v1/share-invitations/{share_id}/decline/").status_code == 200
    assert accept(viewer, share_id).status_code == 409
    assert viewer.get("/api/v1/share-invitations/").json() == []
    # Declined, the number may be invited again.
    assert invite(holder, holder_link).status_code == 201


def test_an_expired_invitation_is_gone(holder_link, invitee, make_api):
    share = AccountShareFactory(
        holder_link=holder_link,
        phone=invitee.phone,
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    viewer = make_api(invitee)
    assert viewer.get("/api/v1/share-invitations/").json() == []
    refused = accept(viewer, share.pk)
    assert refused.status_code == 410 and refused.json()["error"]["code"] == "invitation_expired"
    share.refresh_from_db()
    assert share.status == "expired" and not AccountLink.objects.filter(user=invitee).exists()


def test_someone_elses_invitation_is_not_found(holder, holder_link, invitee, make_api):
    share_id = invite(holder, holder_link).json()["id"]
    for api in (make_api(UserFactory()), holder, make_api(UserFactory(is_staff=True))):
        assert accept(api, share_id).status_code == 404
        assert api.post(f"/api/v1/share-invitations/{share_id}/decline/").status_code == 404
    assert accept(make_api(), share_id).status_code == 401
    assert make_api().get("/api/v1/share-invitations/").status_code == 401
    assert AccountShare.objects.get().status == "pending"


def test_a_shared_user_leaving_ends_the_share(holder_link, make_api, meter):
    link = shared_link(holder_link)
    viewer = make_api(link.user)
    assert viewer.delete(f"/api/v1/links/{link.pk}/").status_code == 204
    assert AccountShare.objects.get(link=link).status == "ended"
    assert readable(viewer, meter) == [404, 404, 404]
    holder_link.refresh_from_db()
    assert holder_link.unlinked_at is None


def assert_share_ended(api, link, meter):
    link.refresh_from_db()
    assert link.end_reason == "share_ended", link.end_reason  # never account_closed
    assert AccountShare.objects.get(link=link).status == "ended"
    assert readable(api, meter) == [404, 404, 404]
    assert api.get("/api/v1/links/").json() == []
    assert Notification.objects.filter(user=link.user, category="share_ended").count() == 1


def test_the_holder_unlinking_ends_every_share_and_pending_invitation(
    holder, holder_link, make_api, meter
):
    link = shared_link(holder_link)
    pending = AccountShareFactory(holder_link=holder_link)
    assert holder.delete(f"/api/v1/links/{holder_link.pk}/").status_code == 204
    assert_share_ended(make_api(link.user), link, meter)
    pending.refresh_from_db()
    assert pending.status == "ended"


def test_the_viewer_loses_access_at_the_holders_mobile_change(holder_link, make_api, meter):
    link = shared_link(holder_link, can_pay=True, receives_alerts=True)
    system = make_api()
    system.client.credentials(HTTP_AUTHORIZATION=f"Bearer {head_end_token(meter.utility)}")

    changed = system.patch(
        f"/api/v1/utility/accounts/{meter.account.consumer_id}/",
        {"registered_mobile": "+96599887766"},
    )

    assert changed.status_code == 200, changed.json()
    assert_share_ended(make_api(link.user), link, meter)
    holder_link.refresh_from_db()
    assert holder_link.end_reason == "mobile_changed"


def test_the_viewer_loses_access_at_move_out_while_the_holder_keeps_the_history(
    holder, holder_link, make_api, meter
):
    link = shared_link(holder_link)
    ledger_post(
        account=meter.account, kind="topup", amount=Decimal("5.000"), key="t1", description="x"
    )
    viewer = make_api(link.user)
    assert readable(viewer, meter) == [200, 200, 200]

    with holder._capture(execute=True):
        moves.move_out(account=meter.account)

    assert_share_ended(viewer, link, meter)
    holder_link.refresh_from_db()
    assert holder_link.end_reason == "account_closed"
    assert holder.get(f"/api/v1/accounts/{meter.account.pk}/statement/").status_code == 200


def test_a_pending_invitation_ends_with_the_holders_link_and_cannot_be_accepted(
    holder, holder_link, invitee, make_api, meter
):
    share_id = invite(holder, holder_link).json()["id"]
    with holder._capture(execute=True):
        moves.move_out(account=meter.account)
    assert AccountShare.objects.get(pk=share_id).status == "ended"
    assert accept(make_api(invitee), share_id).status_code == 409
    assert not AccountLink.objects.filter(user=invitee).exists()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"mobile": "HOLDER"}, 400, "share_self"),
        ({"mobile": "12"}, 400, "invalid_phone"),
        ({"mobile": "+96522212345"}, 400, "not_a_mobile"),  # a Kuwaiti landline
        ({"can_view": False}, 400, "no_rights"),
        ({"mobile": "SHARING"}, 409, "already_shared"),
        ({"mobile": "LINKED"}, 409, "already_shared"),
    ],
)
def test_a_bad_invitation_is_refused_and_writes_nothing(
    holder, holder_link, meter, sms_outbox, body, status, code
):
    sharing = AccountShareFactory(holder_link=holder_link, phone="+96566000111")
    linked = AccountLinkFactory(account=meter.account).user
    mobile = {
        "HOLDER": holder_link.user.phone,
        "SHARING": sharing.phone,
        "LINKED": linked.phone,
    }.get(body.get("mobile"), body.get("mobile", "+96566123456"))

    response = invite(holder, holder_link, **{**body, "mobile": mobile})

    assert response.status_code == status, response.json()
    assert response.json()["error"]["code"] == code
    assert AccountShare.objects.count() == 1 and not sms_outbox
    assert not Notification.objects.filter(category="share_invitation").exists()


def test_no_more_than_the_policys_shares_are_open(holder, holder_link, meter):
    policy(meter.utility, max_shares_per_account=2)
    shared_link(holder_link)
    pending = AccountShareFactory(holder_link=holder_link)
    AccountShareFactory(  # lapsed: it no longer counts
        holder_link=holder_link, expires_at=timezone.now() - timedelta(days=1)
    )

    refused = invite(holder, holder_link)

    assert refused.status_code == 409 and refused.json()["error"]["code"] == "too_many_shares"
    assert AccountShare.objects.count() == 3
    assert holder.delete(shares_path(holder_link, pending.pk)).status_code == 204
    assert invite(holder, holder_link).status_code == 201


def test_sharing_off_by_policy_is_refused(holder, holder_link, meter):
    policy(meter.utility, shared_access_enabled=False)
    refused = invite(holder, holder_link)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "sharing_unavailable"
    assert AccountShare.objects.count() == 0


@pytest.mark.parametrize("method", ["get", "post", "patch", "delete"])
def test_only_the_holder_manages_shares(holder, holder_link, make_api, method):
    share = AccountShareFactory(holder_link=holder_link)
    shared_user = shared_link(holder_link).user
    path = (
        shares_path(holder_link)
        if method in ("get", "post")
        else shares_path(holder_link, share.pk)
    )
    body = {"mobile": "+96566555444"} if method == "post" else {"can_pay": True}

    def call(api):
        if method == "get":
            return api.get(path)
        if method == "delete":
            return api.delete(path)
        return getattr(api, method)(path, body)

    assert call(make_api(UserFactory())).status_code == 404
    assert call(make_api(UserFactory(is_staff=True, is_superuser=True))).status_code == 404
    assert call(make_api()).status_code == 401
    refused = call(make_api(shared_user))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "share_not_allowed"
    share.refresh_from_db()
    assert (share.status, share.can_pay, AccountShare.objects.count()) == ("pending", False, 2)
    assert call(holder).status_code in (200, 201, 204)


def test_the_holder_lists_the_accounts_shares(holder, holder_link):
    link = shared_link(holder_link)
    pending = AccountShareFactory(holder_link=holder_link)
    other_holder = AccountShareFactory()  # another account's
    listed = holder.get(shares_path(holder_link)).json()
    assert [s["id"] for s in listed["results"]] == [
        pending.pk,
        AccountShare.objects.get(link=link).pk,
    ]
    assert other_holder.pk not in [s["id"] for s in listed["results"]]


def test_invitations_are_budgeted_per_holder_and_per_number_revoked_ones_included(
    holder, holder_link, meter, settings
):
    """Invite, revoke, invite again: each sends an SMS or an alert, so each counts. A number gets
    at most SHARE_INVITATIONS_PER_NUMBER_DAY a day; a holder sends at most
    SHARE_INVITATIONS_PER_HOLDER_HOUR an hour. Refused with 429 and Retry-After; nothing written."""
    settings.SHARE_INVITATIONS_PER_NUMBER_DAY = 3
    settings.SHARE_INVITATIONS_PER_HOLDER_HOUR = 4
    for _ in range(3):
        share = invite(holder, holder_link).json()
        assert holder.delete(shares_path(holder_link, share["id"])).status_code == 204

    same_number = invite(holder, holder_link)
    other_number = invite(holder, holder_link, mobile="+96566123457")
    past_the_hour = invite(holder, holder_link, mobile="+96566123458")

    assert same_number.status_code == 429
    assert same_number.json()["error"]["code"] == "too_many_invitations"
    assert int(same_number["Retry-After"]) > 0
    assert other_number.status_code == 201  # the holder's fourth this hour
    assert past_the_hour.status_code == 429
    assert AccountShare.objects.count() == 4
