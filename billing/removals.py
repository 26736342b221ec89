"""Egypt's late path: a formal notice to a consumer more than the policy's months late, the
removal due when the notice period ends unpaid, staff confirming it (the meter replaced by a
prepaid one, the contract ended), and removal on other grounds recorded with evidence.

"A consumer more than two months late may have the meter removed one month after a formal notice,
and the contract ended"; other grounds allow removal at once (tampering, bypass, supply to others,
preventing inspection, demolition, load over contract); a removed meter is replaced by a prepaid
one. The numbers are the utility's policy (BillingPolicy), off unless set. docs/postpaid.md.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, QuerySet, Sum
from django.utils import timezone

from accounts.models import ConsumerAccount, User, Utility
from billing import moves
from billing.bills import CLOSED, UNPAID, holders_tell, overdue_bills, utility_days
from billing.models import Balance, Bill, Conversion, RemovalOrder
from billing.relay import policy_for
from core.errors import Conflict, DomainError
from meters.models import Meter
from notifications import categories
from notifications.messages import REMOVAL_GROUNDS

ARREARS = RemovalOrder.Ground.ARREARS
IMMEDIATE_GROUNDS = [ground for ground in RemovalOrder.Ground if ground != ARREARS]
PAID = "The arrears named in the notice were paid."


def _months_back(day: date, months: int) -> date:
    """The same day `months` calendar months earlier (that month's last day if it is shorter)."""
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _arrears(account_ids: Iterable[int], *, before: date) -> dict[int, Decimal]:
    """What each account owes on its bills due before `before`, in one GROUP BY."""
    return dict(
        Bill.objects.filter(account_id__in=account_ids, status=UNPAID, due_date__lt=before)
        .values("account_id")
        .annotate(owed=Sum(F("amount") + F("fine_amount") - F("paid_amount")))
        .values_list("account_id", "owed")
    )


def _arrears_paid(orders: QuerySet[RemovalOrder]) -> QuerySet[RemovalOrder]:
    """The arrears orders none of whose notice's bills (due before its day) is still unpaid."""
    unpaid = Bill.objects.filter(
        account_id=OuterRef("account_id"),
        status=UNPAID,
        due_date__lt=OuterRef("arrears_due_before"),
    )
    return orders.filter(ground=ARREARS).filter(~Exists(unpaid))


def removal_notices_send(*, utility: Utility, today: date) -> list[RemovalOrder]:
    """Send the formal notice of removal to each consumer more than the policy's months late.

    1. One query finds the accounts: a bill unpaid and due before the cutoff (today less the
       months), not closed, no open arrears order. Accounts that are not late cost nothing.
    2. Per account found: the order (removal due after the notice period) and the notice, in
       one transaction; a concurrent run hits the one-open-order constraint and skips it.
    """
    policy = policy_for(utility)
    if not policy.removal_months_late:
        return []
    cutoff = _months_back(today, policy.removal_months_late)
    open_order = RemovalOrder.objects.filter(
        account_id=OuterRef("account_id"), ground=ARREARS, status__in=RemovalOrder.OPEN
    )
    late = list(
        overdue_bills(utility=utility, before=cutoff)
        .filter(~Exists(open_order))
        .values_list("account_id", flat=True)
        .distinct()
    )
    if not late:
        return []
    owed = _arrears(late, before=today)
    removal_on = today + timedelta(days=policy.removal_notice_days)
    orders = []
    for account in ConsumerAccount.objects.select_related("utility").filter(pk__in=late):
        if not owed.get(account.pk):  # paid between the two queries
            continue
        try:
            with transaction.atomic():
                order = RemovalOrder.objects.create(
                    account=account,
                    ground=ARREARS,
                    status=RemovalOrder.Status.NOTICE_SENT,
                    arrears=owed[account.pk],
                    arrears_due_before=today,
                    notice_sent_at=timezone.now(),
                    removal_due_on=removal_on,
                )
                holders_tell(
                    account=account,
                    category=categories.REMOVAL_NOTICE,
                    key=f"removal:{order.pk}:notice",
                    context={"arrears": order.arrears, "at": removal_on},
                )
        except IntegrityError:  # a concurrent run sent this notice
            continue
        orders.append(order)
    return orders


def removal_orders_review(*, utility: Utility, today: date) -> dict[str, int]:
    """The daily look at the utility's open orders, three updates whatever their number:
    1. cancelled: the account was closed some other way (a move-out), or the arrears the notice
       named are paid (no bill due before the notice's day is unpaid);
    2. due: the notice period is over, unpaid; staff confirm the removal in the admin."""
    now = timezone.now()
    open_orders = RemovalOrder.objects.filter(
        account__utility=utility, status__in=RemovalOrder.OPEN
    )
    cancelled = RemovalOrder.Status.CANCELLED
    closed = open_orders.filter(account__status=CLOSED).update(
        status=cancelled, cancelled_at=now, cancel_reason="The account was closed."
    )
    paid = _arrears_paid(open_orders).update(status=cancelled, cancelled_at=now, cancel_reason=PAID)
    due = RemovalOrder.objects.filter(
        account__utility=utility,
        status=RemovalOrder.Status.NOTICE_SENT,
        removal_due_on__lte=today,
    ).update(status=RemovalOrder.Status.REMOVAL_DUE, due_at=now)
    return {"cancelled": closed + paid, "due": due}


def removal_record(
    *,
    account: ConsumerAccount,
    ground: str,
    evidence: str,
    staff: User,
    evidence_data: dict | None = None,
) -> RemovalOrder:
    """Staff record a ground for removal other than arrears, with what they found: the removal
    is due at once, to be confirmed when the meter is taken out."""
    if ground not in IMMEDIATE_GROUNDS:
        raise DomainError.for_field(
            "ground", "Choose a ground other than arrears.", code="unknown_ground"
        )
    evidence = (evidence or "").strip()
    if len(evidence) < 10:
        raise DomainError.for_field(
            "evidence", "Describe what was found (10 characters or more).", code="evidence_required"
        )
    if evidence_data is not None and not isinstance(evidence_data, dict):
        raise DomainError.for_field(
            "evidence_data", "Give the evidence as a JSON object.", code="invalid_evidence"
        )
    if account.status == CLOSED:
        raise Conflict("This consumer account is closed.", code="account_closed")
    if not Meter.objects.filter(account=account, payment_mode=Meter.PaymentMode.POSTPAID).exists():
        raise Conflict("This account holds no postpaid meter.", code="not_postpaid")
    try:
        with transaction.atomic():
            return RemovalOrder.objects.create(
                account=account,
                ground=ground,
                status=RemovalOrder.Status.REMOVAL_DUE,
                evidence=evidence,
                evidence_data=evidence_data or {},
                created_by=staff,
                due_at=timezone.now(),
            )
    except IntegrityError:
        raise Conflict(
            "This ground is already recorded for the account and not settled.",
            code="removal_already_open",
        ) from None


def removal_confirm(
    *, order: RemovalOrder, staff: User, new_meter_serial: str, new_consumer_id: str = ""
) -> RemovalOrder:
    """Staff confirm a removal that is due: the meter was taken out and a prepaid one put in.

    1. Lock the order (a double submit confirms once), then the account's Balance row: a payment
       in flight finishes before the arrears are looked at, or waits for this to end.
    2. The rule is checked again here, not only by the daily run: arrears paid since (this
       morning, say) cancel the order instead, and nothing is removed.
    3. The conversion to prepaid (the one arrears flagged, or a new one) is carried out by
       billing.moves: the postpaid account moves out (final bills, account closed, holders
       told), its arrears become debt of the prepaid account, recovered from each top-up. The
       account's other open orders end with it.
    4. The consumer is told why (urgent: by SMS when nobody has the app).
    Returns the order, confirmed, or cancelled when the arrears were paid.
    """
    with transaction.atomic():
        order = (
            RemovalOrder.objects.select_for_update()
            .select_related("account__utility")
            .get(pk=order.pk)
        )
        if order.status != RemovalOrder.Status.REMOVAL_DUE:
            raise Conflict(
                f"This order is {order.get_status_display().lower()}: only a removal that is due "
                "can be confirmed.",
                code="removal_not_due",
            )
        account = order.account
        Balance.objects.get_or_create(account=account)
        Balance.objects.select_for_update().get(account=account)
        if _arrears_paid(RemovalOrder.objects.filter(pk=order.pk)).exists():
            order.status, order.cancelled_at = RemovalOrder.Status.CANCELLED, timezone.now()
            order.cancel_reason = PAID
            order.save(update_fields=["status", "cancelled_at", "cancel_reason"])
            return order
        conversion, _ = Conversion.objects.get_or_create(
            account=account,
            status=Conversion.Status.FLAGGED,
            defaults={"reason": f"Meter removal: {order.get_ground_display()}"[:200]},
        )
        done = moves.conversion_carry_out(
            conversion=conversion,
            new_meter_serial=new_meter_serial,
            new_consumer_id=new_consumer_id,
            staff=staff,
        )
        now = timezone.now()
        order.status, order.confirmed_at = RemovalOrder.Status.REMOVAL_CONFIRMED, now
        order.confirmed_by, order.conversion = staff, done
        order.save(update_fields=["status", "confirmed_at", "confirmed_by", "conversion"])
        # The account's other open orders (a notice for arrears beside a tampering) end with it.
        RemovalOrder.objects.filter(account=account, status__in=RemovalOrder.OPEN).update(
            status=RemovalOrder.Status.CANCELLED,
            cancelled_at=now,
            cancel_reason=f"The meter was removed: {order.get_ground_display()}."[:200],
        )
        # The holders now hold the prepaid account (the conversion carried their links there).
        holders_tell(
            account=done.new_account,
            category=categories.REMOVAL_CONFIRMED,
            key=f"removal:{order.pk}:confirmed",
            context={
                "consumer_id": account.consumer_id,
                "reason": REMOVAL_GROUNDS[order.ground],
                "debt": done.arrears,
            },
        )
    return order


def removal_cancel(*, order: RemovalOrder, staff: User, reason: str) -> RemovalOrder:
    """Staff withdraw an open order (a ground found wrong, an agreement to pay), saying why."""
    reason = (reason or "").strip()
    if len(reason) < 5:
        raise DomainError.for_field("reason", "Say why it is cancelled.", code="reason_required")
    with transaction.atomic():
        order = RemovalOrder.objects.select_for_update().get(pk=order.pk)
        if order.status not in RemovalOrder.OPEN:
            raise Conflict("This order is no longer open.", code="removal_not_open")
        order.status, order.cancelled_at = RemovalOrder.Status.CANCELLED, timezone.now()
        order.cancel_reason = f"{reason} ({staff})"[:200]
        order.save(update_fields=["status", "cancelled_at", "cancel_reason"])
    return order


def removals_daily(*, today: date | None = None) -> dict[str, int]:
    """The daily late path, each utility on its own local day: orders paid or closed cancelled,
    notice periods over made due, then new formal notices."""
    counts = {"cancelled": 0, "due": 0, "notified": 0}
    for utility, day in utility_days(today=today):
        reviewed = removal_orders_review(utility=utility, today=day)
        counts["cancelled"] += reviewed["cancelled"]
        counts["due"] += reviewed["due"]
        counts["notified"] += len(removal_notices_send(utility=utility, today=day))
    return counts
