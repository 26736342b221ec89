"""Postpaid: monthly bills from readings, due dates, reminders, late fines, arrears and conversion
to prepaid. Egypt's late path (formal notice, removal) is in billing.removals; docs/postpaid.md
lists each rule with its source and where it is enforced."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from accounts.models import AccountLink, ConsumerAccount, Utility
from billing.ledger import ledger_post
from billing.models import Balance, Bill, Conversion, LedgerEntry, Tariff
from billing.relay import policy_for
from billing.tariffs import WH_PER_KWH, tariff_for
from core.errors import DomainError
from core.money import money_quantize
from core.timebuckets import local_midnight
from meters.models import Meter, MeterAssignment
from meters.selectors import meter_series
from meters.storage import INTERVAL, PRESENT
from notifications import categories
from notifications.messages import message_render
from notifications.services import alert_create
from notifications.tasks import send_sms

UNPAID = Bill.Status.UNPAID
CLOSED = ConsumerAccount.Status.CLOSED


def _month_bounds(month: date, zone) -> tuple[datetime, datetime]:
    """The local month's first and following first instants, in UTC. In UTC, not in `zone`:
    Python subtracts two times of the same zone on the wall clock, so a month with a daylight-
    saving change (Cairo's April and October) would be read an hour too long or too short."""
    following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return local_midnight(month, zone), local_midnight(following, zone)


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
            month + timedelta(days=n) for n in range((end.astimezone(zone).date() - month).days)
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
            # A final bill of a contract ending now (a move-out, a conversion: the tenancy is
            # already closed) is settled by the move, whose statement tells the consumer.
            ongoing = MeterAssignment.objects.filter(account=account, end__isnull=True).exists()
            if bill.status == UNPAID and ongoing:
                holders_tell(
                    account=account,
                    category=categories.BILL_ISSUED,
                    key=f"bill:{bill.pk}:issued",
                    context={"amount": bill.unpaid, "at": bill.due_date},
                )
    return bill


def utility_days(
    *, today: date | None, utility: Utility | None = None
) -> Iterator[tuple[Utility, date]]:
    """Each utility (or the one given) with its own local day; `today` when a caller pins it."""
    now = timezone.now()
    for each in [utility] if utility else Utility.objects.order_by("pk"):
        yield each, today or now.astimezone(each.zone).date()


def holders_tell(
    *, account: ConsumerAccount, category: str, key: str, context: dict[str, Any]
) -> None:
    """An alert to every user linked to the account, in the caller's transaction. An urgent one
    (a formal notice, a removal) reaches a registered mobile that nobody linked by SMS, in the
    utility's language: the notice the law requires must not depend on the app."""
    utility = account.utility
    context = {"account_id": account.pk, "consumer_id": account.consumer_id, **context}
    links = AccountLink.objects.filter(
        account=account, unlinked_at__isnull=True, receives_alerts=True
    )
    users = [link.user for link in links.select_related("user")]
    for user in users:
        alert_create(user=user, category=category, dedupe_key=key, context=context, utility=utility)
    if not users and categories.category_get(category).urgent and account.registered_mobile:
        text = message_render(
            category=category,
            language=utility.default_language,
            context=context,
            utility=utility,
        )
        mobile, body = account.registered_mobile, f"{text.title}: {text.body}"
        transaction.on_commit(lambda: send_sms.delay(mobile, body, utility.code))


def bills_issue_due(*, utility: Utility, today: date) -> int:
    """Issue last month's bill to each postpaid account of the utility that has none yet: the
    accounts come from one query (NOT EXISTS a bill of that month), not a walk over all of them."""
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    # One row per account, with no join over its meters and no DISTINCT: the accounts of the
    # postpaid meters in service, less those with a removed meter or last month's bill. In the
    # month's first days that is every postpaid account, which the planner rightly hashes; a
    # partial index of postpaid meters in service (meter_postpaid_in_service) spares it the rest.
    in_service = (
        Meter.objects.filter(utility=utility, payment_mode=Meter.PaymentMode.POSTPAID)
        .exclude(status=Meter.Status.REMOVED)
        .values("account_id")
    )
    removed = Meter.objects.filter(account=OuterRef("pk"), status=Meter.Status.REMOVED)
    accounts = (
        ConsumerAccount.objects.select_related("utility")
        .filter(utility=utility, pk__in=in_service)
        .filter(~Exists(removed))
        .filter(~Exists(Bill.objects.filter(account=OuterRef("pk"), month=last_month)))
    )
    issued = 0
    for account in accounts:
        try:
            bill_issue(account=account, month=last_month, issued_on=today)
            issued += 1
        except DomainError:  # no postpaid tariff for that month: nothing to bill with
            continue
    return issued


def overdue_bills(*, utility: Utility, before: date) -> QuerySet[Bill]:
    """The utility's bills still unpaid and due before `before` (its local today: overdue), of
    accounts still open. Read through the partial index of unpaid bills (bill_unpaid_due), so the
    cost follows the open bills, not the years of paid ones."""
    return Bill.objects.filter(
        account__utility_id=utility.pk, status=UNPAID, due_date__lt=before
    ).exclude(account__status=CLOSED)


def fines_apply(*, today: date | None = None, utility: Utility | None = None) -> list[Bill]:
    """Fine each bill still unpaid after its due date (the utility's local day), once: the
    utility's percentage (7% in Egypt) of the unpaid amount; its holders are told."""
    fined = []
    for each, day in utility_days(today=today, utility=utility):
        if not each.late_fine_percent:
            continue
        late = overdue_bills(utility=each, before=day).filter(fined_at__isnull=True)
        for bill_id, account_id in late.values_list("pk", "account_id"):
            with transaction.atomic():
                # The account's Balance row first, as every money movement does: a payment being
                # allocated to this very bill locks Balance, then the bills.
                Balance.objects.get_or_create(account_id=account_id)
                Balance.objects.select_for_update().get(account_id=account_id)
                bill = (
                    Bill.objects.select_for_update()
                    .select_related("account__utility")
                    .get(pk=bill_id)
                )
                if bill.fined_at or bill.status != UNPAID:
                    continue
                fine = money_quantize(
                    bill.unpaid * each.late_fine_percent / 100,
                    minor_unit=each.currency_minor_unit,
                )
                ledger_post(
                    account=bill.account,
                    kind=LedgerEntry.Kind.LATE_FINE,
                    amount=-fine,
                    key=f"fine:{bill.pk}",
                    description=f"Late payment fine, {each.late_fine_percent.normalize():f}% "
                    f"of the unpaid {bill.month:%B %Y} bill",
                    meta={"bill": bill.pk, "unpaid": str(bill.unpaid)},
                )
                bill.fine_amount, bill.fined_at = fine, timezone.now()
                bill.save(update_fields=["fine_amount", "fined_at"])
                holders_tell(
                    account=bill.account,
                    category=categories.BILL_FINED,
                    key=f"bill:{bill.pk}:fine",
                    context={"fine": fine, "amount": bill.unpaid, "at": bill.due_date},
                )
            fined.append(bill)
    return fined


def arrears_flag(*, today: date | None = None, utility: Utility | None = None) -> list[Conversion]:
    """Accounts with at least the utility's number of overdue bills (two in Egypt: due before the
    local today and unpaid; a bill issued today is not arrears) are flagged for conversion to
    prepaid; staff carry it out in the admin. One GROUP BY … HAVING per utility finds them and one
    insert flags them, however many accounts there are."""
    flagged: list[Conversion] = []
    for each, day in utility_days(today=today, utility=utility):
        needed = each.unpaid_bills_for_prepaid_conversion
        if not needed:
            continue
        already = Conversion.objects.filter(
            account_id=OuterRef("account_id"), status=Conversion.Status.FLAGGED
        )
        counts = dict(
            overdue_bills(utility=each, before=day)
            .filter(~Exists(already))
            .values("account_id")
            .annotate(overdue=Count("pk"))
            .filter(overdue__gte=needed)
            .values_list("account_id", "overdue")
        )
        if not counts:
            continue
        now = timezone.now()
        # A concurrent run's rows win: the partial unique index allows one flagged per account.
        Conversion.objects.bulk_create(
            [
                Conversion(account_id=account_id, reason=f"{n} overdue bills", flagged_at=now)
                for account_id, n in counts.items()
            ],
            ignore_conflicts=True,
        )
        flagged += Conversion.objects.filter(
            account_id__in=counts, status=Conversion.Status.FLAGGED, flagged_at=now
        ).order_by("account_id")
    return flagged


def bill_reminders_send(*, utility: Utility, today: date) -> list[Bill]:
    """Remind the holders of each unpaid bill due within the policy's days (none: no reminders),
    once: each bill is claimed with a conditional update, so a second or concurrent run skips it."""
    days = policy_for(utility).bill_due_reminder_days
    if days is None:
        return []
    due_soon = (
        Bill.objects.filter(
            account__utility=utility,
            status=UNPAID,
            reminded_at__isnull=True,
            due_date__gte=today,
            due_date__lte=today + timedelta(days=days),
        )
        .exclude(account__status=CLOSED)
        .select_related("account__utility")
    )
    reminded = []
    for bill in due_soon:
        with transaction.atomic():
            claimed = Bill.objects.filter(pk=bill.pk, reminded_at__isnull=True).update(
                reminded_at=timezone.now()
            )
            if not claimed:
                continue
            holders_tell(
                account=bill.account,
                category=categories.BILL_DUE_SOON,
                key=f"bill:{bill.pk}:due-soon",
                context={
                    "amount": bill.unpaid,
                    "at": bill.due_date,
                    "days": (bill.due_date - today).days,
                },
            )
        reminded.append(bill)
    return reminded


def bills_daily(*, today: date | None = None) -> int:
    """The daily postpaid run, each utility on its own local day: issue last month's bills, fine
    what is overdue, flag arrears for conversion, remind of bills due soon. Each step finds its
    work with a query, never by walking every account. Returns the bills issued."""
    issued = 0
    for utility, day in utility_days(today=today):
        issued += bills_issue_due(utility=utility, today=day)
        fines_apply(today=day, utility=utility)
        arrears_flag(today=day, utility=utility)
        bill_reminders_send(utility=utility, today=day)
    return issued
