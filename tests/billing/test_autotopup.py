"""Automatic top-ups with a saved card: the card never reaches us, a rule fires once per fall to its
level (even when two charging passes cross it at once) and on its local schedule, stops at the
monthly cap, and a failed charge is retried, then reported, never charged twice."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection

from accounts.models import AccountLink, ConsumerAccount
from billing import autotopup, gateway
from billing.models import (
    AutoTopUp,
    AutoTopUpRun,
    Balance,
    PaymentMethod,
    SimulatedCharge,
    SimulatedPaymentMethod,
    TopUp,
)
from billing.tasks import accounts_balance_changed, auto_topups_due
from notifications.models import Notification
from tests.accounts.factories import AccountLinkFactory, ConsumerAccountFactory, UserFactory
from tests.billing.factories import policy
from tests.billing.factories_autotopup import (
    DECLINED_CARD,
    GOOD_CARD,
    TRANSIENT_CARD,
    card_token,
    credit,
    saved_card,
    spend,
)
from tests.meters.factories import MeterFactory

# Sunday 1 November 2026, 10:00 in Kuwait (UTC+03:00).
SUNDAY = datetime(2026, 11, 1, 7, 0, tzinfo=UTC)


@pytest.fixture
def link(db):
    return AccountLinkFactory()


@pytest.fixture
def api(make_api, link):
    return make_api(link.user)


def rules_url(account_id) -> str:
    return f"/api/v1/accounts/{account_id}/auto-topups/"


def balance_rule(api, link, card, **overrides):
    body = {
        "trigger": "balance",
        "threshold": "2.000",
        "amount": "5.000",
        "monthly_cap": "20.000",
        "payment_method": card.pk,
        **overrides,
    }
    return api.post(rules_url(link.account_id), {k: v for k, v in body.items() if v is not None})


def schedule_rule(api, link, card, **overrides):
    body = {
        "trigger": "schedule",
        "frequency": "weekly",
        "weekday": 6,
        "at_time": "09:00",
        "amount": "5.000",
        "monthly_cap": "50.000",
        "payment_method": card.pk,
        **overrides,
    }
    return api.post(rules_url(link.account_id), body)


def balance(account) -> Decimal:
    return Balance.objects.get(account=account).amount


def alerts(user, category) -> int:
    return Notification.objects.filter(user=user, category=category).count()


def cross(capture, account, amount: str, key: str) -> None:
    """A charging pass spends `amount` and runs its balance checks; what they queue runs after."""
    with capture(execute=True):
        spend(account, amount, key)
        accounts_balance_changed([account.pk])


def beat(capture, moment: datetime) -> int:
    """The beat's auto_topups_due at `moment`, with what it queues after commit."""
    with time_machine.travel(moment, tick=False), capture(execute=True):
        return auto_topups_due()


# --- Saving a card ------------------------------------------------------------------------------


def test_a_card_saved_through_the_gateways_token_is_nowhere_in_our_tables(api, client):
    tokenised = client.post(
        "/pay/simulated/tokens/",
        {"number": "4242 4242 4242 4242", "exp_month": 12, "exp_year": 2031, "cvc": "123"},
        content_type="application/json",
    )
    assert tokenised.status_code == 201, tokenised.json()
    token = tokenised.json()["token"]

    saved = api.post("/api/v1/payment-methods/", {"gateway_token": token})

    assert saved.status_code == 201, saved.json()
    body = saved.json()
    assert (body["brand"], body["last4"], body["exp_month"], body["exp_year"]) == (
        "visa",
        "4242",
        12,
        2031,
    )
    assert [m["id"] for m in api.get("/api/v1/payment-methods/").json()] == [body["id"]]
    method = PaymentMethod.objects.get()
    assert method.reference == SimulatedPaymentMethod.objects.get().reference
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    assert GOOD_CARD not in dump.getvalue() and "4242 4242" not in dump.getvalue()
    assert "4242" in dump.getvalue()  # the last four digits are kept, to recognise the card


def test_the_same_token_again_is_the_same_card_and_nobody_elses(api, make_api):
    token = card_token()
    first = api.post("/api/v1/payment-methods/", {"gateway_token": token})
    again = api.post("/api/v1/payment-methods/", {"gateway_token": token})
    stolen = make_api(UserFactory()).post("/api/v1/payment-methods/", {"gateway_token": token})

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert stolen.status_code == 400
    assert stolen.json()["error"]["code"] == "invalid_gateway_token"
    assert PaymentMethod.objects.count() == 1


@pytest.mark.parametrize(
    ("card", "code"),
    [
        ({"number": "4242424242424241"}, "invalid_number"),
        ({"number": "not a card"}, "invalid_number"),
        ({"exp_year": 2020}, "invalid_expiry"),
        ({"exp_month": 13}, "invalid_expiry"),
        ({"cvc": "12"}, "invalid_cvc"),
    ],
)
def test_the_gateway_refuses_a_bad_card(client, db, card, code):
    body = {"number": GOOD_CARD, "exp_month": 12, "exp_year": 2031, "cvc": "123", **card}
    response = client.post("/pay/simulated/tokens/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert not SimulatedPaymentMethod.objects.exists()


def test_an_unknown_token_is_refused(api):
    response = api.post("/api/v1/payment-methods/", {"gateway_token": "tok_sim_made_up"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_gateway_token"
    assert not PaymentMethod.objects.exists()


class TestCardOwnership:
    def test_its_owner_removes_it(self, api, link):
        card = saved_card(link.user)
        assert api.delete(f"/api/v1/payment-methods/{card.pk}/").status_code == 204
        card.refresh_from_db()
        assert card.removed_at is not None
        assert api.get("/api/v1/payment-methods/").json() == []

    @pytest.mark.parametrize("staff", [False, True])
    def test_others_neither_see_nor_remove_it(self, make_api, link, staff):
        card = saved_card(link.user)
        other = make_api(UserFactory(is_staff=staff))
        assert other.get("/api/v1/payment-methods/").json() == []
        response = other.delete(f"/api/v1/payment-methods/{card.pk}/")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "payment_method_not_found"
        card.refresh_from_db()
        assert card.removed_at is None

    def test_anonymous_is_refused(self, make_api, link):
        card = saved_card(link.user)
        anonymous = make_api()
        assert anonymous.get("/api/v1/payment-methods/").status_code == 401
        assert anonymous.delete(f"/api/v1/payment-methods/{card.pk}/").status_code == 401
        assert anonymous.post("/api/v1/payment-methods/", {"gateway_token": "x"}).status_code == 401

    def test_a_card_an_active_rule_pays_with_stays(self, api, link):
        card = saved_card(link.user)
        rule = balance_rule(api, link, card).json()
        response = api.delete(f"/api/v1/payment-methods/{card.pk}/")
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "payment_method_in_use"
        api.delete(f"{rules_url(link.account_id)}{rule['id']}/")
        assert api.delete(f"/api/v1/payment-methods/{card.pk}/").status_code == 204


# --- Setting a rule -----------------------------------------------------------------------------


def test_the_holder_sets_a_balance_rule(api, link):
    card = saved_card(link.user)
    response = balance_rule(api, link, card)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["trigger"] == "balance" and body["threshold"] == "2.000"
    assert (body["amount"], body["monthly_cap"], body["currency"]) == ("5.000", "20.000", "KWD")
    assert (body["month_total"], body["cap_left"]) == ("0.000", "20.000")
    assert body["armed"] is True and body["next_run_at"] is None and body["mine"] is True
    assert body["payment_method"] == {"id": card.pk, "brand": "visa", "last4": "4242"}
    assert api.get(rules_url(link.account_id)).json() == [body]


@time_machine.travel(SUNDAY, tick=False)
def test_a_schedule_shows_its_next_run_in_the_utilitys_zone(make_api, link):
    api = make_api(link.user)  # its token issued at the pinned time
    card = saved_card(link.user)
    weekly = schedule_rule(api, link, card)  # Sundays 09:00: today's has passed
    assert weekly.status_code == 201, weekly.json()
    assert weekly.json()["next_run_at"] == "2026-11-08T09:00:00+03:00"
    api.delete(f"{rules_url(link.account_id)}{weekly.json()['id']}/")

    monthly = schedule_rule(
        api,
        link,
        card,
        frequency="monthly",
        day_of_month=28,
        at_time="07:30",
        start_date="2026-12-01",
    )
    assert monthly.json()["next_run_at"] == "2026-12-28T07:30:00+03:00"


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"amount": "0.500"}, 400, "amount_below_minimum"),
        ({"amount": "150.000", "monthly_cap": "300.000"}, 400, "amount_too_large"),
        ({"amount": "1.0001"}, 400, "too_many_decimals"),
        ({"monthly_cap": "4.000"}, 400, "cap_below_amount"),
        ({"threshold": None}, 400, "threshold_required"),
        ({"trigger": "hourly"}, 400, "invalid"),
        ({"trigger": "schedule", "at_time": "09:00"}, 400, "schedule_incomplete"),
        (
            {"trigger": "schedule", "frequency": "monthly", "day_of_month": 31, "at_time": "09:00"},
            400,
            "invalid",
        ),
        (
            {
                "trigger": "schedule",
                "frequency": "weekly",
                "weekday": 1,
                "at_time": "09:00",
                "start_date": "2026-10-31",
            },
            400,
            "schedule_in_past",
        ),
        *(
            (
                {
                    "trigger": "schedule",
                    "frequency": frequency,
                    "weekday": 1,
                    "day_of_month": 28,
                    "at_time": "09:00",
                    "start_date": start,
                },
                400,
                "schedule_too_far",
            )
            for frequency in ("weekly", "monthly")
            for start in ("2027-11-03", "9999-12-31")  # a year and a day; the calendar's end
        ),
    ],
)
@time_machine.travel(SUNDAY, tick=False)
def test_it_refuses_a_bad_rule_and_writes_nothing(make_api, link, overrides, status, code):
    api = make_api(link.user)  # its token issued at the pinned time
    policy(link.account.utility, max_topup=Decimal("100.000"))
    response = balance_rule(api, link, saved_card(link.user), **overrides)
    assert response.status_code == status, response.json()
    assert response.json()["error"]["code"] == code
    assert not AutoTopUp.objects.exists()


def test_it_refuses_another_users_card(api, link):
    stranger_card = saved_card(UserFactory())
    response = balance_rule(api, link, stranger_card)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "payment_method_not_found"
    assert not AutoTopUp.objects.exists()


def test_one_active_rule_per_trigger(api, link):
    card = saved_card(link.user)
    assert balance_rule(api, link, card).status_code == 201
    second = balance_rule(api, link, card, threshold="1.000")
    assert second.status_code == 409 and second.json()["error"]["code"] == "auto_topup_exists"
    assert schedule_rule(api, link, card).status_code == 201  # a schedule beside it is fine
    assert AutoTopUp.objects.count() == 2


def test_it_is_refused_where_the_utility_does_not_offer_it(api, link):
    policy(link.account.utility, auto_topup_enabled=False)
    response = balance_rule(api, link, saved_card(link.user))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "auto_topup_unavailable"
    assert not AutoTopUp.objects.exists()


def test_it_is_refused_on_a_postpaid_or_closed_account(api, link):
    card = saved_card(link.user)
    MeterFactory(account=link.account, utility=link.account.utility, payment_mode="postpaid")
    postpaid = balance_rule(api, link, card)
    assert postpaid.status_code == 409
    assert postpaid.json()["error"]["code"] == "account_postpaid"
    ConsumerAccount.objects.filter(pk=link.account_id).update(status="closed")
    closed = balance_rule(api, link, card)
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "account_closed"
    assert not AutoTopUp.objects.exists()


def test_a_share_allowed_to_pay_sets_one_with_its_own_card(make_api, link):
    relative = AccountLinkFactory(account=link.account, role="shared", receives_alerts=False)
    response = balance_rule(make_api(relative.user), link, saved_card(relative.user))
    assert response.status_code == 201, response.json()
    assert AutoTopUp.objects.get().user == relative.user
    # The holder sees it, without the relative's card, and may end it.
    seen = make_api(link.user).get(rules_url(link.account_id)).json()
    assert seen[0]["mine"] is False and seen[0]["payment_method"] is None
    holder = make_api(link.user)
    changed = holder.patch(f"{rules_url(link.account_id)}{seen[0]['id']}/", {"amount": "9.000"})
    assert changed.status_code == 403
    assert changed.json()["error"]["code"] == "not_your_auto_topup"
    assert holder.delete(f"{rules_url(link.account_id)}{seen[0]['id']}/").status_code == 204


def test_a_share_not_allowed_to_pay_cannot(make_api, link):
    viewer = AccountLinkFactory(account=link.account, role="shared", can_pay=False)
    response = balance_rule(make_api(viewer.user), link, saved_card(viewer.user))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "share_not_allowed"
    assert not AutoTopUp.objects.exists()


@time_machine.travel(SUNDAY, tick=False)
def test_a_change_is_checked_as_a_new_rule_and_moves_the_schedule(make_api, link):
    api = make_api(link.user)  # its token issued at the pinned time
    rule = schedule_rule(api, link, saved_card(link.user)).json()
    url = f"{rules_url(link.account_id)}{rule['id']}/"

    refused = api.patch(url, {"monthly_cap": "1.000"})
    changed = api.patch(url, {"weekday": 0, "at_time": "18:15", "amount": "7.500"})

    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "cap_below_amount"
    assert changed.status_code == 200, changed.json()
    assert changed.json()["amount"] == "7.500"
    assert changed.json()["next_run_at"] == "2026-11-02T18:15:00+03:00"  # Monday
    assert AutoTopUp.objects.get().monthly_cap == Decimal("50.000")


class TestRuleOwnership:
    @pytest.fixture
    def rule(self, api, link):
        return balance_rule(api, link, saved_card(link.user)).json()

    def test_the_holder_reads_changes_and_ends_it(self, api, link, rule):
        url = f"{rules_url(link.account_id)}{rule['id']}/"
        assert api.get(rules_url(link.account_id)).status_code == 200
        assert api.patch(url, {"threshold": "3.000"}).json()["threshold"] == "3.000"
        assert api.delete(url).status_code == 204
        assert AutoTopUp.objects.get().is_active is False
        assert api.get(rules_url(link.account_id)).json() == []

    @pytest.mark.parametrize("staff", [False, True])
    def test_others_cannot_touch_it(self, make_api, link, rule, staff):
        other = make_api(UserFactory(is_staff=staff))
        url = f"{rules_url(link.account_id)}{rule['id']}/"
        for response in (
            other.get(rules_url(link.account_id)),
            other.post(rules_url(link.account_id), {}),
            other.patch(url, {"amount": "9.000"}),
            other.delete(url),
        ):
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "account_not_found"
        assert AutoTopUp.objects.get().amount == Decimal("5.000")
        assert AutoTopUp.objects.get().is_active

    def test_anonymous_is_refused(self, make_api, link, rule):
        anonymous = make_api()
        url = f"{rules_url(link.account_id)}{rule['id']}/"
        assert anonymous.get(rules_url(link.account_id)).status_code == 401
        assert anonymous.post(rules_url(link.account_id), {}).status_code == 401
        assert anonymous.patch(url, {"amount": "9.000"}).status_code == 401
        assert anonymous.delete(url).status_code == 401
        assert AutoTopUp.objects.get().is_active

    def test_a_rule_of_another_account_is_not_found_here(self, make_api, link, rule):
        mine = AccountLinkFactory(user=link.user, account=ConsumerAccountFactory())
        url = f"{rules_url(mine.account_id)}{rule['id']}/"
        response = make_api(link.user).delete(url)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "auto_topup_not_found"
        assert AutoTopUp.objects.get().is_active


# --- Firing at a balance level ------------------------------------------------------------------


def test_an_account_at_its_auto_topup_level_is_checked_after_a_charging_pass(api, link):
    from billing.selectors import balance_checks_due

    balance_rule(api, link, saved_card(link.user), threshold="10.000")
    credit(link.account, "12.000", "start")
    assert balance_checks_due(account_ids=[link.account_id]) == []
    spend(link.account, "3.000", "day-1")  # 9.000: above the 2.000 low-balance level
    assert balance_checks_due(account_ids=[link.account_id]) == [link.account_id]


def test_it_fires_once_when_two_charging_passes_cross_the_level_at_once(
    api, link, django_capture_on_commit_callbacks
):
    balance_rule(api, link, saved_card(link.user))
    credit(link.account, "2.500", "start")

    # Both passes' checks run before either's charge does (on SQLite one after the other; the
    # threads of the PostgreSQL test below race for real).
    with django_capture_on_commit_callbacks(execute=True):
        spend(link.account, "0.500", "pass-1")
        accounts_balance_changed([link.account_id])
        spend(link.account, "0.500", "pass-2")
        accounts_balance_changed([link.account_id])

    run = AutoTopUpRun.objects.get()
    assert (run.occurrence, run.status, run.attempts) == ("crossing:1", "succeeded", 1)
    assert SimulatedCharge.objects.get().idempotency_key == str(run.pk)
    topup = TopUp.objects.get(channel="auto")
    assert (topup.status, topup.user, topup.amount) == ("succeeded", link.user, Decimal("5.000"))
    assert balance(link.account) == Decimal("6.500")
    assert alerts(link.user, "topup_received") == 1
    rule = AutoTopUp.objects.get()
    assert rule.armed is True and rule.crossings == 1  # re-armed by its own top-up


def test_it_fires_again_on_the_next_fall_and_says_what_the_month_took(
    api, link, django_capture_on_commit_callbacks
):
    balance_rule(api, link, saved_card(link.user))
    credit(link.account, "2.500", "start")
    cross(django_capture_on_commit_callbacks, link.account, "1.000", "a")  # 1.500 → 6.500
    cross(django_capture_on_commit_callbacks, link.account, "3.000", "b")  # 3.500: above
    cross(django_capture_on_commit_callbacks, link.account, "2.000", "c")  # 1.500 → 6.500

    assert list(
        AutoTopUpRun.objects.order_by("created_at").values_list("occurrence", flat=True)
    ) == [
        "crossing:1",
        "crossing:2",
    ]
    assert balance(link.account) == Decimal("6.500")
    body = api.get(rules_url(link.account_id)).json()[0]
    assert (body["month_total"], body["cap_left"]) == ("10.000", "10.000")


def test_it_stops_at_the_monthly_cap_with_one_alert(api, link, django_capture_on_commit_callbacks):
    balance_rule(api, link, saved_card(link.user), monthly_cap="10.000")
    credit(link.account, "2.500", "start")
    cross(django_capture_on_commit_callbacks, link.account, "1.000", "a")  # 1.500 → 6.500
    cross(django_capture_on_commit_callbacks, link.account, "5.000", "b")  # 1.500 → 6.500
    cross(django_capture_on_commit_callbacks, link.account, "5.000", "c")  # 1.500: cap reached
    # A refund lifts the balance above the level (re-armed), and it falls again the same month.
    credit(link.account, "5.000", "refund")
    with django_capture_on_commit_callbacks(execute=True):
        accounts_balance_changed([link.account_id])
    assert AutoTopUp.objects.get().armed is True
    cross(django_capture_on_commit_callbacks, link.account, "5.000", "d")

    statuses = list(AutoTopUpRun.objects.order_by("created_at").values_list("status", "error"))
    assert statuses == [
        ("succeeded", ""),
        ("succeeded", ""),
        ("skipped", "monthly_cap"),
        ("skipped", "monthly_cap"),
    ]
    assert TopUp.objects.filter(channel="auto", status="succeeded").count() == 2
    assert SimulatedCharge.objects.count() == 2
    assert balance(link.account) == Decimal("1.500")
    assert alerts(link.user, "auto_topup_cap_reached") == 1
    body = api.get(rules_url(link.account_id)).json()[0]
    assert (body["month_total"], body["cap_left"]) == ("10.000", "0.000")


@pytest.mark.django_db(transaction=True)
def test_two_charging_passes_racing_on_postgresql_fire_it_once():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no concurrent writers; the test above calls it twice")
    link = AccountLinkFactory()
    card = saved_card(link.user)
    AutoTopUp.objects.create(
        account=link.account,
        user=link.user,
        payment_method=card,
        trigger="balance",
        threshold=Decimal("2.000"),
        amount=Decimal("5.000"),
        monthly_cap=Decimal("20.000"),
    )
    credit(link.account, "2.500", "start")
    barrier = threading.Barrier(2)
    errors: list[Exception] = []

    def charging_pass(key):
        try:
            barrier.wait()
            spend(link.account, "0.500", key)
            accounts_balance_changed([link.account_id])
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=charging_pass, args=(k,)) for k in ("p1", "p2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert AutoTopUpRun.objects.count() == 1 and SimulatedCharge.objects.count() == 1
    assert TopUp.objects.filter(channel="auto", status="succeeded").count() == 1
    assert balance(link.account) == Decimal("6.500")
    assert AutoTopUp.objects.get().armed is True


# --- Schedules ----------------------------------------------------------------------------------


def test_a_schedule_fires_at_its_local_time_and_moves_on(make_api, link):
    with time_machine.travel(SUNDAY, tick=False):
        rule = schedule_rule(make_api(link.user), link, saved_card(link.user), weekday=0).json()
    assert rule["next_run_at"] == "2026-11-02T09:00:00+03:00"  # Monday 09:00 in Kuwait
    credit(link.account, "1.000", "start")

    with time_machine.travel(datetime(2026, 11, 2, 5, 59, tzinfo=UTC), tick=False):
        assert auto_topups_due() == 0
    with time_machine.travel(datetime(2026, 11, 2, 6, 0, tzinfo=UTC), tick=False):
        assert auto_topups_due() == 1
        assert auto_topups_due() == 0  # the same minute again: nothing more

    run = AutoTopUpRun.objects.get()
    assert (run.occurrence, run.status) == ("2026-11-02", "succeeded")
    assert balance(link.account) == Decimal("6.000")
    assert AutoTopUp.objects.get().next_run_at == datetime(2026, 11, 9, 6, 0, tzinfo=UTC)


def test_a_beat_down_for_weeks_fires_once_and_resumes(make_api, link):
    with time_machine.travel(SUNDAY, tick=False):
        schedule_rule(make_api(link.user), link, saved_card(link.user), weekday=0)
    with time_machine.travel(datetime(2026, 11, 20, 12, 0, tzinfo=UTC), tick=False):
        auto_topups_due()
    assert AutoTopUpRun.objects.get().occurrence == "2026-11-02"
    assert AutoTopUp.objects.get().next_run_at == datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


# --- Failures -----------------------------------------------------------------------------------


def test_a_declined_card_fails_at_once_and_is_reported(
    api, link, django_capture_on_commit_callbacks
):
    balance_rule(api, link, saved_card(link.user, DECLINED_CARD))
    credit(link.account, "2.500", "start")
    cross(django_capture_on_commit_callbacks, link.account, "1.000", "a")

    run = AutoTopUpRun.objects.get()
    assert (run.status, run.attempts, run.next_attempt_at) == ("failed", 1, None)
    assert run.topup.status == "failed"
    assert balance(link.account) == Decimal("1.500")
    assert alerts(link.user, "auto_topup_failed") == 1
    body = Notification.objects.get(category="auto_topup_failed").body
    assert "VISA ****0002" in body and "5.000" in body
    assert auto_topups_due() == 0  # nothing left to retry


def test_a_transient_failure_is_retried_and_charged_once(
    api, link, django_capture_on_commit_callbacks, monkeypatch
):
    real = gateway.SimulatedGateway.charge_saved
    calls = []

    def busy_first(self, **kwargs):  # the gateway's edge: its first answer is "try again"
        calls.append(kwargs["idempotency_key"])
        if len(calls) == 1:
            raise gateway.TransientGatewayError("processor busy")
        return real(self, **kwargs)

    monkeypatch.setattr(gateway.SimulatedGateway, "charge_saved", busy_first)
    balance_rule(api, link, saved_card(link.user))
    credit(link.account, "2.500", "start")
    start = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        cross(django_capture_on_commit_callbacks, link.account, "1.000", "a")
    run = AutoTopUpRun.objects.get()
    assert (run.status, run.next_attempt_at) == ("retrying", start + timedelta(minutes=1))
    assert balance(link.account) == Decimal("1.500")

    with time_machine.travel(start + timedelta(seconds=59), tick=False):
        assert auto_topups_due() == 0
    assert beat(django_capture_on_commit_callbacks, start + timedelta(minutes=1)) == 1

    run.refresh_from_db()
    assert (run.status, run.attempts) == ("succeeded", 2)
    assert calls == [str(run.pk), str(run.pk)]  # one idempotency key for every attempt
    assert SimulatedCharge.objects.count() == 1
    assert balance(link.account) == Decimal("6.500")
    assert alerts(link.user, "auto_topup_failed") == 0


def test_an_answer_lost_after_the_charge_is_never_charged_twice(
    api, link, django_capture_on_commit_callbacks, monkeypatch
):
    real = gateway.SimulatedGateway.charge_saved
    answers = []

    def lost_answer(self, **kwargs):  # charged, then the connection dropped before the answer
        answers.append(real(self, **kwargs))
        if len(answers) == 1:
            raise gateway.TransientGatewayError("read timed out")
        return answers[-1]

    monkeypatch.setattr(gateway.SimulatedGateway, "charge_saved", lost_answer)
    balance_rule(api, link, saved_card(link.user))
    credit(link.account, "2.500", "start")
    start = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        cross(django_capture_on_commit_callbacks, link.account, "1.000", "a")
    beat(django_capture_on_commit_callbacks, start + timedelta(minutes=1))

    assert answers[0] == answers[1]
    assert SimulatedCharge.objects.count() == 1
    assert AutoTopUpRun.objects.get().status == "succeeded"
    assert balance(link.account) == Decimal("6.500")


def test_a_card_that_keeps_failing_is_reported_after_the_last_retry(
    api, link, django_capture_on_commit_callbacks
):
    balance_rule(api, link, saved_card(link.user, TRANSIENT_CARD))
    credit(link.account, "2.500", "start")
    start = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        cross(django_capture_on_commit_callbacks, link.account, "1.000", "a")
    moment = start
    for wait in autotopup.RETRY_DELAYS:
        assert alerts(link.user, "auto_topup_failed") == 0
        moment += wait
        assert beat(django_capture_on_commit_callbacks, moment) == 1

    run = AutoTopUpRun.objects.get()
    assert (run.status, run.attempts) == ("failed", 4)
    assert run.topup.status == "failed"
    assert not SimulatedCharge.objects.exists()
    assert alerts(link.user, "auto_topup_failed") == 1
    assert balance(link.account) == Decimal("1.500")


def test_a_worker_that_died_mid_charge_leaves_the_run_to_the_beat(api, link):
    balance_rule(api, link, saved_card(link.user))
    credit(link.account, "2.500", "start")
    spend(link.account, "1.000", "a")
    run = autotopup.auto_topups_on_balance(account=link.account, balance=Decimal("1.500"))
    start = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    # A worker claimed it and died: the lease holds it, then it is due again.
    AutoTopUpRun.objects.filter(pk=run.pk).update(
        next_attempt_at=start + autotopup.CHARGE_LEASE, attempts=1
    )
    with time_machine.travel(start + timedelta(minutes=1), tick=False):
        assert auto_topups_due() == 0
    with time_machine.travel(start + autotopup.CHARGE_LEASE, tick=False):
        assert auto_topups_due() == 1
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("succeeded", 2)
    assert balance(link.account) == Decimal("6.500")


def test_a_run_waiting_for_its_retry_is_skipped_once_the_rule_or_access_ends(
    make_api, link, django_capture_on_commit_callbacks, monkeypatch
):
    def busy(self, **kwargs):
        raise gateway.TransientGatewayError("processor busy")

    relative = AccountLinkFactory(account=link.account, role="shared")
    api = make_api(relative.user)
    balance_rule(api, link, saved_card(relative.user))
    credit(link.account, "2.500", "start")
    start = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    monkeypatch.setattr(gateway.SimulatedGateway, "charge_saved", busy)
    with time_machine.travel(start, tick=False):
        cross(django_capture_on_commit_callbacks, link.account, "1.000", "a")
    monkeypatch.undo()
    # The holder takes back the relative's right to pay before the retry.
    AccountLink.objects.filter(pk=relative.pk).update(can_pay=False)
    with time_machine.travel(start + timedelta(minutes=1), tick=False):
        auto_topups_due()

    run = AutoTopUpRun.objects.get()
    assert (run.status, run.error) == ("skipped", "access_ended")
    assert run.topup.status == "failed"
    assert not SimulatedCharge.objects.exists()
    assert AutoTopUp.objects.get().end_reason == "access_ended"
    assert balance(link.account) == Decimal("1.500")


@pytest.mark.django_db
def test_the_beat_finds_its_work_through_the_partial_indexes():
    """Schedules due and runs to charge are read through their partial indexes: the beat's
    minute costs what is due, not every rule and run ever made."""
    if connection.vendor != "postgresql":
        pytest.skip("query plans are PostgreSQL's")
    captured = []

    def capture(execute, sql, params, many, context):
        if sql.lstrip().startswith("SELECT") and (
            "billing_autotopup" in sql or "billing_autotopuprun" in sql
        ):
            captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        autotopup.auto_topups_due()
    plans = []
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        for sql, params in captured:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            plans.append(str(cursor.fetchone()[0]))
        cursor.execute("SET enable_seqscan = on")
    assert any("auto_topup_schedule_due" in plan for plan in plans), plans
    assert any("auto_topup_run_due" in plan for plan in plans), plans


@pytest.fixture
def answers_lost(monkeypatch):
    """The gateway charges (once per key, as ever) but every answer is lost on the way back."""
    real = gateway.SimulatedGateway.charge_saved

    def lost(self, **kwargs):
        real(self, **kwargs)
        raise gateway.TransientGatewayError("read timed out")

    monkeypatch.setattr(gateway.SimulatedGateway, "charge_saved", lost)


def fallen_below_its_level(api, link, capture) -> datetime:
    """A balance rule set, and the balance crossing it at 06:00 UTC on 2 November: its run fired."""
    balance_rule(api, link, saved_card(link.user))
    credit(link.account, "2.500", "start")
    start = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        cross(capture, link.account, "1.000", "a")
    return start


def assert_credited_once(link) -> None:
    run = AutoTopUpRun.objects.get()
    assert run.status == "succeeded" and run.topup.status == "succeeded"
    assert SimulatedCharge.objects.count() == 1
    assert balance(link.account) == Decimal("6.500")
    assert alerts(link.user, "auto_topup_failed") == 0


def test_a_charge_taken_before_the_rule_ended_is_credited_not_skipped(
    api, link, django_capture_on_commit_callbacks, answers_lost
):
    """The card was charged but its answer was lost; the consumer then ended the rule. The next
    attempt may not charge, yet the money was taken: the gateway is asked about the run's key
    and the top-up is credited, once."""
    start = fallen_below_its_level(api, link, django_capture_on_commit_callbacks)
    rule = AutoTopUp.objects.get()
    with time_machine.travel(start + timedelta(seconds=30), tick=False):
        autotopup.auto_topup_end(user=link.user, account=link.account, rule_id=rule.pk)

    beat(django_capture_on_commit_callbacks, start + timedelta(minutes=1))

    assert_credited_once(link)


def test_a_charge_whose_every_answer_timed_out_is_credited_not_reported_failed(
    api, link, django_capture_on_commit_callbacks, answers_lost
):
    """Each attempt reached the gateway (the first charged) but every answer timed out: before
    giving up, the run asks the gateway what it did with its key, and credits the payment."""
    moment = fallen_below_its_level(api, link, django_capture_on_commit_callbacks)
    for wait in autotopup.RETRY_DELAYS:
        moment += wait
        beat(django_capture_on_commit_callbacks, moment)

    assert_credited_once(link)
