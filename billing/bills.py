"""Postpaid: monthly bills from readings, due dates, late fines, arrears and conversion to prepaid."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import ConsumerAccount
from billing.ledger import ledger_post
from billing.models import Balance, Bill, Conversion, LedgerEntry, Tariff
from billing.relay import policy_for
from billing.tariffs import WH_PER_KWH, tariff_for
from core.errors import DomainError
from core.money import money_quantize
from meters.models import Meter, MeterAssignment
from meters.selectors import meter_series
from meters.storage import INTERVAL, PRESENT


def _month_bounds(month: date, zone) -> tuple[datetime, datetime]:
    start = datetime.combine(month, datetime.min.time(), zone)
    following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start, datetime.combine(following, datetime.min.time(), zone)


def bill_issue(*, account: ConsumerAccount, month: date, issued_on: date | None = None) -> Bill:
    """Bill one local month of a postpaid account: energy of its postpaid meters priced by the
    tariff of that month, plus the fixed daily charge; posted to the ledger once (keyed by month)."""
    utility = account.utility
    zone = utility.zone
    start, end = _month_bounds(month, zone)
    pricing = tariff_for(utility=utility, payment_mode="postpaid", on=month)
    wh, tou_cost = 0, Decimal(0)
    # The account's own tenancies of postpaid meters within the month: a meter that moved to
    # another tenant mid-month bills each tenant for their part of it.
    tenancies = MeterAssignment.objects.filter(
        account=account, meter__payment_mode=Meter.PaymentMode.POSTPAID, start__lt=end
    ).filter(Q(end__isnull=True) | Q(end__gt=start))
    for tenancy in tenancies:
        series = meter_series(meter_id=tenancy.meter_id, start=start, end=end).keep_only(
            [(tenancy.start, tenancy.end)]
        )
        for index, (value, quality) in enumerate(zip(series.values, series.quality, strict=True)):
            if quality in PRESENT:
                wh += value
                if pricing.tariff.kind != Tariff.Kind.PROGRESSIVE:
                    local = (series.start + index * INTERVAL).astimezone(zone).time()
                    tou_cost += Decimal(value) * pricing.rate_at(local)
    kwh = Decimal(wh) / WH_PER_KWH
    energy_exact = (
        pricing.month_cost(kwh)
        if pricing.tariff.kind == Tariff.Kind.PROGRESSIVE
        else tou_cost / WH_PER_KWH
    )
    minor = utility.currency_minor_unit
    energy = money_quantize(energy_exact, minor_unit=minor)
    # The fixed charge is for the local days the account held a meter: a tenant who moved in or
    # out mid-month pays for their days only.
    held_days = {
        day
        for day in (
            month + timedelta(days=n) for n in range(end.date().toordinal() - month.toordinal())
        )
        for tenancy in tenancies
        if tenancy.start < datetime.combine(day + timedelta(days=1), datetime.min.time(), zone)
        and (tenancy.end is None or tenancy.end > datetime.combine(day, datetime.min.time(), zone))
    }
    fixed = money_quantize(pricing.tariff.fixed_daily_charge * len(held_days), minor_unit=minor)
    issued_on = issued_on or timezone.now().astimezone(zone).date()
    with transaction.atomic():
        bill, created = Bill.objects.get_or_create(
            account=account,
            month=month,
            defaults={
                "kwh": kwh,
                "energy_amount": energy,
                "fixed_amount": fixed,
                "amount": energy + fixed,
                "due_date": issued_on + timedelta(days=policy_for(utility).bill_due_days),
            },
        )
        if created:
            ledger_post(
                account=account,
                kind=LedgerEntry.Kind.BILL,
                amount=-(energy + fixed),
                key=f"bill:{account.pk}:{month:%Y-%m}",
                description=f"Bill for {month:%B %Y}: {kwh.normalize():f} kWh",
                period_start=start,
                period_end=end,
                kwh=kwh,
                meta={"bill": bill.pk, "tariff": pricing.tariff.pk},
            )
            # Credit already on the account (an overpayment) pays the new bill at once.
            balance = Balance.objects.get(account=account)
            if balance.amount >= 0:
                bill.paid_amount, bill.status = bill.amount, Bill.Status.PAID
                bill.save(update_fields=["paid_amount", "status"])
            elif balance.amount > -bill.amount:
                bill.paid_amount = bill.amount + balance.amount
                bill.save(update_fields=["paid_amount"])
    return bill


def fines_apply(*, today: date) -> list[Bill]:
    """Fine each bill still unpaid after its due date, once: the utility's percentage (7% in Egypt)
    of the unpaid amount."""
    fined = []
    for bill in (
        Bill.objects.select_related("account__utility")
        .filter(status=Bill.Status.UNPAID, due_date__lt=today, fined_at__isnull=True)
        .exclude(account__status=ConsumerAccount.Status.CLOSED)
    ):
        utility = bill.account.utility
        if not utility.late_fine_percent:
            continue
        with transaction.atomic():
            bill = Bill.objects.select_for_update().get(pk=bill.pk)
            if bill.fined_at or bill.status != Bill.Status.UNPAID:
                continue
            fine = money_quantize(
                bill.unpaid * utility.late_fine_percent / 100,
                minor_unit=utility.currency_minor_unit,
            )
            ledger_post(
                account=bill.account,
                kind=LedgerEntry.Kind.LATE_FINE,
                amount=-fine,
                key=f"fine:{bill.pk}",
                description=f"Late payment fine, {utility.late_fine_percent.normalize():f}% of the unpaid {bill.month:%B %Y} bill",
                meta={"bill": bill.pk, "unpaid": str(bill.unpaid)},
            )
            bill.fine_amount, bill.fined_at = fine, timezone.now()
            bill.save(update_fields=["fine_amount", "fined_at"])
        fined.append(bill)
    return fined


def arrears_flag() -> list[Conversion]:
    """Accounts with at least the utility's number of unpaid bills (two in Egypt) are flagged for
    conversion to prepaid; staff carry it out in the admin."""
    flagged = []
    counts: dict[int, int] = {}
    for account_id in (
        Bill.objects.filter(status=Bill.Status.UNPAID)
        .exclude(account__status=ConsumerAccount.Status.CLOSED)
        .values_list("account_id", flat=True)
    ):
        counts[account_id] = counts.get(account_id, 0) + 1
    for account in ConsumerAccount.objects.select_related("utility").filter(pk__in=counts):
        needed = account.utility.unpaid_bills_for_prepaid_conversion
        if needed and counts[account.pk] >= needed:
            conversion, created = Conversion.objects.get_or_create(
                account=account,
                status=Conversion.Status.FLAGGED,
                defaults={"reason": f"{counts[account.pk]} unpaid bills"},
            )
            if created:
                flagged.append(conversion)
    return flagged


def bills_daily(*, today: date | None = None) -> int:
    """Issue last month's bills to postpaid accounts that have none, fine what is overdue, flag arrears."""
    issued = 0
    accounts = (
        ConsumerAccount.objects.select_related("utility")
        .filter(meters__payment_mode=Meter.PaymentMode.POSTPAID)
        .exclude(meters__status=Meter.Status.REMOVED)
        .distinct()
    )
    for account in accounts:
        local_today = today or timezone.now().astimezone(account.utility.zone).date()
        last_month = (local_today.replace(day=1) - timedelta(days=1)).replace(day=1)
        if not Bill.objects.filter(account=account, month=last_month).exists():
            try:
                bill_issue(account=account, month=last_month, issued_on=local_today)
                issued += 1
            except DomainError:  # no postpaid tariff for that month: nothing to bill with
                continue
    fines_apply(today=today or timezone.now().date())
    arrears_flag()
    return issued
