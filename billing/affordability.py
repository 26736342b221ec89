"""Affordability rules for prepaid consumers (docs/affordability.md): emergency credit the consumer
sees and takes in the app, debt recovered at a capped share of each top-up and a capped daily
amount, and reconnection on part payment. Each rule is off where its BillingPolicy field is empty
or false, and every one moves money only through billing.ledger.ledger_post, so the ledger stays
exact (billing.selectors.ledger_check)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import CharField, Exists, OuterRef, Q, Sum, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from accounts.models import ConsumerAccount, User, Utility
from accounts.selectors import ALERTED
from billing.ledger import ledger_post
from billing.models import Balance, BillingPolicy, EmergencyCredit, LedgerEntry, RelayCommand, TopUp
from billing.relay import disconnection_level, disconnections_lift, policy_for
from core.errors import Conflict
from core.money import money_quantize, utility_money
from core.timebuckets import local_midnight
from meters.models import Meter

logger = logging.getLogger(__name__)

# Bounded chunks for the periodic work: a batch never holds more rows than this.
CHUNK = 500
# A utility's daily debt recovery runs in the first hours of its local day (the hourly beat at
# minute 5 meets each zone's first hour once); later runs of those hours catch up on a missed beat
# and find the accounts already done by their entry's key.
DAILY_RUN_HOURS = 6

# What a refusal to take emergency credit (and the offer's `reason`) says, by code.
NOT_OFFERED = "emergency_credit_not_offered"
IN_USE = "emergency_credit_in_use"
NOT_NEEDED = "emergency_credit_not_needed"
NOT_ENOUGH = "emergency_credit_not_enough"
POSTPAID = "account_postpaid"
CLOSED = "account_closed"
REFUSALS = {
    CLOSED: "This consumer account is closed.",
    POSTPAID: "Emergency credit is for prepaid accounts: a postpaid supply is not cut when a "
    "balance runs out.",
    NOT_OFFERED: "Your utility does not offer emergency credit to take in the app.",
    IN_USE: "Emergency credit is already in use on this account: top up to repay it first.",
    NOT_NEEDED: "Emergency credit can be taken once the balance falls to {amount} or below.",
    NOT_ENOUGH: "The balance is below what emergency credit covers: top up to keep the supply on.",
}


# --- Emergency credit ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EmergencyCreditOffer:
    """What taking emergency credit now would give, or why it cannot be taken (`reason`)."""

    account: ConsumerAccount
    policy: BillingPolicy
    balance: Decimal
    amount: Decimal
    fee: Decimal
    repay_by: datetime | None  # if taken now; None: until the next top-up, with no date
    in_use: EmergencyCredit | None
    reason: str | None  # None: it may be taken now

    @property
    def available(self) -> bool:
        return self.reason is None


def _is_postpaid(account: ConsumerAccount) -> bool:
    from billing.selectors import _is_postpaid as postpaid  # the balance answer's own test

    return postpaid(account)


def emergency_credit_repay_by(*, utility: Utility, policy: BillingPolicy, taken_at: datetime):
    """When credit taken at `taken_at` must be repaid: the same local time emergency_credit_days
    later (a day of Cairo's clock change is still a day), or None when the policy sets no days."""
    if not policy.emergency_credit_days:
        return None
    local = taken_at.astimezone(utility.zone)
    later = datetime.combine(
        local.date() + timedelta(days=policy.emergency_credit_days), local.time(), utility.zone
    )
    return later.astimezone(taken_at.tzinfo)


def emergency_credit_offer(
    *, account: ConsumerAccount, now: datetime | None = None, balance: Decimal | None = None
) -> EmergencyCreditOffer:
    """Whether the account's consumer may take emergency credit now, and on what terms. The first
    reason that applies is given: closed, postpaid, not offered, already in use, not needed yet
    (the balance is above the credit), not enough (the credit would not lift the balance above
    the disconnection level)."""
    now = now or timezone.now()
    utility = account.utility
    policy = policy_for(utility)
    if balance is None:
        balance = (
            Balance.objects.filter(account=account).values_list("amount", flat=True).first()
        ) or Decimal(0)
    amount, fee = policy.emergency_credit, policy.emergency_credit_fee
    in_use = EmergencyCredit.objects.filter(
        account=account, status=EmergencyCredit.Status.ACTIVE
    ).first()
    if account.status == ConsumerAccount.Status.CLOSED:
        reason = CLOSED
    elif _is_postpaid(account):
        reason = POSTPAID
    elif not policy.emergency_credit_on_request or amount <= 0:
        reason = NOT_OFFERED
    elif in_use is not None:
        reason = IN_USE
    elif balance > amount:
        reason = NOT_NEEDED
    elif balance - fee <= -amount:
        reason = NOT_ENOUGH
    else:
        reason = None
    return EmergencyCreditOffer(
        account=account,
        policy=policy,
        balance=balance,
        amount=amount,
        fee=fee,
        repay_by=emergency_credit_repay_by(utility=utility, policy=policy, taken_at=now),
        in_use=in_use,
        reason=reason,
    )


def emergency_credit_take(*, account: ConsumerAccount, user: User | None) -> EmergencyCredit:
    """Take the utility's emergency credit on `account`: the disconnection level falls to minus
    its amount until the balance is back at zero (a top-up repays it) or `repay_by` passes.

    1. Lock the account's Balance row, as every money movement does: two taps at once queue
       here, and the second finds the credit in use (the partial unique constraint
       one_active_emergency_credit refuses it too, should anything get past the lock).
    2. Refuse, writing nothing, unless emergency_credit_offer says it may be taken now.
    3. Record the credit; post its fee (if any) keyed by the credit.
    4. Cancel waiting disconnections and reconnect meters that are off: the new level covers the
       balance (step 2 made sure of it).
    5. Tell the account's alert receivers that it is in use and by when to repay it; after
       commit, the account's balance check runs as after any posting.
    """
    from billing.tasks import account_balance_changed

    utility = account.utility
    now = timezone.now()
    with transaction.atomic():
        Balance.objects.get_or_create(account=account)
        balance = Balance.objects.select_for_update().get(account=account)
        offer = emergency_credit_offer(account=account, now=now, balance=balance.amount)
        if not offer.available:
            message = REFUSALS[offer.reason].format(amount=utility_money(offer.amount, utility))
            raise Conflict(message, code=offer.reason)
        try:
            with transaction.atomic():
                credit = EmergencyCredit.objects.create(
                    account=account,
                    amount=offer.amount,
                    fee=offer.fee,
                    taken_at=now,
                    taken_by=user,
                    repay_by=offer.repay_by,
                )
        except IntegrityError:
            raise Conflict(REFUSALS[IN_USE], code=IN_USE) from None
        if offer.fee > 0:
            posting = ledger_post(
                account=account,
                kind=LedgerEntry.Kind.EMERGENCY_CREDIT_FEE,
                amount=-offer.fee,
                key=f"emergency_credit:{credit.pk}:fee",
                description="Emergency credit fee",
                created_by=user,
                meta={"emergency_credit": credit.pk},
            )
            credit.fee_entry = posting.entry
            credit.save(update_fields=["fee_entry"])
        after = balance.amount - offer.fee
        if after > disconnection_level(account=account, policy=offer.policy, at=now):
            disconnections_lift(account=account, reason="emergency_credit")
        _emergency_credit_tell(account=account, credit=credit)
        transaction.on_commit(lambda: account_balance_changed.delay(account.pk, None))
    logger.info("emergency credit %s taken on account %s", credit.pk, account.pk)
    return credit


# Said where a credit has no repayment date (BillingPolicy.emergency_credit_days empty).
def _until_next_topup():
    from notifications.messages import Phrase

    return Phrase(
        en="your next top-up",
        ar="الشحن القادم",
        hi="अगले रिचार्ज",
    )


def _emergency_credit_tell(*, account: ConsumerAccount, credit: EmergencyCredit) -> None:
    from notifications import categories
    from notifications.services import alert_create

    for link in account.links.filter(ALERTED).select_related("user"):
        alert_create(
            user=link.user,
            category=categories.EMERGENCY_CREDIT_DUE,
            dedupe_key=f"emergency_credit:{credit.pk}",
            context={
                "consumer_id": account.consumer_id,
                "account_id": account.pk,
                "amount": credit.amount,
                "repay_by": credit.repay_by or _until_next_topup(),
            },
            utility=account.utility,
        )


def emergency_credit_settle(*, account: ConsumerAccount, now: datetime | None = None) -> bool:
    """On a payment's path, under its Balance lock: a balance back at or above zero repays the
    credit in use (the disconnection level returns to zero). Whether one was repaid."""
    balance = Balance.objects.filter(account=account).values_list("amount", flat=True).first()
    if balance is None or balance < 0:
        return False
    return bool(
        EmergencyCredit.objects.filter(
            account=account, status=EmergencyCredit.Status.ACTIVE
        ).update(status=EmergencyCredit.Status.REPAID, ended_at=now or timezone.now())
    )


def emergency_credits_expire(*, now: datetime | None = None) -> int:
    """Credits past their repayment date, found through the partial index emergency_credit_due, in
    chunks: repaid if the balance is back at zero or above (a refund, a compensation), else
    expired, and the account's balance check runs again: it orders a disconnection for the next
    allowed time if the balance is at or below the level without the credit. Returns how many
    expired unpaid."""
    from billing.tasks import account_balance_changed

    now = now or timezone.now()
    expired = 0
    while True:
        due = list(
            EmergencyCredit.objects.filter(status=EmergencyCredit.Status.ACTIVE, repay_by__lte=now)
            .order_by("repay_by", "pk")
            .values_list("pk", "account_id")[:CHUNK]
        )
        if not due:
            return expired
        balances = dict(
            Balance.objects.filter(account_id__in=[a for _, a in due]).values_list(
                "account_id", "amount"
            )
        )
        for credit_id, account_id in due:
            paid = balances.get(account_id, Decimal(0)) >= 0
            status = EmergencyCredit.Status.REPAID if paid else EmergencyCredit.Status.EXPIRED
            # Conditional: a top-up repaying it at this moment wins, and nothing is done twice.
            with transaction.atomic():
                changed = EmergencyCredit.objects.filter(
                    pk=credit_id, status=EmergencyCredit.Status.ACTIVE
                ).update(status=status, ended_at=now)
                if changed and not paid:
                    expired += 1
                    transaction.on_commit(
                        lambda account_id=account_id: account_balance_changed.delay(
                            account_id, None
                        )
                    )


# --- Debt recovery ------------------------------------------------------------------------------


def debt_recovered_on(*, account_id: int, utility: Utility, day: date) -> Decimal:
    """What was recovered from the account's debt on one local day: top-up shares and the daily
    rate together (index account, kind, created_at)."""
    zone = utility.zone
    total = LedgerEntry.objects.filter(
        account_id=account_id,
        kind=LedgerEntry.Kind.DEBT_RECOVERY,
        created_at__gte=local_midnight(day, zone),
        created_at__lt=local_midnight(day + timedelta(days=1), zone),
    ).aggregate(total=Sum("amount"))["total"]
    return -(total or Decimal(0))


def debt_recovery_room(
    *, account: ConsumerAccount, policy: BillingPolicy, now: datetime
) -> Decimal | None:
    """How much more may be recovered from the account's debt today (its utility's local day)
    under policy.debt_recovery_daily_cap; None without a cap."""
    cap = policy.debt_recovery_daily_cap
    if cap is None:
        return None
    utility = account.utility
    day = now.astimezone(utility.zone).date()
    recovered = debt_recovered_on(account_id=account.pk, utility=utility, day=day)
    return max(Decimal(0), cap - recovered)


def debt_recover_from_topup(*, account: ConsumerAccount, topup: TopUp) -> Decimal:
    """A top-up's share for arrears (policy.debt_recovery_percent), never more than the debt nor
    what today's cap leaves (policy.debt_recovery_daily_cap). Under the caller's Balance lock.
    Returns the amount recovered."""
    balance = Balance.objects.select_for_update().get(account=account)
    if balance.debt <= 0:
        return Decimal(0)
    policy = policy_for(account.utility)
    share = policy.debt_recovery_percent / 100
    recover = min(
        balance.debt,
        money_quantize(topup.amount * share, minor_unit=account.utility.currency_minor_unit),
    )
    room = debt_recovery_room(account=account, policy=policy, now=timezone.now())
    capped = room is not None and room < recover
    if capped:
        recover = room
    if recover <= 0:
        return Decimal(0)
    ledger_post(
        account=account,
        kind=LedgerEntry.Kind.DEBT_RECOVERY,
        amount=-recover,
        key=f"debt:{topup.pk}",
        description=f"Arrears recovered from top-up ({share * 100:.0f}%"
        + (", today's cap reached)" if capped else ")"),
        debt_change=-recover,
        meta={"topup": str(topup.pk), "capped": capped},
    )
    return recover


def debt_daily_recover(*, now: datetime | None = None) -> int:
    """The daily rate (policy.debt_recovery_daily_rate), once per account and local day, for the
    utilities whose day began less than DAILY_RUN_HOURS ago. Returns the entries posted."""
    now = now or timezone.now()
    posted = 0
    for policy in BillingPolicy.objects.filter(
        utility__is_active=True, debt_recovery_daily_rate__gt=0
    ).select_related("utility"):
        utility = policy.utility
        local = now.astimezone(utility.zone)
        if local.hour >= DAILY_RUN_HOURS:
            continue
        posted += _debt_day_recover(utility=utility, policy=policy, day=local.date(), now=now)
    return posted


def _debt_day_key(account_id: int, day: date) -> str:
    return f"debt-day:{account_id}:{day.isoformat()}"


def _debt_day_recover(*, utility: Utility, policy: BillingPolicy, day: date, now: datetime) -> int:
    """One utility's day: its prepaid accounts in debt (the partial index balance_in_debt), in
    chunks by account id, without today's entry yet (its unique key). Each takes
    min(rate, debt, what today's cap leaves, the balance above zero): the daily rate never cuts a
    supply by itself. The posted accounts' balance checks run after commit (alerts)."""
    from billing.tasks import accounts_balance_changed

    done = LedgerEntry.objects.filter(
        key=Concat(
            Value("debt-day:"),
            Cast(OuterRef("account_id"), CharField()),
            Value(f":{day.isoformat()}"),
        )
    )
    postpaid = Meter.objects.filter(
        account_id=OuterRef("account_id"), payment_mode=Meter.PaymentMode.POSTPAID
    )
    rate = policy.debt_recovery_daily_rate
    posted, last = 0, 0
    while True:
        chunk = list(
            Balance.objects.filter(debt__gt=0, account__utility=utility, account_id__gt=last)
            .exclude(account__status=ConsumerAccount.Status.CLOSED)
            .exclude(Exists(done))
            .exclude(Exists(postpaid))
            .order_by("account_id")
            .values_list("account_id", flat=True)[:CHUNK]
        )
        if not chunk:
            return posted
        last = chunk[-1]
        touched = []
        for account in ConsumerAccount.objects.filter(pk__in=chunk).order_by("pk"):
            account.utility = utility
            if _debt_day_post(account=account, policy=policy, rate=rate, day=day, now=now):
                touched.append(account.pk)
        posted += len(touched)
        if touched:
            transaction.on_commit(lambda ids=touched: accounts_balance_changed.delay(ids))


def _debt_day_post(
    *, account: ConsumerAccount, policy: BillingPolicy, rate: Decimal, day: date, now: datetime
) -> bool:
    with transaction.atomic():
        # The Balance row first, as a top-up takes it: the two never recover past the cap together.
        balance = Balance.objects.select_for_update().get(account=account)
        room = debt_recovery_room(account=account, policy=policy, now=now)
        take = min(rate, balance.debt, max(Decimal(0), balance.amount))
        if room is not None:
            take = min(take, room)
        take = money_quantize(take, minor_unit=account.utility.currency_minor_unit)
        if take <= 0:
            return False
        return ledger_post(
            account=account,
            kind=LedgerEntry.Kind.DEBT_RECOVERY,
            amount=-take,
            key=_debt_day_key(account.pk, day),
            description=f"Arrears recovered at the daily rate ({day.isoformat()})",
            debt_change=-take,
            meta={"day": day.isoformat()},
        ).created


# --- Reconnection on part payment -----------------------------------------------------------------


def _cut_for_non_payment(account: ConsumerAccount) -> bool:
    """A disconnection for an exhausted balance is waiting or on its way, or carried out on a
    meter of the account that is still off."""
    off = Meter.objects.filter(account=account, payment_mode=Meter.PaymentMode.PREPAID).exclude(
        Q(status=Meter.Status.REMOVED) | Q(relay=Meter.Relay.CLOSED)
    )
    return (
        RelayCommand.objects.filter(
            account=account, action=RelayCommand.Action.DISCONNECT, reason="balance_exhausted"
        )
        .filter(
            Q(status__in=[RelayCommand.Status.WAITING, RelayCommand.Status.SENT])
            | Q(status=RelayCommand.Status.DONE, meter__in=off)
        )
        .exists()
    )


def part_payment_reschedule(
    *, account: ConsumerAccount, topup: TopUp, balance_before: Decimal
) -> Decimal:
    """Reconnection on part payment (policy.reconnect_min_payment_percent; India: 50 % of the dues).

    On a top-up's path, under its Balance lock, after its credit and before its debt recovery: a
    prepaid account cut (or about to be cut) for non-payment, whose balance before the payment B
    was below zero with debt D, and whose payment P covers the policy's share of the dues
    (-B + D) without paying them all, has -B rescheduled as debt (a DEBT_RESCHEDULE entry keyed by
    the top-up). The balance is then P, above zero, and the payment reconnects as any would; the
    debt is recovered by the top-up shares and the daily rate. Returns what was rescheduled.
    """
    percent = policy_for(account.utility).reconnect_min_payment_percent
    if percent is None or balance_before >= 0:
        return Decimal(0)
    debt = Balance.objects.select_for_update().get(account=account).debt
    dues = -balance_before + debt
    if topup.amount >= dues or topup.amount * 100 < percent * dues:
        return Decimal(0)  # paid in full, nothing to reschedule; or too little for the rule
    if not _cut_for_non_payment(account):
        return Decimal(0)
    ledger_post(
        account=account,
        kind=LedgerEntry.Kind.DEBT_RESCHEDULE,
        amount=-balance_before,
        key=f"reschedule:{topup.pk}",
        description=f"Unpaid balance rescheduled as debt: {percent:f}% of the dues paid",
        debt_change=-balance_before,
        meta={"topup": str(topup.pk), "dues": f"{dues:f}", "percent": f"{percent:f}"},
    )
    return -balance_before


# --- The daily run ------------------------------------------------------------------------------


def affordability_daily(*, now: datetime | None = None) -> dict[str, int]:
    """The hourly beat's work: emergency credits past their date, then each utility's daily
    debt recovery once its local day has begun."""
    now = now or timezone.now()
    return {
        "expired": emergency_credits_expire(now=now),
        "recovered": debt_daily_recover(now=now),
    }
