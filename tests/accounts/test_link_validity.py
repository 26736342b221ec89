"""A link lives only while it is true: a new registered mobile ends the old number's links at once,
on every path that changes it (CSV import, admin edit, the utility's API); an unrelated edit
keeps them; the new holder sees the account only from the change on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from accounts.models import AccountLink, ConsumerAccount, OneTimeCode
from accounts.services import consumer_accounts_import, consumer_accounts_read_csv
from billing import moves
from billing.ledger import ledger_post
from meters import services as meter_services
from notifications.models import Notification
from tests.accounts.factories import AccountLinkFactory, UserFactory
from tests.conftest import last_code
from tests.meters.factories import MeterFactory, head_end_token

Q = timedelta(minutes=15)
NEW_NUMBER = "+96599887766"


@pytest.fixture
def meter(db):
    return MeterFactory(account__consumer_id="10020031", account__registered_mobile="+96550001231")


@pytest.fixture
def old_holder(make_api, meter):
    link = AccountLinkFactory(account=meter.account, verified_mobile="+96550001231")
    return make_api(link.user)


def readings(meter, start, count):
    rows = [
        ({"index": i}, meter.serial, (start + i * Q).isoformat(), 500, "actual")
        for i in range(count)
    ]
    meter_services.readings_ingest(utility=meter.utility, readings=rows, source="test")


def assert_old_holder_sees_nothing(api, meter):
    account = meter.account
    assert api.get("/api/v1/links/").json() == []
    for path in (
        f"/api/v1/accounts/{account.pk}/balance/",
        f"/api/v1/accounts/{account.pk}/statement/",
        f"/api/v1/meters/{meter.pk}/",
        f"/api/v1/meters/{meter.pk}/consumption/?period_from=2026-11-01&period_to=2026-11-02",
        f"/api/v1/meters/{meter.pk}/export/?period_from=2026-11-01&period_to=2026-11-02",
    ):
        response = api.get(path)
        assert response.status_code == 404, (path, response.status_code)
    user = AccountLink.objects.get(account=account, verified_mobile="+96550001231").user
    told = Notification.objects.get(user=user, category="link_ended")
    assert account.consumer_id in told.body


def import_csv(utility, text: str):
    rows, errors = consumer_accounts_read_csv(data=text.encode())
    assert not errors
    return consumer_accounts_import(utility=utility, rows=rows)


def test_a_csv_import_with_a_new_tenants_number_ends_the_old_link(old_holder, meter):
    report = import_csv(
        meter.utility, f"consumer_id,registered_mobile,name\n10020031,{NEW_NUMBER},New Tenant\n"
    )
    assert report.updated == 1
    link = AccountLink.objects.get(account=meter.account)
    assert (link.end_reason, link.unlinked_at is not None) == ("mobile_changed", True)
    assert_old_holder_sees_nothing(old_holder, meter)


def test_an_admin_edit_of_the_number_ends_the_old_link(client, old_holder, meter):
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    account = meter.account
    form = (
        client.get(f"/admin/accounts/consumeraccount/{account.pk}/change/")
        .context["adminform"]
        .form
    )
    data = {
        **{k: v for k, v in form.initial.items() if v is not None},
        "registered_mobile": "99887766",  # national form: read as a Kuwaiti mobile
        "links-TOTAL_FORMS": 1,
        "links-INITIAL_FORMS": 1,
        "links-0-id": AccountLink.objects.get().pk,
        "links-0-account": account.pk,
        "shares-TOTAL_FORMS": 0,
        "shares-INITIAL_FORMS": 0,
    }
    response = client.post(f"/admin/accounts/consumeraccount/{account.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    account.refresh_from_db()
    assert account.registered_mobile == NEW_NUMBER and account.registered_mobile_since
    assert_old_holder_sees_nothing(old_holder, meter)


def test_the_utilitys_api_changes_the_number_and_ends_the_old_link(make_api, old_holder, meter):
    system = make_api()
    system.client.credentials(HTTP_AUTHORIZATION=f"Bearer {head_end_token(meter.utility)}")
    path = f"/api/v1/utility/accounts/{meter.account.consumer_id}/"

    assert system.patch(path, {"registered_mobile": "12"}).status_code == 400
    assert system.patch("/api/v1/utility/accounts/nobody/", {"name": "X"}).status_code == 404
    changed = system.patch(path, {"registered_mobile": NEW_NUMBER})
    assert changed.status_code == 200, changed.json()
    assert (changed.json()["registered_mobile"], changed.json()["links_ended"]) == (NEW_NUMBER, 1)
    assert system.patch(path, {"registered_mobile": NEW_NUMBER}).json()["links_ended"] == 0
    assert_old_holder_sees_nothing(old_holder, meter)


def test_a_link_survives_an_unrelated_edit(make_api, old_holder, meter):
    account = meter.account
    import_csv(
        meter.utility,
        "consumer_id,registered_mobile,name,premises_address\n"
        "10020031,+96550001231,Fahad Al-Mutairi,Salmiya Block 10\n",
    )
    system_api = make_api()
    system_api.client.credentials(HTTP_AUTHORIZATION=f"Bearer {head_end_token(meter.utility)}")
    edited = system_api.patch(
        f"/api/v1/utility/accounts/{account.consumer_id}/",
        {"registered_mobile": "50001231", "name": "Fahad A."},
    )
    assert (edited.status_code, edited.json()["links_ended"]) == (200, 0)
    link = AccountLink.objects.get(account=account)
    assert link.unlinked_at is None
    assert old_holder.get(f"/api/v1/accounts/{account.pk}/balance/").status_code == 200
    assert [item["name"] for item in old_holder.get("/api/v1/links/").json()] == ["Fahad A."]


def test_a_code_sent_to_the_old_number_links_nothing_after_the_change(make_api, meter, sms_outbox):
    stranger = make_api(UserFactory())
    started = stranger.post(
        "/api/v1/links/", {"utility": meter.utility.code, "consumer_id": meter.account.consumer_id}
    )
    assert started.status_code == 202
    code = last_code(sms_outbox, "+96550001231")
    import_csv(
        meter.utility, f"consumer_id,registered_mobile,name\n10020031,{NEW_NUMBER},New Tenant\n"
    )
    confirmed = stranger.post(
        "/api/v1/links/confirm/",
        {"challenge_id": started.json()["challenge_id"], "code": code},
    )
    assert confirmed.status_code == 400
    assert not AccountLink.objects.exists()


def test_the_new_holder_sees_the_account_only_from_the_change_on(
    make_api, old_holder, meter, sms_outbox
):
    account = meter.account
    ledger_post(
        account=account, kind="topup", amount=Decimal("5.000"), key="old", description="Top-up"
    )
    readings(meter, datetime(2026, 11, 1, tzinfo=UTC), 8)
    import_csv(
        meter.utility, f"consumer_id,registered_mobile,name\n10020031,{NEW_NUMBER},New Tenant\n"
    )
    account.refresh_from_db()
    changed_at = account.registered_mobile_since

    newcomer = make_api(UserFactory())
    started = newcomer.post(
        "/api/v1/links/", {"utility": meter.utility.code, "consumer_id": account.consumer_id}
    )
    assert started.status_code == 202
    challenge = OneTimeCode.objects.get(pk=started.json()["challenge_id"])
    assert challenge.phone == NEW_NUMBER
    confirmed = newcomer.post(
        "/api/v1/links/confirm/",
        {"challenge_id": str(challenge.pk), "code": last_code(sms_outbox, NEW_NUMBER)},
    )
    assert confirmed.status_code == 201, confirmed.json()
    assert confirmed.json()["visible_from"] is not None

    statement = newcomer.get(f"/api/v1/accounts/{account.pk}/statement/").json()
    assert statement["count"] == 0  # the previous holder's top-up is theirs, not the newcomer's
    usage = newcomer.get(
        f"/api/v1/meters/{meter.pk}/consumption/",
        {"period_from": "2026-11-01T00:00:00Z", "period_to": "2026-11-01T02:00:00Z"},
    ).json()
    assert usage["total"]["energy_wh"] is None
    assert usage["total"]["outside_intervals"] == 8 and usage["total"]["expected_intervals"] == 0
    assert usage["tenancies"][0]["start"] == changed_at.astimezone(meter.utility.zone).isoformat()


def test_closing_an_account_leaves_its_holder_a_read_only_view(old_holder, meter):
    account = meter.account
    closing = "consumer_id,registered_mobile,name,status\n10020031,+96550001231,Fahad,closed\n"
    # An account holding a meter closes by a move-out, which settles its money, never by an edit.
    refused = import_csv(meter.utility, closing)
    assert [e.field for e in refused.errors] == ["status"] and "move it out" in refused.errors[
        0
    ].message
    moves.move_out(account=account)
    account.refresh_from_db()
    assert account.status == "closed" and account.closed_at is not None
    assert AccountLink.objects.get(account=account).end_reason == "account_closed"
    listed = old_holder.get("/api/v1/links/").json()
    assert [(item["account"], item["access"]) for item in listed] == [(account.pk, "read_only")]
    assert old_holder.get(f"/api/v1/accounts/{account.pk}/statement/").status_code == 200
    paid = old_holder.post(
        f"/api/v1/accounts/{account.pk}/topups/", {"amount": "1.000"}, HTTP_IDEMPOTENCY_KEY="k"
    )
    assert paid.status_code == 409
    # Putting the closed account away removes it from the app.
    assert old_holder.delete(f"/api/v1/links/{listed[0]['id']}/").status_code == 204
    assert old_holder.get("/api/v1/links/").json() == []
    assert old_holder.get(f"/api/v1/accounts/{account.pk}/statement/").status_code == 404
    assert ConsumerAccount.objects.get(pk=account.pk).status == "closed"
    # And a closed account is not reopened by a later edit: its history stays its holder's.
    reopened = import_csv(meter.utility, closing.replace(",closed", ",active"))
    assert "cannot be reopened" in reopened.errors[0].message
