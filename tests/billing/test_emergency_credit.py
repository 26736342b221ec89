"""Emergency credit as a choice (India: 7 days of emergency credit; UK prepay meters): the consumer
sees it in the app with what it costs and by when to repay it, takes it once, keeps the supply on
below zero while it lasts, repays it with a top-up; unpaid past its date, the supply is cut at the
next allowed time. Madhya Pradesh's discom, clock pinned (IST, +05:30)."""

from __future__ import annotations

import threading
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection

from accounts.models import AccountLink, ConsumerAccount
from billing import relay, services, tasks
from billing.affordability import emergency_credit_take
from billing.ledger import ledger_post
from billing.models import EmergencyCredit, IdempotencyRecord, LedgerEntry, RelayCommand
from billing.selectors import ledger_check
from core.errors import Conflict
from notifications.models import Notification
from tests.accounts.factories import AccountLinkFactory, UserFactory
from tests.billing.factories import policy
from tests.billing.factories_affordability import (
    balance_of,
    charge,
    india_household,
    top_up,
)
from tests.meters.factories import MeterFactory, india

IST = ZoneInfo("Asia/Kolkata")
ON_REQUEST = {
    "emergency_credit": Decimal("100.00"),
    "emergency_credit_on_request": True,
    "emergency_credit_fee": Decimal("10.00"),
    "emergency_credit_days": 7,
}


def ist(day, hour, minute=0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=IST)  # 10 November 2026: a Tuesday


def credited(account, amount="20.00", key="opening"):
    ledger_post(
        account=account, kind="topup", amount=Decimal(amount), key=key, description="top-up"
    )


def url(account) -> str:
    return f"/api/v1/accounts/{account.pk}/emergency-credit/"


def take(api, account, key="ec-1"):
    return api.post(url(account), HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.django_db
def test_a_consumer_sees_the_credit_takes_it_and_is_told_by_when_to_repay_it(make_api):
    link, _meter = india_household(**ON_REQUEST)
    account = link.account
    credited(account)
    with time_machine.travel(ist(10, 10), tick=False):
        api = make_api(link.user)
        offer = api.get(url(account)).json()
        response = take(api, account)
        balance = api.get(f"/api/v1/accounts/{account.pk}/balance/").json()

    assert offer == {
        "account": account.pk,
        "consumer_id": account.consumer_id,
        "currency": "INR",
        "timezone": "Asia/Kolkata",
        "offered": True,
        "available": True,
        "reason": None,
        "amount": "100.00",
        "fee": "10.00",
        "repay_within_days": 7,
        "repay_by": "2026-11-17T10:00:00+05:30",
        "balance": "20.00",
        "in_use": None,
    }
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["in_use"] == {
        "amount": "100.00",
        "fee": "10.00",
        "taken_at": "2026-11-10T10:00:00+05:30",
        "repay_by": "2026-11-17T10:00:00+05:30",
    }
    assert (body["available"], body["reason"], body["balance"]) == (
        False,
        "emergency_credit_in_use",
        "10.00",
    )
    credit = EmergencyCredit.objects.get()
    assert (credit.status, credit.taken_by, credit.amount) == ("active", link.user, Decimal(100))
    assert (credit.fee_entry.kind, credit.fee_entry.amount, credit.fee_entry.key) == (
        "emergency_credit_fee",
        Decimal("-10.00"),
        f"emergency_credit:{credit.pk}:fee",
    )
    [alert] = Notification.objects.filter(user=link.user, category="emergency_credit_due")
    assert "₹100" in alert.body and "Top up before" in alert.body and "IST" in alert.body
    # The balance answer shows the credit taken as the level the supply is cut at.
    assert balance["balance"] == "10.00"
    assert balance["emergency_credit"] == {
        "limit": "100.00",
        "available": "100.00",
        "in_use": False,
    }
    assert ledger_check() == []


@pytest.mark.django_db
def test_taken_credit_keeps_the_supply_on_below_zero_and_untaken_it_does_not(make_api):
    link, _meter = india_household(**ON_REQUEST)
    other, _ = india_household()  # the same utility: offered, not taken
    for each in (link, other):
        credited(each.account, key=f"opening:{each.pk}")
    with time_machine.travel(ist(10, 10), tick=False):
        assert take(make_api(link.user), link.account).status_code == 201
        for each in (link, other):
            charge(each.account, "60.00", key=f"energy:{each.pk}")
            services.account_balance_changed(account_id=each.account_id)
        balance = make_api(link.user).get(f"/api/v1/accounts/{link.account_id}/balance/").json()

    assert balance_of(link.account)[0] == Decimal("-50.00")
    assert not RelayCommand.objects.filter(account=link.account).exists()
    assert balance["emergency_credit"] == {"limit": "100.00", "available": "50.00", "in_use": True}
    # Not taken, the level is zero: the automatic allowance applies only when on request is off.
    [command] = RelayCommand.objects.filter(account=other.account)
    assert (command.action, command.status) == ("disconnect", "waiting")


@pytest.mark.django_db
def test_taking_it_cancels_a_disconnection_waiting_for_the_morning(make_api):
    link, _meter = india_household(**ON_REQUEST)
    with time_machine.travel(ist(10, 19), tick=False):  # Tuesday evening: no disconnection
        charge(link.account, "5.00", key="energy")
        [command] = relay.disconnect_evaluate(account=link.account)
        assert command.not_before == ist(11, 8)
        response = take(make_api(link.user), link.account)

    assert response.status_code == 201, response.json()
    command.refresh_from_db()
    assert command.status == "cancelled"
    assert balance_of(link.account)[0] == Decimal("-15.00")
    assert not RelayCommand.objects.exclude(pk=command.pk).exists()  # the meter was never off


@pytest.mark.django_db
def test_taking_it_reconnects_a_meter_cut_for_an_exhausted_balance(make_api, head_end):
    link, meter = india_household(**ON_REQUEST)
    with time_machine.travel(ist(10, 10), tick=False):
        charge(link.account, "5.00", key="energy")
        [cut] = relay.disconnect_evaluate(account=link.account)
        assert relay.relay_dispatch(command_id=str(cut.pk)).status == "done"
    with time_machine.travel(ist(10, 11), tick=False):
        assert take(make_api(link.user), link.account).status_code == 201

    reconnect = RelayCommand.objects.get(action="reconnect")
    assert (reconnect.status, reconnect.reason) == ("done", "emergency_credit")
    meter.refresh_from_db()
    assert meter.relay == "closed"


def _stale_disconnect(meter, at):
    """A disconnect ordered by a path that did not see the balance as it is now (a backlog, a
    dead worker's command), due at `at`."""
    return RelayCommand.objects.create(
        meter=meter,
        account=meter.account,
        action="disconnect",
        reason="balance_exhausted",
        not_before=at,
    )


@pytest.mark.django_db
def test_the_send_time_check_reads_the_level_the_credit_taken_sets(make_api, head_end):
    link, meter = india_household(**ON_REQUEST)
    other, other_meter = india_household()  # offered, not taken: its level is zero
    with time_machine.travel(ist(10, 10), tick=False):
        assert take(make_api(link.user), link.account).status_code == 201
        # Staff lower the offer afterwards: the credit taken keeps its own amount.
        policy(link.account.utility, emergency_credit=Decimal("30.00"))
        for each in (link, other):
            charge(each.account, "40.00", key=f"energy:{each.pk}")
        stale = _stale_disconnect(meter, ist(10, 10))
        due = _stale_disconnect(other_meter, ist(10, 10))
        assert relay.relay_dispatch(command_id=str(stale.pk)) is None
        assert relay.relay_dispatch(command_id=str(due.pk)).status == "done"

    stale.refresh_from_db()
    assert stale.status == "cancelled" and "not in debt" in stale.error
    check = relay.disconnect_check(command=stale, at=ist(10, 10))
    assert check.level == Decimal("-100.00") and check.grounds == ["not_in_debt"]
    # The standards engine's check of the one that went out reads the same level: not wrongful.
    check = relay.disconnect_check(command=due, at=ist(10, 10))
    assert check.level == Decimal(0) and check.grounds == []


@pytest.mark.django_db
def test_a_top_up_that_brings_the_balance_back_to_zero_repays_it(make_api):
    link, _meter = india_household(**ON_REQUEST)
    credited(link.account)
    with time_machine.travel(ist(10, 10), tick=False):
        api = make_api(link.user)
        assert take(api, link.account).status_code == 201
        charge(link.account, "60.00", key="energy")  # -50.00
        top_up(api, link.account, "30.00", key="t-1")  # -20.00: still in use
        assert EmergencyCredit.objects.get().status == "active"
    with time_machine.travel(ist(11, 9), tick=False):
        api = make_api(link.user)
        topup = top_up(api, link.account, "100.00", key="t-2")
        offer = api.get(url(link.account)).json()
        balance = api.get(f"/api/v1/accounts/{link.account_id}/balance/").json()

    credit = EmergencyCredit.objects.get()
    assert (credit.status, credit.ended_at) == ("repaid", topup.paid_at)
    assert offer["in_use"] is None and offer["available"] is True
    assert offer["balance"] == balance["balance"] == "80.00"
    assert balance["emergency_credit"] == {"limit": "0.00", "available": "0.00", "in_use": False}
    assert ledger_check() == []


@pytest.mark.django_db
def test_taking_it_twice_is_refused_and_a_retry_is_answered_as_it_is(make_api):
    link, _meter = india_household(**ON_REQUEST)
    credited(link.account)
    with time_machine.travel(ist(10, 10), tick=False):
        api = make_api(link.user)
        first = take(api, link.account, key="a")
        entries = LedgerEntry.objects.count()
        again = take(api, link.account, key="b")
        retry = take(api, link.account, key="a")

    assert first.status_code == 201
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "emergency_credit_in_use"
    assert retry.status_code == 201 and retry.json() == first.json()
    assert EmergencyCredit.objects.count() == 1
    assert LedgerEntry.objects.count() == entries
    assert Notification.objects.filter(category="emergency_credit_due").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_taps_at_once_take_it_once():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers; the race needs PostgreSQL's row locks")
    link, _meter = india_household(**ON_REQUEST)
    credited(link.account)
    account = ConsumerAccount.objects.select_related("utility").get(pk=link.account_id)
    barrier = threading.Barrier(4)
    outcomes: list[object] = []

    def tap():
        try:
            barrier.wait()
            outcomes.append(emergency_credit_take(account=account, user=link.user))
        except Exception as exc:  # counted below
            outcomes.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=tap) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    refused = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(refused) == 3 and {o.code for o in refused} == {"emergency_credit_in_use"}
    assert EmergencyCredit.objects.count() == 1
    assert LedgerEntry.objects.filter(kind="emergency_credit_fee").count() == 1
    assert ledger_check() == []


def _not_offered(link):
    policy(link.account.utility, emergency_credit_on_request=False)
    return link.user


def _not_needed(link):
    credited(link.account, "150.00", key="more")  # 170.00: above the 100.00 of credit
    return link.user


def _not_enough(link):
    charge(link.account, "115.00", key="energy")  # -95.00, -105.00 after the fee
    return link.user


def _postpaid(link):
    MeterFactory(utility=link.account.utility, account=link.account, payment_mode="postpaid")
    return link.user


def _closed(link):
    ConsumerAccount.objects.filter(pk=link.account_id).update(status="closed")
    return link.user


def _share_that_may_not_pay(link):
    return AccountLinkFactory(
        account=link.account, role="shared", can_pay=False, shared_by=link
    ).user


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("setup", "status", "code"),
    [
        (_not_offered, 409, "emergency_credit_not_offered"),
        (_not_needed, 409, "emergency_credit_not_needed"),
        (_not_enough, 409, "emergency_credit_not_enough"),
        (_postpaid, 409, "account_postpaid"),
        (_closed, 409, "account_closed"),
        (_share_that_may_not_pay, 403, "share_not_allowed"),
    ],
)
def test_it_is_refused_with_a_code_and_nothing_written(make_api, setup, status, code):
    link, _meter = india_household(**ON_REQUEST)
    credited(link.account)
    user = setup(link)
    entries = LedgerEntry.objects.count()
    with time_machine.travel(ist(10, 10), tick=False):
        response = take(make_api(user), link.account)
        offer = make_api(link.user).get(url(link.account)).json()

    assert response.status_code == status, response.json()
    assert response.json()["error"]["code"] == code
    if status == 409:
        assert (offer["available"], offer["reason"]) == (False, code)
    assert not EmergencyCredit.objects.exists()
    assert LedgerEntry.objects.count() == entries
    assert not IdempotencyRecord.objects.exists()
    assert not Notification.objects.exists()


@pytest.mark.django_db
def test_a_request_without_an_idempotency_key_is_refused(make_api):
    link, _meter = india_household(**ON_REQUEST)
    response = make_api(link.user).post(url(link.account))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "idempotency_key_required"
    assert not EmergencyCredit.objects.exists()


@pytest.mark.django_db
def test_only_the_accounts_own_users_see_or_take_it(make_api):
    link, _meter = india_household(**ON_REQUEST)
    stranger = AccountLinkFactory(account__utility=india()).user  # a consumer of another account
    staff = UserFactory(is_staff=True, is_superuser=True, phone=None)

    assert make_api(link.user).get(url(link.account)).status_code == 200
    for user in (stranger, staff):
        api = make_api(user)
        assert api.get(url(link.account)).status_code == 404
        assert take(api, link.account).status_code == 404
    anonymous = make_api()
    assert anonymous.get(url(link.account)).status_code == 401
    assert take(anonymous, link.account).status_code == 401
    assert not EmergencyCredit.objects.exists()


@pytest.mark.django_db
def test_unpaid_past_its_date_it_expires_and_the_supply_is_cut_at_an_allowed_time(
    make_api, django_capture_on_commit_callbacks
):
    link, _meter = india_household(**ON_REQUEST)
    paid, _ = india_household()  # also took it, and is back above zero by a refund
    for each in (link, paid):
        credited(each.account, key=f"opening:{each.pk}")
        with time_machine.travel(ist(10, 10), tick=False):
            assert take(make_api(each.user), each.account).status_code == 201
    charge(link.account, "60.00", key="energy")  # -50.00: within the credit
    ledger_post(account=paid.account, kind="refund", amount=Decimal(5), key="r", description="r")

    # The morning it is due, before 10:00: nothing expires yet.
    with (
        time_machine.travel(ist(17, 9, 5), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert tasks.affordability_daily()["expired"] == 0
    assert not RelayCommand.objects.exists()

    # The hourly run at 20:05, after the date: the disconnection waits for Wednesday 08:00.
    with (
        time_machine.travel(ist(17, 20, 5), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert tasks.affordability_daily()["expired"] == 1
        again = tasks.affordability_daily()

    assert again["expired"] == 0
    statuses = dict(EmergencyCredit.objects.values_list("account_id", "status"))
    assert statuses == {link.account_id: "expired", paid.account_id: "repaid"}
    [command] = RelayCommand.objects.all()
    assert (command.account_id, command.action, command.status) == (
        link.account_id,
        "disconnect",
        "waiting",
    )
    assert command.not_before.astimezone(IST).isoformat() == "2026-11-18T08:00:00+05:30"
    with time_machine.travel(ist(17, 21), tick=False):
        offer = make_api(link.user).get(url(link.account)).json()
    assert offer["in_use"] is None and offer["reason"] is None  # it may be taken again
    assert AccountLink.objects.filter(account=link.account).count() == 1
    assert ledger_check() == []


@pytest.mark.django_db
def test_a_reconnect_deferred_behind_a_disconnect_goes_once_credit_covers_the_balance():
    """A meter left open (its reconnect deferred while a disconnect was in flight) with credit
    taken that covers the balance below zero: the minute's relay run reconnects it; once the
    credit's date has passed, it does not."""
    link, meter = india_household(**ON_REQUEST)
    account = link.account
    charge(account, "30.00", key="used")  # -30.00, within 100.00 taken
    meter.relay = "open"
    meter.save(update_fields=["relay"])
    EmergencyCredit.objects.create(
        account=account, amount=Decimal("100.00"), taken_at=ist(10, 9), repay_by=ist(17, 9)
    )

    with time_machine.travel(ist(18, 10), tick=False):  # past repay_by: nothing to reconnect
        relay.relay_due()
    assert not RelayCommand.objects.filter(meter=meter, action="reconnect").exists()

    with time_machine.travel(ist(10, 10), tick=False):
        relay.relay_due()
        relay.relay_due()  # the next minute finds the reconnect pending: one command
    assert RelayCommand.objects.filter(meter=meter, action="reconnect").count() == 1


@pytest.mark.django_db
def test_a_share_that_may_pay_but_not_see_takes_no_credit_and_sets_no_automatic_top_up(make_api):
    """Both read the balance (and credit costs a fee): a pay-only share is told 403 and nothing
    is written; it may still pay into the account."""
    from tests.accounts.factories_shares import shared_link

    link, _meter = india_household(**ON_REQUEST)
    account = link.account
    credited(account)
    payer = shared_link(link, can_view=False, can_pay=True, receives_alerts=False)
    api = make_api(payer.user)

    taken = take(api, account)
    rules = api.get(f"/api/v1/accounts/{account.pk}/auto-topups/")

    assert (taken.status_code, taken.json()["error"]["code"]) == (403, "share_not_allowed")
    assert (rules.status_code, rules.json()["error"]["code"]) == (403, "share_not_allowed")
    assert not EmergencyCredit.objects.exists()
    assert not LedgerEntry.objects.filter(kind="emergency_credit_fee").exists()
