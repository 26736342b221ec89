"""Egypt's late path, day by day with the clock pinned: bills, reminders and fines; arrears counted
only once overdue; a formal notice after more than two months late; the removal due a month
later unless paid; staff confirming it in the admin (the contract ended, the meter replaced by a
prepaid one); removal on other grounds with evidence."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import ConsumerAccount
from billing import bills, removals, tasks
from billing.models import Balance, Bill, Conversion, RemovalOrder, TopUp
from billing.payments import topup_confirm
from core.errors import Conflict, DomainError
from meters.models import Meter
from notifications.models import Notification
from tests.accounts.factories import AccountLinkFactory, ConsumerAccountFactory, UserFactory
from tests.billing.factories import policy, progressive_tariff
from tests.meters.factories import MeterFactory, egypt
from tests.outages.factories import staff_member

CAIRO = ZoneInfo("Africa/Cairo")


@pytest.fixture
def utility(db):
    utility = egypt()
    utility.late_fine_percent = Decimal("7")
    utility.save()
    # No readings in these tests: each bill is the fixed charge, 1.00 a day.
    progressive_tariff(utility, slabs=((0, "0.68"),), fixed="1.00")
    policy(
        utility,
        bill_due_days=15,
        bill_due_reminder_days=3,
        removal_months_late=2,
        removal_notice_days=30,
    )
    return utility


@pytest.fixture
def meter(utility):
    return MeterFactory(utility=utility, payment_mode="postpaid", serial="EG-POST-7")


@pytest.fixture
def holder(meter):
    return AccountLinkFactory(account=meter.account).user


class Days:
    """The daily billing task (the beat's bills_run) each local morning, the clock pinned."""

    def __init__(self, capture, start: date) -> None:
        self.capture, self.next = capture, start

    def run_until(self, last: date) -> None:
        while self.next <= last:
            with (
                time_machine.travel(datetime.combine(self.next, time(6), CAIRO), tick=False),
                self.capture(execute=True),
            ):
                tasks.bills_run()
            self.next += timedelta(days=1)


@pytest.fixture
def days(django_capture_on_commit_callbacks):
    return Days(django_capture_on_commit_callbacks, date(2026, 10, 1))


def pay(account, amount: Decimal, key: str) -> None:
    topup = TopUp.objects.create(
        account=account,
        amount=amount,
        currency="EGP",
        channel=TopUp.Channel.COUNTER,
        gateway="counter",
        gateway_reference=f"counter_{key}",
    )
    topup_confirm(topup=topup)


def told(user) -> list[str]:
    return list(
        Notification.objects.filter(user=user)
        .order_by("created_at", "id")
        .values_list("category", flat=True)
    )


def confirm_in_admin(client, capture, order, at: datetime, **form):
    """Staff confirm at `at` (signed in then: a session from today would have expired)."""
    with time_machine.travel(at, tick=False), capture(execute=True):
        client.force_login(UserFactory._meta.model.objects.get(username="root"))
        return client.post(
            f"/admin/billing/removalorder/{order.pk}/confirm/",
            {"new_meter_serial": "EG-PRE-7", **form},
        )


@pytest.fixture
def staff(client, db):
    user = UserFactory(username="root", phone=None, is_staff=True, is_superuser=True)
    client.force_login(user)
    return user


# --- Arrears count only overdue bills -------------------------------------------------------------


def bill(account, month: date, due: date, amount: str = "30.00") -> Bill:
    return Bill.objects.create(
        account=account,
        month=month,
        kwh=Decimal(0),
        energy_amount=Decimal(0),
        fixed_amount=Decimal(amount),
        amount=Decimal(amount),
        due_date=due,
    )


def test_one_overdue_bill_and_one_issued_today_do_not_flag_arrears(meter):
    today = date(2026, 11, 1)
    bill(meter.account, date(2026, 9, 1), due=date(2026, 10, 16))  # overdue
    bill(meter.account, date(2026, 10, 1), due=today + timedelta(days=15))  # issued today

    assert bills.arrears_flag(today=today) == []
    assert not Conversion.objects.exists()


def test_two_overdue_bills_flag_arrears_once(meter):
    bill(meter.account, date(2026, 9, 1), due=date(2026, 10, 16))
    bill(meter.account, date(2026, 10, 1), due=date(2026, 11, 16))

    assert bills.arrears_flag(today=date(2026, 11, 16)) == []  # due today is not overdue
    assert [c.account_id for c in bills.arrears_flag(today=date(2026, 11, 17))] == [
        meter.account_id
    ]
    assert bills.arrears_flag(today=date(2026, 11, 18)) == []
    assert Conversion.objects.get().reason == "2 overdue bills"


def test_overdue_is_reckoned_on_the_utilitys_local_day(meter):
    bill(meter.account, date(2026, 9, 1), due=date(2026, 10, 16))
    bill(meter.account, date(2026, 10, 1), due=date(2026, 11, 30))

    # 23:30 UTC on 30 November is already 1 December in Cairo (UTC+2): the second bill is late.
    with time_machine.travel(datetime(2026, 11, 30, 22, 30, tzinfo=UTC), tick=False):
        flagged = bills.arrears_flag()
    assert [c.account_id for c in flagged] == [meter.account_id]


def test_arrears_flag_costs_the_same_for_many_accounts_as_for_one(utility):
    """One GROUP BY … HAVING and one insert per utility: no query per account or per bill."""
    today = date(2026, 12, 1)

    def household(overdue: int, issued_today: int = 0) -> ConsumerAccount:
        account = ConsumerAccountFactory(utility=utility)
        for n in range(overdue):
            bill(account, date(2026, 1 + n, 1), due=date(2026, 2 + n, 15))
        for _ in range(issued_today):
            bill(account, date(2026, 11, 1), due=today + timedelta(days=15))
        return account

    first = household(2)
    with CaptureQueriesContext(connection) as one:
        assert [c.account_id for c in bills.arrears_flag(today=today, utility=utility)] == [
            first.pk
        ]

    more = [household(2) for _ in range(12)] + [household(3) for _ in range(3)]
    for _ in range(20):
        household(1, issued_today=1)  # not arrears: one bill is not overdue yet
    with CaptureQueriesContext(connection) as many:
        flagged = bills.arrears_flag(today=today, utility=utility)

    assert sorted(c.account_id for c in flagged) == sorted(a.pk for a in more)
    assert len(many.captured_queries) == len(one.captured_queries)
    with CaptureQueriesContext(connection) as again:
        assert bills.arrears_flag(today=today, utility=utility) == []
    assert len(again.captured_queries) <= len(one.captured_queries)


def test_the_daily_issue_finds_accounts_without_walking_the_billed_ones(utility):
    """Accounts already billed for last month cost nothing: one query finds those that are not."""
    today = date(2026, 11, 1)
    for _ in range(15):
        billed = MeterFactory(utility=utility, payment_mode="postpaid").account
        bill(billed, date(2026, 10, 1), due=date(2026, 11, 16))
    with CaptureQueriesContext(connection) as queries:
        assert bills.bills_issue_due(utility=utility, today=today) == 0
    assert len(queries.captured_queries) == 1


# --- The late path end to end --------------------------------------------------------------------


def test_the_late_path_from_the_first_bill_to_the_removal_confirmed_in_the_admin(
    meter, holder, days, client, staff, sms_outbox, django_capture_on_commit_callbacks
):
    account = meter.account
    days.run_until(date(2026, 10, 17))
    september = Bill.objects.get(account=account, month=date(2026, 9, 1))
    assert (september.amount, september.due_date) == (Decimal("30.00"), date(2026, 10, 16))
    # Issued on 1 October, reminded 3 days before it is due, fined 7 % the day after.
    assert told(holder) == ["bill_issued", "bill_due_soon", "bill_fined"]
    reminder = Notification.objects.get(user=holder, category="bill_due_soon")
    assert reminder.created_at.astimezone(CAIRO).date() == date(2026, 10, 13)

    days.run_until(date(2026, 11, 17))
    flagged = Conversion.objects.get(account=account)  # two overdue bills: flagged for prepaid
    assert flagged.status == "flagged"

    # Exactly two months late is not more than two months late: no notice on 16 December.
    days.run_until(date(2026, 12, 16))
    assert not RemovalOrder.objects.exists()

    days.run_until(date(2026, 12, 17))
    order = RemovalOrder.objects.get()
    # September 32.10 and October 33.17 with their fines, November 32.10 (fined this morning).
    assert (order.ground, order.status, order.arrears) == (
        "arrears",
        "notice_sent",
        Decimal("97.37"),
    )
    assert (order.arrears_due_before, order.removal_due_on) == (
        date(2026, 12, 17),
        date(2027, 1, 16),
    )
    notice = Notification.objects.get(user=holder, category="removal_notice")
    assert notice.body == (
        f"Account {account.consumer_id} has EGP 97.37 in overdue bills. If they are not paid "
        "before Sat, Jan 16, the meter will be removed and the contract ended. Pay now to keep "
        "your supply."
    )
    # Urgent: the holder has no device, so it went by SMS as well.
    assert [m.body for m in sms_outbox if m.to == holder.phone] == [
        f"{notice.title}: {notice.body}"
    ]

    days.run_until(date(2027, 1, 15))
    order.refresh_from_db()
    assert order.status == "notice_sent"
    assert Notification.objects.filter(category="removal_notice").count() == 1  # once

    days.run_until(date(2027, 1, 16))
    order.refresh_from_db()
    assert order.status == "removal_due"
    assert ConsumerAccount.objects.get(pk=account.pk).status == "active"
    page = client.get(f"/admin/billing/removalorder/{order.pk}/change/").content.decode()
    assert "Confirm removal" in page and "97.37 EGP" in page

    response = confirm_in_admin(
        client,
        django_capture_on_commit_callbacks,
        order,
        datetime(2027, 1, 16, 11, tzinfo=CAIRO),
        new_consumer_id="EG-PRE-0007",
    )

    assert response.status_code == 302
    order.refresh_from_db()
    account.refresh_from_db()
    assert (order.status, order.confirmed_by) == ("removal_confirmed", staff)
    assert account.status == "closed"
    # The conversion arrears flagged is the one carried out: a prepaid account, the arrears as debt.
    conversion = order.conversion
    assert conversion.pk == flagged.pk and conversion.status == "done"
    assert conversion.new_account.consumer_id == "EG-PRE-0007"
    owed = conversion.arrears
    assert owed == Decimal("144.37")  # + December 31.00 and 16 days of January (final bill)
    assert Balance.objects.get(account=conversion.new_account).debt == owed
    old, new = Meter.objects.get(serial="EG-POST-7"), Meter.objects.get(serial="EG-PRE-7")
    assert (old.status, new.payment_mode) == ("removed", "prepaid")
    removed = Notification.objects.get(user=holder, category="removal_confirmed")
    assert removed.body == (
        f"The meter of account {account.consumer_id} was removed (bills unpaid after a formal "
        f"notice) and its contract has ended. A prepaid meter replaces it; the EGP {owed:.2f} "
        "still owed is recovered from your top-ups."
    )
    assert f"{removed.title}: {removed.body}" in [m.body for m in sms_outbox]
    # September to December were announced; January's final bill is settled by the conversion.
    assert told(holder).count("bill_issued") == 4

    # Nothing more happens to the closed contract.
    days.run_until(date(2027, 2, 20))
    assert RemovalOrder.objects.count() == 1
    assert not Bill.objects.filter(account=account, fined_at__gte=datetime(2027, 1, 17, tzinfo=UTC))


def test_paying_the_arrears_during_the_notice_period_cancels_the_order(meter, holder, days):
    account = meter.account
    days.run_until(date(2026, 12, 17))
    order = RemovalOrder.objects.get()

    with time_machine.travel(datetime(2026, 12, 18, 10, tzinfo=CAIRO), tick=False):
        pay(account, Decimal("32.10"), "part")  # September only: the notice still stands
    days.run_until(date(2026, 12, 20))
    order.refresh_from_db()
    assert order.status == "notice_sent"

    with time_machine.travel(datetime(2026, 12, 20, 10, tzinfo=CAIRO), tick=False):
        pay(account, order.arrears - Decimal("32.10"), "rest")
    days.run_until(date(2027, 1, 20))

    order.refresh_from_db()
    assert order.status == "cancelled" and order.cancel_reason == removals.PAID
    assert order.cancelled_at.astimezone(CAIRO).date() == date(2026, 12, 21)
    assert RemovalOrder.objects.count() == 1  # December's bill is late, not two months late
    assert ConsumerAccount.objects.get(pk=account.pk).status == "active"


def test_arrears_paid_after_the_removal_fell_due_stop_staff_from_removing(
    meter, holder, days, client, staff, django_capture_on_commit_callbacks
):
    """The rule is checked again where the order executes, not only by the daily run."""
    days.run_until(date(2027, 1, 16))
    order = RemovalOrder.objects.get(status="removal_due")
    with time_machine.travel(datetime(2027, 1, 16, 9, tzinfo=CAIRO), tick=False):
        pay(meter.account, order.arrears, "this-morning")

    response = confirm_in_admin(
        client, django_capture_on_commit_callbacks, order, datetime(2027, 1, 16, 11, tzinfo=CAIRO)
    )

    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == "cancelled" and order.conversion is None
    assert ConsumerAccount.objects.get(pk=meter.account_id).status == "active"
    assert Meter.objects.get(serial="EG-POST-7").status == "active"
    assert not Meter.objects.filter(serial="EG-PRE-7").exists()
    assert not Notification.objects.filter(category="removal_confirmed").exists()


def test_a_formal_notice_reaches_a_mobile_nobody_linked_by_sms(
    meter, days, sms_outbox, django_capture_on_commit_callbacks
):
    """The law's notice does not depend on the app: in the utility's language, to the number."""
    days.run_until(date(2026, 12, 17))

    assert not Notification.objects.exists()
    notices = [m for m in sms_outbox if m.to == meter.account.registered_mobile]
    assert [m.body for m in notices] == [
        f"إنذار رسمي بإزالة العداد: على حسابك رقم {meter.account.consumer_id} فواتير متأخرة "
        "قيمتها 97.37 ج.م.. إن لم تُسدَّد قبل السبت، 16 يناير فسيُزال العداد ويُنهى التعاقد. "
        "ادفع الآن لتبقى الكهرباء متصلة."
    ]


def test_the_late_path_is_off_unless_the_policy_sets_it(meter, holder, days):
    policy(meter.utility, removal_months_late=None, bill_due_reminder_days=None)
    days.run_until(date(2027, 1, 20))
    assert not RemovalOrder.objects.exists()
    assert "bill_due_soon" not in told(holder) and "bill_fined" in told(holder)


def test_a_move_out_during_the_notice_cancels_the_order(meter, holder, days):
    from billing import moves

    days.run_until(date(2026, 12, 17))
    with time_machine.travel(datetime(2026, 12, 18, 10, tzinfo=CAIRO), tick=False):
        moves.move_out(
            account=meter.account,
            choice=moves.MoveOutChoice(debt="write_off", reason="Consumer left the country"),
        )
    days.run_until(date(2026, 12, 19))
    order = RemovalOrder.objects.get()
    assert order.status == "cancelled" and order.cancel_reason == "The account was closed."


# --- Removal on other grounds ----------------------------------------------------------------------


EVIDENCE = "Seal 4471 broken and a wire bypassing the meter, found at the inspection of 3 Dec."


def test_staff_record_tampering_with_evidence_and_confirm_the_removal(
    meter, holder, client, staff, sms_outbox, django_capture_on_commit_callbacks
):
    listing = client.get("/admin/billing/removalorder/").content.decode()
    assert "Record removal grounds" in listing
    at = datetime(2026, 12, 3, 14, tzinfo=CAIRO)
    with time_machine.travel(at, tick=False):
        recorded = client.post(
            "/admin/billing/removalorder/record/",
            {
                "account": meter.account.pk,
                "ground": "tampering",
                "evidence": EVIDENCE,
                "evidence_data": '{"report": "INS-2026-114", "seal": "4471"}',
            },
        )
    assert recorded.status_code == 302
    order = RemovalOrder.objects.get()
    assert (order.ground, order.status, order.created_by) == ("tampering", "removal_due", staff)
    assert order.evidence == EVIDENCE
    assert order.evidence_data == {"report": "INS-2026-114", "seal": "4471"}

    response = confirm_in_admin(
        client, django_capture_on_commit_callbacks, order, at + timedelta(hours=2)
    )

    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == "removal_confirmed"
    assert ConsumerAccount.objects.get(pk=meter.account_id).status == "closed"
    assert order.conversion.reason == "Meter removal: Tampering with the meter or its seals"
    removed = Notification.objects.get(user=holder, category="removal_confirmed")
    assert "was removed (tampering with the meter or its seals)" in removed.body
    assert f"EGP {order.conversion.arrears:.2f} still owed" in removed.body


def test_a_ground_needs_its_evidence_and_is_recorded_once(meter):
    staff = UserFactory(is_staff=True)
    with pytest.raises(DomainError) as short:
        removals.removal_record(account=meter.account, ground="bypass", evidence="bad", staff=staff)
    assert short.value.code == "evidence_required"
    with pytest.raises(DomainError) as arrears:
        removals.removal_record(
            account=meter.account, ground="arrears", evidence=EVIDENCE, staff=staff
        )
    assert arrears.value.code == "unknown_ground"

    removals.removal_record(account=meter.account, ground="bypass", evidence=EVIDENCE, staff=staff)
    with pytest.raises(Conflict) as twice:
        removals.removal_record(
            account=meter.account, ground="bypass", evidence=EVIDENCE, staff=staff
        )
    assert twice.value.code == "removal_already_open"
    demolition = removals.removal_record(
        account=meter.account, ground="demolition", evidence=EVIDENCE, staff=staff
    )
    assert demolition.status == "removal_due"

    prepaid = MeterFactory(utility=meter.utility).account
    with pytest.raises(Conflict) as not_postpaid:
        removals.removal_record(account=prepaid, ground="bypass", evidence=EVIDENCE, staff=staff)
    assert not_postpaid.value.code == "not_postpaid"


def test_the_admin_shows_a_short_evidence_as_a_form_error(meter, client, staff):
    response = client.post(
        "/admin/billing/removalorder/record/",
        {
            "account": meter.account.pk,
            "ground": "tampering",
            "evidence": "seal",
        },
    )
    assert response.status_code == 200
    assert "Describe what was found" in response.content.decode()
    assert not RemovalOrder.objects.exists()


def test_staff_cancel_an_open_order_with_a_reason(meter, client, staff):
    order = removals.removal_record(
        account=meter.account, ground="load_over_contract", evidence=EVIDENCE, staff=staff
    )
    response = client.post(
        f"/admin/billing/removalorder/{order.pk}/cancel/", {"reason": "Permit found on file."}
    )
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == "cancelled" and order.cancel_reason.startswith("Permit found on file.")
    with pytest.raises(Conflict):
        removals.removal_confirm(order=order, staff=staff, new_meter_serial="EG-PRE-9")


def test_only_staff_of_the_orders_utility_with_the_permission_confirm(meter, client):
    from django.contrib.auth.models import Permission

    from tests.accounts.factories import UtilityFactory
    from tests.meters.factories import EGYPT

    order = removals.removal_record(
        account=meter.account, ground="bypass", evidence=EVIDENCE, staff=UserFactory()
    )
    may_confirm = Permission.objects.get(codename="change_removalorder")
    without_permission = staff_member(meter.utility, role="support")
    other_utility = staff_member(UtilityFactory(**{**EGYPT, "code": "eg-sdedc"}), role="support")
    other_utility.user_permissions.add(may_confirm)
    for user in (without_permission, other_utility):
        client.force_login(user)
        response = client.post(
            f"/admin/billing/removalorder/{order.pk}/confirm/", {"new_meter_serial": "EG-PRE-8"}
        )
        assert response.status_code == 302
        order.refresh_from_db()
        assert order.status == "removal_due"
    assert ConsumerAccount.objects.get(pk=meter.account_id).status == "active"
    assert not Meter.objects.filter(serial="EG-PRE-8").exists()


# --- The plan (PostgreSQL) --------------------------------------------------------------------------


def test_overdue_bills_are_read_through_the_unpaid_index_not_the_paid_history(utility):
    """Years of paid bills beside a few open ones: the daily run reads the open ones only."""
    import json

    from django.db.models import Count

    if connection.vendor != "postgresql":
        pytest.skip("query plans are PostgreSQL's")
    accounts = ConsumerAccount.objects.bulk_create(
        ConsumerAccount(
            utility=utility, consumer_id=f"H{n:05d}", registered_mobile="+201001234567", name="H"
        )
        for n in range(200)
    )
    history = [
        Bill(
            account=account,
            month=date(2010 + m // 12, m % 12 + 1, 1),
            kwh=0,
            energy_amount=0,
            fixed_amount=Decimal("30.00"),
            amount=Decimal("30.00"),
            paid_amount=Decimal("30.00"),
            status="paid",
            due_date=date(2010 + m // 12, m % 12 + 1, 16),
        )
        for account in accounts
        for m in range(100)
    ]
    Bill.objects.bulk_create(history, batch_size=5000)
    for account in accounts[:5]:
        bill(account, date(2026, 9, 1), due=date(2026, 10, 16))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE billing_bill")
        cursor.execute("ANALYZE accounts_consumeraccount")

    query = (
        bills.overdue_bills(utility=utility, before=date(2026, 12, 1))
        .values("account_id")
        .annotate(overdue=Count("pk"))
    )
    plan = json.loads(query.explain(format="json"))[0]["Plan"]

    def scans(node):
        if "Scan" in node["Node Type"]:
            yield node["Node Type"], node.get("Relation Name"), node.get("Index Name")
        for child in node.get("Plans", []):
            yield from scans(child)

    found = list(scans(plan))
    assert ("Seq Scan", "billing_bill", None) not in found, found
    assert any(index == "bill_unpaid_due" for _type, _rel, index in found), found
    assert len(query) == 5


def test_roles_work_the_late_path_as_the_migration_grants(meter, client):
    """Support record a ground; approvers of the utility confirm the removal."""
    support = staff_member(meter.utility, role="support")
    approver = staff_member(meter.utility, role="approver")
    assert support.has_perm("billing.add_removalorder")
    assert not support.has_perm("billing.change_removalorder")
    assert approver.has_perm("billing.change_removalorder")
    order = removals.removal_record(
        account=meter.account, ground="bypass", evidence=EVIDENCE, staff=support
    )
    client.force_login(approver)

    response = client.post(
        f"/admin/billing/removalorder/{order.pk}/confirm/", {"new_meter_serial": "EG-PRE-9"}
    )

    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == "removal_confirmed"
    assert ConsumerAccount.objects.get(pk=meter.account_id).status == "closed"
