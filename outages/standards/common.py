"""Shared by every standard: the amounts owed beyond a threshold, one compensation per event,
and corrections of a compensation already recorded (a difference, never a second payment)."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts.models import ConsumerAccount, Utility
from billing.ledger import ledger_post
from billing.models import LedgerEntry, RelayCommand
from core.money import money_quantize
from core.workdays import utility_working_deadline
from outages.models import (
    Compensation,
    Outage,
    Standard,
    StandardsPolicy,
)

logger = logging.getLogger(__name__)
HOUR = timedelta(hours=1)
# An exemption request still undecided this close to the end of the month is not waited for:
# the consumer's right to be paid within the month comes first (docs/outages.md).
PAY_MARGIN = timedelta(days=1)

# Why, in the consumer's language: the compensation alert quotes it.
REASONS: dict[str, dict[str, str]] = {
    Standard.NOTICE: {
        "en": "the planned power cut of {when} was announced less than {hours} hours ahead",
        "ar": "لم يُعلَن عن انقطاع الكهرباء المجدول يوم {when} قبل {hours} ساعة على الأقل",
        "hi": "{when} की निर्धारित बिजली कटौती की सूचना {hours} घंटे पहले नहीं दी गई",
    },
    Standard.RESTORATION: {
        "en": "power was off for {duration} from {when}, longer than {hours} hours",
        "ar": "انقطعت الكهرباء مدة {duration} منذ {when}، متجاوزةً المهلة المحددة لإعادتها",
        "hi": "{when} से बिजली {duration} तक बंद रही, जो {hours} घंटे से ज़्यादा है",
    },
    Standard.RECONNECTION: {
        "en": "your supply was reconnected {duration} after your payment, later than {hours} hours",
        "ar": "أُعيد توصيل الكهرباء بعد {duration} من إشعار السداد، متجاوزًا المهلة المحددة",
        "hi": "भुगतान के {duration} बाद बिजली जोड़ी गई, जो {hours} घंटे से ज़्यादा है",
    },
    Standard.REPEATED: {
        "en": "the power cut of {when} was outage number {count} of {hours} hours or more this year",
        "ar": "كان انقطاع {when} الانقطاعَ الطويل رقم {count} هذا العام",
        "hi": "{when} की कटौती इस साल {hours} घंटे या उससे लंबी {count}वीं कटौती थी",
    },
    Standard.WRONGFUL_DISCONNECTION: {
        "en": "your supply was disconnected wrongly on {when}",
        "ar": "فُصلت الكهرباء عنك دون وجه حق يوم {when}",
        "hi": "{when} को आपकी बिजली गलत तरीके से काटी गई",
    },
    Standard.CONNECTION: {
        "en": "your connection request was due by {when} and was completed {count} working days late",
        "ar": "كان موعد تنفيذ طلب التوصيل {when}، ونُفِّذ متأخرًا {count} أيام عمل",
        "hi": "आपका कनेक्शन अनुरोध {when} तक पूरा होना था, पर {count} कार्य-दिवस देर से पूरा हुआ",
    },
}


def amount_beyond(
    *, elapsed: timedelta, threshold: timedelta, base: Decimal, per_hour: Decimal
) -> tuple[Decimal, int] | None:
    """Compensation for a time standard, or None if it was met.

    DOMAIN.md §3: "200, plus 50 per further hour or part of one" (restoration, 6 h) and "100, plus
    100 per further hour or part of one" (reconnection, 2 h). Read as: `elapsed` up to and including
    the threshold meets the standard; past it, `base` is owed plus `per_hour` for every hour or part
    of an hour beyond the threshold, the first one included. 9 h 20 min against 6 h is 3 h 20 min
    beyond, 4 started hours: 200 + 4 × 50 = 400. One minute late is 200 + 1 × 50.
    Returns the amount and the number of started hours beyond.
    """
    beyond = elapsed - threshold
    if beyond <= timedelta(0):
        return None
    hours = math.ceil(beyond / HOUR)
    return base + per_hour * hours, hours


def repeated_amount(*, rank: int, policy: StandardsPolicy) -> Decimal | None:
    """DOMAIN.md §3: "no more than 2 outages of 2 hours or more per calendar year: 400, plus 50 per
    further such outage". The (allowed + 1)-th long outage of a year owes `repeated_amount` (400),
    each one after it `repeated_amount_per_outage` (50) more."""
    if rank <= policy.repeated_allowed:
        return None
    if rank == policy.repeated_allowed + 1:
        return policy.repeated_amount
    return policy.repeated_amount_per_outage


def policy_for(utility: Utility) -> StandardsPolicy | None:
    return StandardsPolicy.objects.filter(utility=utility).first()


def late_notice_compensated(*, utility: Utility) -> bool:
    """Whether a late outage notice owes compensation: only under a guaranteed-standards policy
    (Saudi Arabia's); a utility without one (Kuwait's) compensates nothing, so nothing may be
    promised when staff confirm a late notice."""
    policy = policy_for(utility)
    return policy is not None and policy.notice_amount > 0


def _duration_text(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def compensation_record(
    *,
    policy: StandardsPolicy,
    account: ConsumerAccount,
    standard: str,
    event_key: str,
    amount: Decimal,
    failure_at: datetime,
    reason: str,
    details: dict,
    outage: Outage | None = None,
    relay_command: RelayCommand | None = None,
) -> tuple[Compensation, bool]:
    """One compensation, once per (account, standard, event): a second call returns the first."""
    utility = policy.utility
    deadline = utility_working_deadline(
        utility=utility, moment=failure_at, days=policy.exemption_working_days
    )
    return Compensation.objects.get_or_create(
        account=account,
        standard=standard,
        event_key=event_key,
        defaults={
            "utility": utility,
            "outage": outage,
            "relay_command": relay_command,
            "amount": money_quantize(amount, minor_unit=utility.currency_minor_unit),
            "currency": utility.currency,
            "reason": reason[:300],
            "details": details,
            "failure_at": failure_at,
            "exemption_deadline": deadline,
            "pay_by": failure_at + timedelta(days=policy.payment_days),
        },
    )


def compensation_correct(
    *,
    compensation_id: int,
    amount: Decimal,
    reason: str,
    details: dict,
    correction: str,
    take_back_at_once: bool = False,
) -> Compensation | None:
    """Bring a recorded compensation to what is owed now (a repeated-outage rank moved by an
    outage that started earlier but was restored later; a consumer's evidence or a relay
    confirmation that arrived late).

    1. Lock the row: the pay task credits under the same lock, so it pays either the corrected
       amount or the old one, and in the second case the correction sees it credited.
    2. Pending: amount, reason and details change; no money moves.
    3. Credited: only the difference is posted (ledger_post, kind COMPENSATION, key
       `compensation:<pk>:<correction>`, numbered when the row used it before), never a second
       full payment; the key makes a retried correction post nothing twice. More owed is posted
       at once. Less owed is taken back at once with `take_back_at_once` (the evidence says less
       was owed); otherwise only when the compensation now ranking above it is credited
       (_corrections_settle), so the consumer is never short meanwhile. The row's amount is what
       is owed now.
    4. Cancelled by an approved exemption: nothing was or is owed; left alone.
    """
    with transaction.atomic():
        compensation = (
            Compensation.objects.select_for_update(of=("self",))
            .select_related("account__utility")
            .filter(pk=compensation_id)
            .first()
        )
        if compensation is None or compensation.status == Compensation.Status.CANCELLED:
            return compensation
        minor_unit = compensation.account.utility.currency_minor_unit
        amount = money_quantize(amount, minor_unit=minor_unit)
        difference = amount - compensation.amount
        corrections = list(compensation.details.get("corrections", []))
        if difference:
            step = {
                "from": str(money_quantize(compensation.amount, minor_unit=minor_unit)),
                "to": str(amount),
                "at": timezone.now().isoformat(),
            }
            if compensation.status == Compensation.Status.CREDITED:
                key = f"compensation:{compensation.pk}:{correction}"
                if any(s.get("key") == key for s in corrections):
                    key = f"{key}:{len(corrections) + 1}"
                step["key"] = key
                if difference > 0 or take_back_at_once:
                    step["ledger_entry"] = _correction_post(compensation, step, difference, reason)
                # Money taken back waits for the compensation that now ranks above this one,
                # and is netted when that one is credited (compensation_pay): a consumer is never
                # short in between, nor for good if that one is exempted.
            corrections.append(step)
        details = {**details, "corrections": corrections} if corrections else details
        unchanged = compensation.reason == reason[:300] and compensation.details == details
        if not difference and unchanged:
            return compensation
        compensation.amount = amount
        compensation.reason = reason[:300]
        compensation.details = details
        compensation.save(update_fields=["amount", "reason", "details"])
    return compensation


def _correction_post(compensation: Compensation, step: dict, difference: Decimal, reason: str):
    """Post one correction of a credited compensation (idempotent on its key); its entry's id."""
    posting = ledger_post(
        account=compensation.account,
        kind=LedgerEntry.Kind.COMPENSATION,
        amount=difference,
        key=step["key"],
        description=f"Compensation corrected: {compensation.get_standard_display()}",
        reason=reason,
        meta={
            "standard": compensation.standard,
            "event": compensation.event_key,
            "corrects": compensation.ledger_entry_id,
        },
    )
    return posting.entry.pk


def _corrections_settle(*, account_id: int) -> None:
    """Post what credited compensations of the account owe back (corrections waiting for a
    compensation that now ranks above them), now that one has been credited. Under each row's lock,
    in the caller's transaction."""
    for compensation in (
        Compensation.objects.select_for_update(of=("self",))
        .select_related("account__utility")
        .filter(account_id=account_id, status=Compensation.Status.CREDITED)
        .order_by("pk")
    ):
        steps = compensation.details.get("corrections", [])
        waiting = [s for s in steps if "key" in s and "ledger_entry" not in s]
        if not waiting:
            continue
        for step in waiting:
            difference = Decimal(step["to"]) - Decimal(step["from"])
            step["ledger_entry"] = _correction_post(
                compensation, step, difference, compensation.reason
            )
        compensation.save(update_fields=["details"])


def _differs(
    row: Compensation, *, amount: Decimal, reason: str, details: dict, minor_unit: int
) -> bool:
    """Whether a recorded compensation says other than what is owed now (its corrections aside)."""
    recorded = {k: v for k, v in row.details.items() if k != "corrections"}
    return (
        row.amount != money_quantize(amount, minor_unit=minor_unit)
        or row.reason != reason[:300]
        or recorded != details
    )
