"""Egypt's postpaid regime: bills, the 7% late fine, two unpaid bills flag a conversion to prepaid."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from accounts.models import AccountLink, ConsumerAccount
from billing import bills, moves
from billing.models import Balance, Bill, Conversion, LedgerEntry, TopUp
from billing.payments import topup_confirm
from meters import services as meter_services
from meters.models import Meter
from tests.accounts.factories import AccountLinkFactory, UserFactory
from tests.billing.factories import policy, progressive_tariff
from tests.meters.factories import MeterFactory, egypt

Q = timedelta(minutes=15)


@pytest.fixture
def meter(db):
    utility = egypt()
    utility.late_fine_percent = Decimal("7")  # Egypt: 7% of the unpaid bill
    utility.save()
    progressive_tariff(utility, slabs=((0, "0.68"), (50, "0.78"), (100, "0.95")), fixed="1.00")
    policy(utility, bill_due_days=15, debt_recovery_percent=Decimal("25"))
    return MeterFactory(utility=utility, payment_mode="postpaid", serial="EG-POST-1")


def use(meter, month_start_utc, kwh_per_day, days):
    blocks = [
        {
            "meter": meter.serial,
            "start": (month_start_utc + timedelta(days=d)).isoformat(),
            "values": [round(kwh_per_day * 1000 / 96)] * 96,
        }
        for d in range(days)
    ]
    meter_services.readings_ingest(utility=meter.utility, blocks=blocks, source="test")


def test_a_monthly_bill_prices_the_month_by_slabs(meter):
    september = datetime(
        2026, 8, 31, 21, tzinfo=UTC
    )  # Cairo midnight, 1 September (UTC+3 in summer)
    use(meter, september, 4.8, 30)  # 96 × 50 Wh = 4.8 kWh a day, 144 kWh in the month

    bill = bills.bill_issue(
        account=meter.account, month=date(2026, 9, 1), issued_on=date(2026, 10, 1)
    )

    assert bill.kwh == Decimal("144.000")
    assert bill.energy_amount == Decimal("50") * Decimal("0.68") + 50 * Decimal(
        "0.78"
    ) + 44 * Decimal("0.95")
    assert bill.fixed_amount == Decimal("30.00")
    assert bill.due_date == date(2026, 10, 16)
    assert Balance.objects.get(account=meter.account).amount == -bill.amount
    assert bills.bill_issue(account=meter.account, month=date(2026, 9, 1)) == bill  # once
    assert LedgerEntry.objects.filter(kind="bill").count() == 1


def test_a_late_bill_is_fined_seven_percent_of_what_is_unpaid_once(meter):
    bill = Bill.objects.create(
        account=meter.account,
        month=date(2026, 9, 1),
        kwh=Decimal(100),
        energy_amount=Decimal("200.00"),
        fixed_amount=Decimal("0"),
        amount=Decimal("200.00"),
        paid_amount=Decimal("50.00"),
        due_date=date(2026, 10, 16),
    )

    assert bills.fines_apply(today=date(2026, 10, 16)) == []  # due today: not late yet
    fined = bills.fines_apply(today=date(2026, 10, 17))
    again = bills.fines_apply(today=date(2026, 10, 30))

    assert [b.pk for b in fined] == [bill.pk] and again == []
    bill.refresh_from_db()
    assert bill.fine_amount == Decimal("10.50")  # 7% of the 150.00 unpaid
    assert LedgerEntry.objects.get(kind="late_fine").amount == Decimal("-10.50")


def test_the_fine_follows_the_utilitys_percentage(meter):
    meter.utility.late_fine_percent = Decimal("5")
    meter.utility.save()
    Bill.objects.create(
        account=meter.account,
        month=date(2026, 9, 1),
        kwh=Decimal(1),
        energy_amount=Decimal("80.00"),
        fixed_amount=Decimal("0"),
        amount=Decimal("80.00"),
        due_date=date(2026, 10, 1),
    )
    bills.fines_apply(today=date(2026, 10, 2))
    assert LedgerEntry.objects.get(kind="late_fine").amount == Decimal("-4.00")


def test_two_overdue_bills_flag_the_account_for_prepaid_and_staff_convert_it(meter):
    for month in (date(2026, 8, 1), date(2026, 9, 1)):
        bills.bill_issue(account=meter.account, month=month, issued_on=month + timedelta(days=31))
    # Due 16 September and 17 October: on the 17th the second is not overdue yet.
    assert bills.arrears_flag(today=date(2026, 10, 17)) == []
    flagged_now = bills.arrears_flag(today=date(2026, 10, 18))
    assert [c.account_id for c in flagged_now] == [meter.account_id]
    assert bills.arrears_flag(today=date(2026, 10, 19)) == []  # flagged once
    owed = -Balance.objects.get(account=meter.account).amount
    assert owed == Decimal("61.00")  # August and September: 61 days of 1.00

    flagged = Conversion.objects.get(account=meter.account)
    assert flagged.status == "flagged" and flagged.reason == "2 overdue bills"
    staff = UserFactory(is_staff=True)
    holder = AccountLinkFactory(account=meter.account)
    done = moves.conversion_carry_out(
        conversion=flagged, new_meter_serial="EG-PRE-1", new_consumer_id="EG-9001", staff=staff
    )

    # The postpaid contract ends: its final bills (the months since September) are issued and
    # everything it owed is carried as debt to the new prepaid account.
    old_account, new_account = ConsumerAccount.objects.get(pk=meter.account_id), done.new_account
    assert old_account.status == "closed"
    final_bills = sum(
        Bill.objects.filter(account=old_account, month__gte=date(2026, 10, 1)).values_list(
            "amount", flat=True
        )
    )
    assert final_bills > 0
    assert done.status == "done" and done.arrears == owed + final_bills
    old = Meter.objects.get(serial="EG-POST-1")
    new = Meter.objects.get(serial="EG-PRE-1")
    assert (old.status, old.account_id) == ("removed", None)
    assert (new.payment_mode, new.account_id) == ("prepaid", new_account.pk)
    assert new_account.consumer_id == "EG-9001"
    assert new_account.registered_mobile == old_account.registered_mobile
    assert Balance.objects.get(account=old_account).amount == 0
    balance = Balance.objects.get(account=new_account)
    assert (balance.amount, balance.debt) == (Decimal("0"), done.arrears)
    assert set(Bill.objects.values_list("status", flat=True)) == {"transferred"}
    # The holder keeps the old contract's bills (read-only) and has the new account linked.
    links = {link.account_id: link for link in AccountLink.objects.filter(user=holder.user)}
    assert links[old_account.pk].end_reason == "account_closed"
    assert links[new_account.pk].unlinked_at is None

    # Each top-up now repays a quarter of itself towards the debt.
    topup = TopUp.objects.create(
        account=new_account, amount=Decimal("100.00"), currency="EGP", channel="app"
    )
    topup_confirm(topup=topup)
    balance.refresh_from_db()
    assert (balance.amount, balance.debt) == (Decimal("75.00"), done.arrears - Decimal("25.00"))
    with pytest.raises(Exception, match="already"):
        moves.conversion_carry_out(conversion=flagged, new_meter_serial="EG-PRE-2", staff=staff)


def test_a_payment_settles_the_oldest_bill_first(meter):
    for month in (date(2026, 8, 1), date(2026, 9, 1)):
        bills.bill_issue(account=meter.account, month=month, issued_on=month + timedelta(days=31))
    topup = TopUp.objects.create(
        account=meter.account, amount=Decimal("40.00"), currency="EGP", channel="app"
    )
    topup_confirm(topup=topup)
    august, september = Bill.objects.order_by("month")
    assert (august.status, august.paid_amount) == ("paid", Decimal("31.00"))
    assert (september.status, september.paid_amount) == ("unpaid", Decimal("9.00"))


def test_a_postpaid_balance_answers_what_is_owed_bill_by_bill(meter, make_api):
    """Not a prepaid balance: the open bills with their fines and due dates, the total due and
    what is overdue; no emergency credit or days left."""
    september, october = (
        datetime(2026, 8, 31, 21, tzinfo=UTC),
        datetime(2026, 9, 30, 21, tzinfo=UTC),
    )
    use(meter, september, 4.8, 30)
    use(meter, october, 2.4, 31)
    first = bills.bill_issue(
        account=meter.account, month=date(2026, 9, 1), issued_on=date(2026, 10, 1)
    )
    bills.fines_apply(today=date(2026, 10, 20))  # September's bill is overdue: fined 7 %
    second = bills.bill_issue(
        account=meter.account, month=date(2026, 10, 1), issued_on=date(2026, 11, 1)
    )
    with time_machine.travel(datetime(2026, 11, 5, 9, tzinfo=UTC)):
        api = make_api(AccountLinkFactory(account=meter.account).user)
        body = api.get(f"/api/v1/accounts/{meter.account.pk}/balance/").json()
        bills_body = api.get(f"/api/v1/accounts/{meter.account.pk}/bills/").json()

    first.refresh_from_db()
    assert body["payment_mode"] == "postpaid"
    assert "emergency_credit" not in body and "projected_days_left" not in body
    assert [b["month"] for b in body["open_bills"]] == ["2026-09", "2026-10"]
    september_bill = body["open_bills"][0]
    assert september_bill["fine"] == f"{first.fine_amount:.2f}" != "0.00"
    assert september_bill["unpaid"] == f"{first.amount + first.fine_amount:.2f}"
    assert september_bill["overdue"] is True and body["open_bills"][1]["overdue"] is False
    assert body["amount_due"] == f"{first.unpaid + second.unpaid:.2f}"
    assert body["overdue"] == f"{first.unpaid:.2f}"
    assert body["next_due_date"] == second.due_date.isoformat()
    assert body["credit"] == "0.00"
    assert [b["month"] for b in bills_body] == ["2026-10", "2026-09"]


def test_paying_the_bills_leaves_nothing_due_and_ahead_is_credit(meter, make_api):
    september = datetime(2026, 8, 31, 21, tzinfo=UTC)
    use(meter, september, 4.8, 30)
    bill = bills.bill_issue(
        account=meter.account, month=date(2026, 9, 1), issued_on=date(2026, 10, 1)
    )
    topup = TopUp.objects.create(
        account=meter.account,
        amount=bill.amount + Decimal("10.00"),
        currency="EGP",
        channel=TopUp.Channel.COUNTER,
        gateway="counter",
        gateway_reference="counter_t1",
    )
    topup_confirm(topup=topup)
    api = make_api(AccountLinkFactory(account=meter.account).user)

    body = api.get(f"/api/v1/accounts/{meter.account.pk}/balance/").json()

    assert body["open_bills"] == [] and body["amount_due"] == "0.00"
    assert body["credit"] == "10.00"
    assert body["last_payment"]["amount"] == f"{topup.amount:.2f}"


def test_a_postpaid_payment_is_acknowledged_without_prepaid_balance_alerts(
    meter, django_capture_on_commit_callbacks
):
    """The balance check after a payment (the worker crashed on a postpaid account before)."""
    from notifications.models import Notification

    use(meter, datetime(2026, 8, 31, 21, tzinfo=UTC), 4.8, 30)
    bill = bills.bill_issue(
        account=meter.account, month=date(2026, 9, 1), issued_on=date(2026, 10, 1)
    )
    link = AccountLinkFactory(account=meter.account)
    topup = TopUp.objects.create(
        account=meter.account, amount=Decimal("10.00"), currency="EGP", channel="app"
    )

    with django_capture_on_commit_callbacks(execute=True):
        topup_confirm(topup=topup)

    categories = set(Notification.objects.filter(user=link.user).values_list("category", flat=True))
    assert categories == {"topup_received"}
    receipt = Notification.objects.get(user=link.user)
    assert f"{bill.amount - Decimal('10.00'):.2f}" in receipt.body


def test_a_month_with_a_clock_change_bills_its_own_quarter_hours(meter):
    """Cairo moves its clocks forward on 24 April 2026: April has 30 days less one hour, 2,876
    quarter-hours. The bill reads exactly those, not the first hour of May (billed in May)."""
    use(meter, datetime(2026, 3, 31, tzinfo=UTC), 9.6, 32)  # 100 Wh every quarter-hour

    april = bills.bill_issue(account=meter.account, month=date(2026, 4, 1))
    may = bills.bill_issue(account=meter.account, month=date(2026, 5, 1))

    assert april.kwh == Decimal("287.600")  # 2,876 × 100 Wh
    # May's bill starts at its own local midnight (21:00 UTC on 30 April): the readings of
    # 1 May local, 27 hours of the 32 days sent, are May's and nobody's twice.
    assert may.kwh == Decimal("10.800")
