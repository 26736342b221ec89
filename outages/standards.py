"""The guaranteed-standards engine: which failures are owed compensation, how much, and paying it.

The rules are the Saudi regulator's table (DOMAIN.md §3, "Saudi Arabia: guaranteed service
standards"), with every number read from the utility's StandardsPolicy row; a utility without one
compensates nothing. Each failure is one Compensation row per (account, standard, event), so every
function here may run any number of times.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import AccountLink, ConsumerAccount, Utility
from billing.ledger import ledger_post
from billing.models import LedgerEntry, RelayCommand
from billing.relay import GROUND_TEXTS, disconnect_check, reconnect_payment_time
from billing.services import reconnect_request
from core.errors import Conflict, DomainError
from core.money import money_quantize, utility_money
from core.timebuckets import local_midnight
from core.workdays import utility_working_deadline
from meters.models import MeterAssignment
from notifications import categories as c
from notifications.services import alert_create
from outages.models import (
    AffectedMeter,
    Compensation,
    ExemptionRequest,
    Outage,
    OutageNotice,
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
    *, compensation_id: int, amount: Decimal, reason: str, details: dict, correction: str
) -> Compensation | None:
    """Bring a recorded compensation to what is owed now (a repeated-outage rank moved by an
    outage that started earlier but was restored later).

    1. Lock the row: the pay task credits under the same lock, so it pays either the corrected
       amount or the old one, and in the second case the correction sees it credited.
    2. Pending: amount, reason and details change; no money moves.
    3. Credited: only the difference is posted (ledger_post, kind COMPENSATION, key
       `compensation:<pk>:<correction>`), never a second full payment; the key makes a retried
       correction post nothing twice. More owed is posted at once; less owed is taken back only
       when the compensation now ranking above it is credited (_corrections_settle), so the
       consumer is never short meanwhile. The row's amount is what is owed now.
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
        amount = money_quantize(amount, minor_unit=compensation.account.utility.currency_minor_unit)
        difference = amount - compensation.amount
        corrections = list(compensation.details.get("corrections", []))
        if difference:
            step = {
                "from": str(compensation.amount),
                "to": str(amount),
                "at": timezone.now().isoformat(),
            }
            if compensation.status == Compensation.Status.CREDITED:
                step["key"] = f"compensation:{compensation.pk}:{correction}"
                if difference > 0:
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


def _outage_holders(outage: Outage):
    """Ids of the accounts that held the affected meters when the outage began, as a subquery."""
    began = outage.actual_start or outage.planned_start
    return (
        MeterAssignment.objects.filter(
            meter_id__in=outage.affected.values("meter_id"), start__lte=began
        )
        .filter(Q(end__isnull=True) | Q(end__gt=began))
        .values("account_id")
    )


def _outage_accounts(outage: Outage) -> list[ConsumerAccount]:
    """The accounts that held the affected meters when the outage began: a tenant who moved in
    after the notice but before the outage lived through it and is owed; one who left is not."""
    return list(ConsumerAccount.objects.filter(pk__in=_outage_holders(outage)).order_by("pk"))


def standards_evaluate_outage(*, outage: Outage) -> list[Compensation]:
    """Record what an outage owes each affected account; returns the compensations created.

    1. Notice (planned outages, once started): consumers must be told `outage_notice_hours`
       before the supply goes off, each account counted from when the notice of the schedule in
       force reached it (OutageNotice.sent_at: the app push or the SMS); a notice that had not
       reached it when the outage began is missed. The outage begins at its planned start, or
       earlier if it really started earlier.
    2. Restoration (once restored): off longer than `restoration_hours` → amount_beyond.
    3. Repeated (once restored, if it lasted `repeated_min_hours` or more): its rank by start
       among the account's long outages of the local calendar year → repeated_amount; the
       outages that started after it and were restored before it move one down, and what they
       were owed is corrected (_repeated_reconcile).
    A consumer hit by both 2 and 3 gets both (DOMAIN.md §3).
    """
    policy = policy_for(outage.utility)
    if policy is None or outage.actual_start is None:
        return []
    utility = outage.utility
    zone = utility.zone
    when = outage.actual_start.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    event_key = f"outage:{outage.pk}"
    accounts = _outage_accounts(outage)
    owed: list[tuple[ConsumerAccount, str, Decimal, datetime, str, dict]] = []

    if outage.kind == Outage.Kind.PLANNED and outage.notice_given_at is not None:
        begins = min(outage.planned_start, outage.actual_start)
        for account, reason, details in _late_notices(outage, accounts=accounts, begins=begins):
            owed.append((account, Standard.NOTICE, policy.notice_amount, begins, reason, details))

    ranks: dict[tuple[int, int], int] = {}
    if outage.actual_end is not None:
        duration = outage.actual_end - outage.actual_start
        threshold = timedelta(hours=policy.restoration_hours)
        late = amount_beyond(
            elapsed=duration,
            threshold=threshold,
            base=policy.restoration_amount,
            per_hour=policy.restoration_amount_per_hour,
        )
        if late is not None:
            amount, hours = late
            reason = (
                f"Supply off {_duration_text(duration)} from {when}; the standard is "
                f"{policy.restoration_hours} h: {utility_money(policy.restoration_amount, utility)}"
                f" + {hours} started hour(s) × "
                f"{utility_money(policy.restoration_amount_per_hour, utility)}."
            )
            details = {"duration_minutes": int(duration.total_seconds() // 60), "hours": hours}
            failure_at = outage.actual_start + threshold
            for account in accounts:
                owed.append((account, Standard.RESTORATION, amount, failure_at, reason, details))

    created = []
    with transaction.atomic():
        if outage.actual_end is not None and outage.actual_end - outage.actual_start >= timedelta(
            hours=policy.repeated_min_hours
        ):
            # Two outages of the utility restored at once would each rank without the other (both
            # "third"): ranking is serialised per utility. Restorations are rare staff steps.
            Utility.objects.select_for_update().filter(pk=utility.pk).first()
            ranks = _long_outage_ranks(outage=outage, policy=policy, accounts=accounts)
        for account, standard, amount, failure_at, reason, details in owed:
            compensation, new = compensation_record(
                policy=policy,
                account=account,
                standard=standard,
                event_key=event_key,
                amount=amount,
                failure_at=failure_at,
                reason=reason,
                details=details,
                outage=outage,
            )
            if new:
                created.append(compensation)
        if ranks:
            created += _repeated_reconcile(policy=policy, ranks=ranks, accounts=accounts)
    return created


def _late_notices(outage: Outage, *, accounts: list[ConsumerAccount], begins: datetime):
    """(account, reason, details) for each account the notice reached less than
    `outage_notice_hours` before the outage began, or not at all. An account that took the meter
    after the notice went out has no notice of its own: the outage's publication counts for it."""
    utility = outage.utility
    required = timedelta(hours=utility.outage_notice_hours)
    when = outage.actual_start.astimezone(utility.zone).strftime("%Y-%m-%d %H:%M")
    delivered = {
        account_id: (sent_at, channel)
        for account_id, sent_at, channel in OutageNotice.objects.filter(
            outage=outage, version=outage.version
        ).values_list("account_id", "sent_at", "channel")
    }
    for account in accounts:
        sent_at, channel = delivered.get(account.pk, (outage.notice_given_at, ""))
        if sent_at is not None and begins - sent_at >= required:
            continue
        if sent_at is None or sent_at >= begins:
            reason = (
                f"Planned outage of {when}: the notice had not reached you when it began; "
                f"the standard is {utility.outage_notice_hours} h ahead."
            )
            lead_minutes = None
        else:
            lead = begins - sent_at
            reason = (
                f"Planned outage of {when} announced {_duration_text(lead)} ahead; "
                f"the standard is {utility.outage_notice_hours} h."
            )
            lead_minutes = int(lead.total_seconds() // 60)
        details = {
            "lead_minutes": lead_minutes,
            "notice_sent_at": sent_at.isoformat() if sent_at else None,
            "channel": channel,
        }
        yield account, reason, details


def _long_outage_ranks(
    *, outage: Outage, policy: StandardsPolicy, accounts: list[ConsumerAccount]
) -> dict[tuple[int, int], int]:
    """{(account id, outage id): rank} for this outage and every long outage of the same local
    calendar year that started after it, per account of this outage.

    DOMAIN.md §3 counts the outages of a calendar year, so the rank is the outage's place by
    actual start (then id) among the restored outages of `repeated_min_hours` or more that the
    account lived through (it held an affected meter when each began), whatever order they were
    restored in. Restoring this outage can move only itself and those that started after it.
    """
    zone = outage.utility.zone
    year = outage.actual_start.astimezone(zone).year
    start = local_midnight(datetime(year, 1, 1).date(), zone)
    end = local_midnight(datetime(year + 1, 1, 1).date(), zone)
    minimum = timedelta(hours=policy.repeated_min_hours)
    began = {
        pk: actual_start
        for pk, actual_start, actual_end in Outage.objects.filter(
            utility_id=outage.utility_id,
            status=Outage.Status.RESTORED,
            actual_start__gte=start,
            actual_start__lt=end,
        ).values_list("pk", "actual_start", "actual_end")
        if actual_end - actual_start >= minimum
    }
    if outage.pk not in began:
        return {}
    account_ids = {a.pk for a in accounts}
    # The tenancies in this year of this outage's accounts, and the long outages on those meters.
    tenancies = MeterAssignment.objects.filter(
        account_id__in=_outage_holders(outage), start__lt=end
    ).filter(Q(end__isnull=True) | Q(end__gt=start))
    held: dict[int, list[tuple[int, datetime, datetime | None]]] = {}
    for meter_id, account_id, held_from, held_to in tenancies.values_list(
        "meter_id", "account_id", "start", "end"
    ):
        held.setdefault(meter_id, []).append((account_id, held_from, held_to))
    lived: dict[int, set[int]] = {}
    for meter_id, outage_id in AffectedMeter.objects.filter(
        outage_id__in=list(began), meter_id__in=tenancies.values("meter_id")
    ).values_list("meter_id", "outage_id"):
        at = began[outage_id]
        for account_id, held_from, held_to in held.get(meter_id, []):
            if account_id in account_ids and held_from <= at and (held_to is None or held_to > at):
                lived.setdefault(account_id, set()).add(outage_id)
    this = (began[outage.pk], outage.pk)
    ranks: dict[tuple[int, int], int] = {}
    for account_id, outage_ids in lived.items():
        ordered = sorted(outage_ids, key=lambda pk: (began[pk], pk))
        for rank, outage_id in enumerate(ordered, start=1):
            if (began[outage_id], outage_id) >= this:
                ranks[account_id, outage_id] = rank
    return ranks


def _repeated_reason(outage: Outage, *, rank: int, policy: StandardsPolicy) -> str:
    local = outage.actual_start.astimezone(outage.utility.zone)
    return (
        f"Outage of {local:%Y-%m-%d %H:%M} was long outage number {rank} in {local.year} (more "
        f"than {policy.repeated_allowed} of {policy.repeated_min_hours} h or more)."
    )


def _repeated_reconcile(
    *, policy: StandardsPolicy, ranks: dict[tuple[int, int], int], accounts: list[ConsumerAccount]
) -> list[Compensation]:
    """Bring each ranked outage's repeated-outage compensation to what its rank owes: a new row
    where one is now owed, a correction (compensation_correct: a difference, never a second
    payment) where the rank moved. Rows whose rank did not move are not touched, so it may run
    any number of times. Returns the rows created."""
    outages = Outage.objects.select_related("utility").in_bulk({pk for _, pk in ranks})
    by_account = {a.pk: a for a in accounts}
    existing = {
        (row.account_id, row.outage_id): row
        for row in Compensation.objects.filter(
            standard=Standard.REPEATED, event_key__in=[f"outage:{pk}" for pk in outages]
        )
        if (row.account_id, row.outage_id) in ranks
    }
    minor_unit = policy.utility.currency_minor_unit
    created = []
    for (account_id, outage_id), rank in sorted(ranks.items()):
        outage = outages[outage_id]
        amount = money_quantize(
            repeated_amount(rank=rank, policy=policy) or Decimal(0), minor_unit=minor_unit
        )
        reason = _repeated_reason(outage, rank=rank, policy=policy)
        row = existing.get((account_id, outage_id))
        if row is None:
            if amount:
                compensation, new = compensation_record(
                    policy=policy,
                    account=by_account[account_id],
                    standard=Standard.REPEATED,
                    event_key=f"outage:{outage_id}",
                    amount=amount,
                    failure_at=outage.actual_end,
                    reason=reason,
                    details={"rank": rank},
                    outage=outage,
                )
                if new:
                    created.append(compensation)
        elif row.details.get("rank") != rank or row.amount != amount:
            compensation_correct(
                compensation_id=row.pk,
                amount=amount,
                reason=reason,
                details={"rank": rank},
                correction=f"rank:{rank}",
            )
    return created


def standards_evaluate_reconnection(*, command: RelayCommand) -> Compensation | None:
    """A reconnect after payment that took longer than `reconnection_hours` from the payment being
    notified to the supply being back (DOMAIN.md §3: 100, plus 100 per further hour or part).

    Measured from the payment however many commands it took: the payment time the command
    carries, or for a payment reconnect without one (made before reconnects found it) the payment
    that called for it (billing.relay.reconnect_payment_time).
    """
    if (
        command.action != RelayCommand.Action.RECONNECT
        or command.status != RelayCommand.Status.DONE
        or command.completed_at is None
    ):
        return None
    paid_at = command.payment_notified_at
    if paid_at is None and command.reason == "payment":
        paid_at = reconnect_payment_time(meter=command.meter, before=command.created_at)
    if paid_at is None:
        return None
    policy = policy_for(command.account.utility)
    if policy is None:
        return None
    elapsed = command.completed_at - paid_at
    threshold = timedelta(hours=policy.reconnection_hours)
    late = amount_beyond(
        elapsed=elapsed,
        threshold=threshold,
        base=policy.reconnection_amount,
        per_hour=policy.reconnection_amount_per_hour,
    )
    if late is None:
        return None
    amount, hours = late
    utility = command.account.utility
    reason = (
        f"Reconnected {_duration_text(elapsed)} after the payment was notified; the standard is "
        f"{policy.reconnection_hours} h: {utility_money(policy.reconnection_amount, utility)} + "
        f"{hours} started hour(s) × {utility_money(policy.reconnection_amount_per_hour, utility)}."
    )
    compensation, _ = compensation_record(
        policy=policy,
        account=command.account,
        standard=Standard.RECONNECTION,
        event_key=f"relay:{command.pk}",
        amount=amount,
        failure_at=paid_at + threshold,
        reason=reason,
        details={
            "elapsed_minutes": int(elapsed.total_seconds() // 60),
            "hours": hours,
            "payment_notified_at": paid_at.astimezone(utility.zone).isoformat(),
            "reconnected_at": command.completed_at.astimezone(utility.zone).isoformat(),
        },
        relay_command=command,
    )
    return compensation


def reconnections_evaluate(*, now: datetime, days: int = 35) -> int:
    """Evaluate every reconnect after payment completed in the last `days` days; returns how many
    owe."""
    commands = (
        RelayCommand.objects.filter(
            action=RelayCommand.Action.RECONNECT,
            status=RelayCommand.Status.DONE,
            completed_at__gte=now - timedelta(days=days),
        )
        .filter(Q(payment_notified_at__isnull=False) | Q(reason="payment"))
        .select_related("account__utility", "meter")
    )
    return sum(1 for command in commands if standards_evaluate_reconnection(command=command))


def wrongful_disconnection_record(
    *, command_id: object, actor, note: str = ""
) -> tuple[Compensation | None, RelayCommand | None]:
    """Staff found a disconnection wrongful (a prohibited time or case, before the billed date, the
    wrong meter): record the compensation (DOMAIN.md §3: 500) and order reconnection at once.

    1. Lock the command: two staff marking it at once must not order two reconnections.
    2. The compensation is unique per command; marking twice is refused.
    3. The reconnection: billing.services.reconnect_request(reason="wrongful_disconnection");
       a disconnect of that meter still waiting for its time is cancelled first.
    Returns the compensation (None when the utility has no standards policy) and the reconnect
    (None when another command is in flight at the head-end; billing reconnects after it).
    """
    with transaction.atomic():
        command = (
            RelayCommand.objects.select_for_update(of=("self",))
            .select_related("account__utility", "meter")
            .filter(pk=command_id)
            .first()
        )
        if command is None:
            raise DomainError("No such relay command.", code="relay_command_not_found")
        if command.action != RelayCommand.Action.DISCONNECT:
            raise DomainError(
                "Only a disconnection can be marked wrongful.", code="not_a_disconnection"
            )
        if command.status not in (RelayCommand.Status.DONE, RelayCommand.Status.SENT):
            raise DomainError(
                "This disconnection did not happen; there is nothing to compensate.",
                code="disconnection_not_done",
            )
        key = f"relay:{command.pk}"
        if Compensation.objects.filter(
            standard=Standard.WRONGFUL_DISCONNECTION, event_key=key
        ).exists():
            raise Conflict(
                "This disconnection was already marked wrongful.", code="already_wrongful"
            )
        compensation = None
        policy = policy_for(command.account.utility)
        if policy is not None:
            when = _wrongful_at(command).astimezone(policy.utility.zone).strftime("%Y-%m-%d %H:%M")
            compensation = _wrongful_compensation(
                policy=policy,
                command=command,
                account=command.account,
                reason=f"Supply wrongly disconnected on {when}. {note}".strip(),
                details={"note": note, "marked_by": getattr(actor, "pk", None)},
            )
        reconnect = _reconnect_now(command=command)
    return compensation, reconnect


def wrongful_disconnection_detect(
    *, command_id: object
) -> tuple[Compensation | None, RelayCommand | None] | None:
    """The system's own finding of a wrongful disconnection (DOMAIN.md §3: prohibited times or
    cases, the wrong meter: 500, and service restored at once), without anyone marking it.
    Billing calls it when a disconnect is confirmed, when a dead worker's disconnect is recovered
    (it may have gone out) and when a payment learned late predates a disconnection.

    1. Lock the command and check it at the moment it went out (billing.relay.disconnect_check
       at sent_at, carried out by completed_at): friendly hours, the account in debt, no payment
       since the order, the meter the account's. None when it broke no rule.
    2. A command still pending (a dead worker's, never confirmed) is cancelled: it must not go
       out again.
    3. The compensation, with the check as its evidence in details, goes to the account that held
       the meter then (nobody's if it was vacant), once per command however often this runs or
       staff mark it; only where the utility has a standards policy.
    4. The meter is reconnected at once (_reconnect_now), unless a reconnect was ordered since.
    Returns the compensation (or None) and the reconnect (or None) when it was wrongful.
    """
    with transaction.atomic():
        command = (
            RelayCommand.objects.select_for_update(of=("self",))
            .select_related("account__utility", "meter")
            .filter(pk=command_id, action=RelayCommand.Action.DISCONNECT)
            .first()
        )
        if command is None or command.sent_at is None:
            return None
        check = disconnect_check(command=command, at=command.sent_at, until=command.completed_at)
        grounds = check.grounds
        if not grounds:
            return None
        logger.warning("disconnect %s was wrongful: %s", command.pk, ", ".join(grounds))
        if command.status in (RelayCommand.Status.WAITING, RelayCommand.Status.SENT):
            command.status = RelayCommand.Status.CANCELLED
            command.error = f"Not sent again: wrongful when it went out ({', '.join(grounds)})."
            command.save(update_fields=["status", "error"])
        compensation = Compensation.objects.filter(
            standard=Standard.WRONGFUL_DISCONNECTION, event_key=f"relay:{command.pk}"
        ).first()
        policy = policy_for(command.account.utility)
        holder = ConsumerAccount.objects.filter(pk=check.holder_id).first()
        if compensation is None and policy is not None and holder is not None:
            utility = policy.utility
            when = _wrongful_at(command).astimezone(utility.zone).strftime("%Y-%m-%d %H:%M")
            why = "; ".join(GROUND_TEXTS[ground] for ground in grounds)
            compensation = _wrongful_compensation(
                policy=policy,
                command=command,
                account=holder,
                reason=f"Supply wrongly disconnected on {when} ({utility.timezone}): {why}.",
                details={"detected_by": "system", **check.evidence()},
            )
        reconnect = (
            RelayCommand.objects.filter(
                meter=command.meter,
                action=RelayCommand.Action.RECONNECT,
                created_at__gte=command.sent_at,
            )
            .exclude(status__in=[RelayCommand.Status.FAILED, RelayCommand.Status.CANCELLED])
            .first()
        ) or _reconnect_now(command=command)
    return compensation, reconnect


def _wrongful_at(command: RelayCommand) -> datetime:
    return command.completed_at or command.sent_at or command.created_at


def _wrongful_compensation(
    *,
    policy: StandardsPolicy,
    command: RelayCommand,
    account: ConsumerAccount,
    reason: str,
    details: dict,
) -> Compensation:
    """The wrongful-disconnection compensation of one disconnect command (event relay:<id>)."""
    compensation, _ = compensation_record(
        policy=policy,
        account=account,
        standard=Standard.WRONGFUL_DISCONNECTION,
        event_key=f"relay:{command.pk}",
        amount=policy.wrongful_disconnection_amount,
        failure_at=_wrongful_at(command),
        reason=reason,
        details=details,
        relay_command=command,
    )
    return compensation


def _reconnect_now(*, command: RelayCommand) -> RelayCommand | None:
    """Reconnect the meter at once through billing. A disconnect still waiting for its time is
    cancelled first; a reconnect already pending is kept. None when a command is in flight at the
    head-end: billing's relay_due reconnects the meter once it is answered."""
    pending = RelayCommand.objects.select_for_update().filter(
        meter=command.meter, status__in=[RelayCommand.Status.WAITING, RelayCommand.Status.SENT]
    )
    for other in pending:
        if other.action == RelayCommand.Action.RECONNECT:
            return other
        if other.status == RelayCommand.Status.WAITING:
            other.status = RelayCommand.Status.CANCELLED
            other.error = "Cancelled: an earlier disconnection was wrongful."
            other.save(update_fields=["status", "error"])
    return reconnect_request(meter=command.meter, reason="wrongful_disconnection")


# --- Paying ---------------------------------------------------------------------------------


def compensations_payable(*, now: datetime) -> list[int]:
    """Pending compensations to credit now: the exemption window has closed and no exemption is
    pending for their event, or the month is about to run out (then a pending request is not
    waited for)."""
    pending_events = set(
        ExemptionRequest.objects.filter(status=ExemptionRequest.Status.PENDING).values_list(
            "standard", "event_key"
        )
    )
    rows = Compensation.objects.filter(
        status=Compensation.Status.PENDING, exemption_deadline__lte=now
    ).values_list("pk", "standard", "event_key", "pay_by")
    return [
        pk
        for pk, standard, event_key, pay_by in rows
        if (standard, event_key) not in pending_events or pay_by - PAY_MARGIN <= now
    ] + list(
        Compensation.objects.filter(
            status=Compensation.Status.PENDING,
            exemption_deadline__gt=now,
            pay_by__lte=now + PAY_MARGIN,
        ).values_list("pk", flat=True)
    )


def compensation_pay(*, compensation_id: int) -> Compensation | None:
    """Credit one compensation to the account's ledger and tell the account's users why.

    1. Lock the row: the pay task and an approver's decision may meet here; whichever comes
       second sees the other's status and does nothing.
    2. ledger_post is idempotent on `compensation:<pk>`, and so is each alert.
    """
    with transaction.atomic():
        compensation = (
            Compensation.objects.select_for_update(of=("self",))
            .select_related("account__utility", "outage", "utility")
            .filter(pk=compensation_id, status=Compensation.Status.PENDING)
            .first()
        )
        if compensation is None:
            return None
        posting = ledger_post(
            account=compensation.account,
            kind=LedgerEntry.Kind.COMPENSATION,
            amount=compensation.amount,
            key=f"compensation:{compensation.pk}",
            description=f"Compensation: {compensation.get_standard_display()}",
            reason=compensation.reason,
            meta={"standard": compensation.standard, "event": compensation.event_key},
        )
        compensation.status = Compensation.Status.CREDITED
        compensation.credited_at = timezone.now()
        compensation.ledger_entry = posting.entry
        compensation.save(update_fields=["status", "credited_at", "ledger_entry"])
        _corrections_settle(account_id=compensation.account_id)
        _compensation_notify(compensation=compensation)
    return compensation


def _compensation_notify(*, compensation: Compensation) -> None:
    utility = compensation.utility
    policy = policy_for(utility)
    details = compensation.details
    hours = {
        Standard.NOTICE: utility.outage_notice_hours,
        Standard.RESTORATION: policy.restoration_hours if policy else "",
        Standard.RECONNECTION: policy.reconnection_hours if policy else "",
        Standard.REPEATED: policy.repeated_min_hours if policy else "",
    }.get(compensation.standard, "")
    minutes = details.get("duration_minutes") or details.get("elapsed_minutes") or 0
    when = compensation.failure_at
    if compensation.outage is not None and compensation.outage.actual_start:
        when = compensation.outage.actual_start
    links = AccountLink.objects.filter(
        account=compensation.account, unlinked_at=None
    ).select_related("user")
    for link in links:
        language = link.user.language if link.user.language in ("ar", "en", "hi") else "en"
        reason = REASONS[compensation.standard][language].format(
            when=when.astimezone(utility.zone).strftime("%Y-%m-%d %H:%M"),
            hours=hours,
            duration=f"{minutes // 60}:{minutes % 60:02d}",
            count=details.get("rank", details.get("late_working_days", "")),
        )
        alert_create(
            user=link.user,
            category=c.COMPENSATION_CREDITED,
            dedupe_key=f"compensation:{compensation.pk}",
            context={
                "amount": compensation.amount,
                "consumer_id": compensation.account.consumer_id,
                "account_id": compensation.account_id,
                "compensation_id": compensation.pk,
                "reason": reason,
            },
            utility=utility,
        )


def compensations_pay_due(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    paid = 0
    for compensation_id in compensations_payable(now=now):
        try:
            if compensation_pay(compensation_id=compensation_id):
                paid += 1
        except Exception:  # one bad row must not stop the others; it is retried next run
            logger.exception("compensation %s could not be paid", compensation_id)
    return paid


# --- Exemptions -----------------------------------------------------------------------------


def exemption_file(
    *, standard: str, event_key: str, justification: str, actor, now: datetime | None = None
) -> ExemptionRequest:
    """File a force-majeure request for one event and standard.

    Refused after the deadline (`exemption_working_days` working days of the utility's country
    after the failure, core.workdays), without a justification, when a request is already pending
    or approved, or when nothing is left to cancel.
    """
    now = now or timezone.now()
    justification = (justification or "").strip()
    if len(justification) < 20:
        raise DomainError.for_field(
            "justification",
            "Give the full justification (at least 20 characters).",
            code="justification_required",
        )
    with transaction.atomic():
        compensations = list(
            Compensation.objects.select_for_update()
            .filter(standard=standard, event_key=event_key)
            .select_related("utility")
            .order_by("pk")
        )
        if not compensations:
            raise DomainError("No compensation is owed for this event.", code="nothing_to_exempt")
        first = compensations[0]
        if now > first.exemption_deadline:
            deadline = first.exemption_deadline.astimezone(first.utility.zone)
            raise DomainError(
                f"The deadline for an exemption passed on {deadline:%Y-%m-%d %H:%M} "
                f"({first.utility.timezone}).",
                code="exemption_deadline_passed",
            )
        if not any(x.status == Compensation.Status.PENDING for x in compensations):
            raise Conflict(
                "Every compensation of this event is already credited or cancelled.",
                code="nothing_to_exempt",
            )
        if ExemptionRequest.objects.filter(
            standard=standard,
            event_key=event_key,
            status__in=[ExemptionRequest.Status.PENDING, ExemptionRequest.Status.APPROVED],
        ).exists():
            raise Conflict(
                "An exemption for this event is already pending or approved.",
                code="exemption_exists",
            )
        return ExemptionRequest.objects.create(
            utility=first.utility,
            standard=standard,
            event_key=event_key,
            outage=first.outage,
            justification=justification,
            filed_by=actor,
            filed_at=now,
            deadline=first.exemption_deadline,
        )


def exemption_decide(
    *, exemption_id: int, approve: bool, actor, note: str = ""
) -> tuple[ExemptionRequest, int]:
    """Approve (cancel the event's pending compensations) or reject a pending request.
    Returns the request and how many compensations were cancelled."""
    with transaction.atomic():
        exemption = ExemptionRequest.objects.select_for_update().filter(pk=exemption_id).first()
        if exemption is None:
            raise DomainError("No such exemption request.", code="exemption_not_found")
        if exemption.status != ExemptionRequest.Status.PENDING:
            raise Conflict(
                f"This request was already {exemption.get_status_display().lower()}.",
                code="exemption_decided",
            )
        cancelled = 0
        if approve:
            # Locked: the pay task credits under the same lock, so a row is either paid or cancelled.
            pending = list(
                Compensation.objects.select_for_update().filter(
                    standard=exemption.standard,
                    event_key=exemption.event_key,
                    status=Compensation.Status.PENDING,
                )
            )
            if not pending:
                raise Conflict(
                    "The compensation of this event was already credited; an exemption can no "
                    "longer cancel it.",
                    code="already_credited",
                )
            now = timezone.now()
            for compensation in pending:
                compensation.status = Compensation.Status.CANCELLED
                compensation.cancelled_at = now
                compensation.save(update_fields=["status", "cancelled_at"])
            cancelled = len(pending)
        exemption.status = (
            ExemptionRequest.Status.APPROVED if approve else ExemptionRequest.Status.REJECTED
        )
        exemption.decided_by = actor
        exemption.decided_at = timezone.now()
        exemption.decision_note = note
        exemption.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
    return exemption, cancelled
