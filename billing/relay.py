"""Prepaid disconnection and reconnection, within each utility's friendly hours."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Exists, F, Max, OuterRef, Q
from django.utils import timezone

from accounts.models import ConsumerAccount, Utility
from billing import headend
from billing.energy_days import energy_days_flush
from billing.models import (
    Balance,
    BillingPolicy,
    EmergencyCredit,
    LedgerEntry,
    RelayCommand,
    TopUp,
)
from core.money import money_quantize
from meters.models import Meter, MeterAssignment, MeterEvent

logger = logging.getLogger(__name__)


def policy_for(utility: Utility) -> BillingPolicy:
    policy, created = BillingPolicy.objects.get_or_create(utility=utility)
    if created:
        policy.refresh_from_db()  # field defaults as the database stores them: Decimal and time, not int and str
    return policy


def is_public_holiday(*, utility: Utility, day) -> bool:
    """No disconnection that day: one of the utility's days off (its country's and region's public
    holidays and the days staff added, Utility.holidays_in) or a no-disconnection day staff
    declared (an emergency)."""
    return day in utility.holidays_in(day.year) or day in utility.no_disconnection_days_in(day.year)


def disconnect_allowed_from(
    *, utility: Utility, policy: BillingPolicy, moment: datetime
) -> datetime:
    """The first instant at or after `moment` when a disconnection may be carried out: not at night
    (policy.friendly_night_start to friendly_night_end, local time), not on the utility's weekend,
    not on a public holiday of its country."""
    zone = utility.zone
    local = moment.astimezone(zone)
    start, end = policy.friendly_night_start, policy.friendly_night_end
    for _ in range(60):
        day = local.date()
        blocked_day = (
            policy.no_disconnect_on_weekends and day.weekday() in utility.weekend_days
        ) or (policy.no_disconnect_on_holidays and is_public_holiday(utility=utility, day=day))
        if blocked_day:
            local = datetime.combine(day + timedelta(days=1), end, zone)
            continue
        clock = local.time()
        at_night = (clock >= start or clock < end) if start > end else (start <= clock < end)
        if at_night:
            next_day = day if clock < end else day + timedelta(days=1)
            local = datetime.combine(next_day, end, zone)
            continue
        return local.astimezone(UTC)
    raise RuntimeError(f"no allowed disconnection time within 60 days for {utility}")


def _active_meters(account: ConsumerAccount):
    return Meter.objects.filter(account=account, payment_mode=Meter.PaymentMode.PREPAID).exclude(
        status=Meter.Status.REMOVED
    )


def emergency_credit_in_force(*, account_id: int, at: datetime) -> EmergencyCredit | None:
    """The emergency credit the consumer took that holds at `at` (billing.affordability): taken by
    then, neither repaid nor past its repayment date. By times, not by status: the standards engine
    checks a disconnect at the moment it went out, and a credit past `repay_by` no longer counts
    even before the daily run marks it expired."""
    return (
        EmergencyCredit.objects.filter(account_id=account_id, taken_at__lte=at)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=at))
        .filter(Q(repay_by__isnull=True) | Q(repay_by__gt=at))
        .order_by("-taken_at")
        .first()
    )


def emergency_credit_limit(
    *, account: ConsumerAccount, policy: BillingPolicy, at: datetime
) -> Decimal:
    """How far below zero the balance may go at `at` before the supply is cut.

    Automatic (policy.emergency_credit_on_request off): the policy's allowance. On request: the
    credit the consumer took and that is still in force (emergency_credit_in_force), else zero.
    Every path that decides a disconnection reads it here, through disconnection_level: the
    order (disconnect_evaluate), the send and the standards engine's check (disconnect_check);
    the balance answer shows it. docs/affordability.md.
    """
    if not policy.emergency_credit_on_request:
        return policy.emergency_credit
    credit = emergency_credit_in_force(account_id=account.pk, at=at)
    return credit.amount if credit is not None else Decimal(0)


def disconnection_level(
    *, account: ConsumerAccount, policy: BillingPolicy, at: datetime
) -> Decimal:
    """The balance at or below which the supply is cut at `at`: minus emergency_credit_limit."""
    return -emergency_credit_limit(account=account, policy=policy, at=at)


def disconnect_evaluate(
    *, account: ConsumerAccount, now: datetime | None = None
) -> list[RelayCommand]:
    """Order a disconnection when a prepaid balance has used up its emergency credit.

    The command waits for the next allowed time; a top-up before then cancels it.
    """
    now = now or timezone.now()
    policy = policy_for(account.utility)
    balance = Balance.objects.filter(account=account).first()
    if balance is None or balance.amount > disconnection_level(
        account=account, policy=policy, at=now
    ):
        return []
    created = []
    not_before = disconnect_allowed_from(utility=account.utility, policy=policy, moment=now)
    for meter in _active_meters(account).filter(relay=Meter.Relay.CLOSED):
        try:
            with transaction.atomic():
                created.append(
                    RelayCommand.objects.create(
                        meter=meter,
                        account=account,
                        action=RelayCommand.Action.DISCONNECT,
                        reason="balance_exhausted",
                        not_before=not_before,
                    )
                )
        except IntegrityError:  # a command for this meter is already pending
            continue
    return created


def reconnect_after_payment(
    *, account: ConsumerAccount, payment_notified_at: datetime
) -> list[RelayCommand]:
    """A payment lifted the balance above zero: cancel waiting disconnections and reconnect at once.

    A payment learned late (reconciliation passes the gateway's own payment time) may predate a
    disconnection already carried out: that one was wrongful (paid before the send), and the
    standards engine reconnects and compensates it (disconnect_wrongful_check).
    """
    balance = Balance.objects.filter(account=account).first()
    if balance is None or balance.amount <= 0:
        return []
    for command_id in RelayCommand.objects.filter(
        account=account,
        action=RelayCommand.Action.DISCONNECT,
        status=RelayCommand.Status.DONE,
        sent_at__gte=payment_notified_at,
    ).values_list("pk", flat=True):
        disconnect_wrongful_check(command_id=command_id)
    return disconnections_lift(
        account=account, reason="payment", payment_notified_at=payment_notified_at
    )


def disconnections_lift(
    *, account: ConsumerAccount, reason: str, payment_notified_at: datetime | None = None
) -> list[RelayCommand]:
    """The account is no longer to be cut (a payment, emergency credit taken): cancel its waiting
    disconnections and reconnect its meters that are off, at once."""
    waiting = RelayCommand.objects.filter(
        account=account, action=RelayCommand.Action.DISCONNECT, status=RelayCommand.Status.WAITING
    )
    # A waiting disconnect that went out before (a send that timed out, a dead worker's) may have
    # been carried out: its meter is reconnected too (the head-end ignores a needless reconnect).
    tried = set(waiting.filter(sent_at__isnull=False).values_list("meter_id", flat=True))
    waiting.update(status=RelayCommand.Status.CANCELLED)
    commands = []
    for meter in _active_meters(account).filter(Q(pk__in=tried) | ~Q(relay=Meter.Relay.CLOSED)):
        command = reconnect_request(
            meter=meter, reason=reason, payment_notified_at=payment_notified_at
        )
        if command:
            commands.append(command)
    return commands


def reconnect_request(
    *, meter: Meter, reason: str, payment_notified_at: datetime | None = None
) -> RelayCommand | None:
    """Reconnect a meter now (after a payment, or a wrongful disconnection). Sent after commit."""
    from billing.tasks import relay_dispatch

    try:
        with transaction.atomic():
            command = RelayCommand.objects.create(
                meter=meter,
                account_id=meter.account_id,
                action=RelayCommand.Action.RECONNECT,
                reason=reason,
                not_before=timezone.now(),
                payment_notified_at=payment_notified_at,
            )
    except IntegrityError:
        # A disconnect is in flight for this meter; relay_due re-checks and reconnects after it.
        logger.info("reconnect of %s deferred: another command is pending", meter)
        return None
    transaction.on_commit(lambda: relay_dispatch.delay(str(command.pk)))
    return command


def disconnect_wrongful_check(*, command_id) -> None:
    """Hand a disconnect that went out (or may have) to the standards engine: it checks the
    disconnect at the moment it went out and, if that was wrongful, reconnects the meter at once
    and records the compensation (outages.standards.wrongful_disconnection_detect)."""
    # Imported here: outages builds on billing and imports it at load. Billing calls the engine
    # at the moment it learns the fact rather than have it poll every disconnection.
    from outages.standards import wrongful_disconnection_detect

    wrongful_disconnection_detect(command_id=command_id)


# --- The rules of a disconnection, checked where it is sent -------------------------------------
# relay_dispatch checks them at the moment a disconnect would go out; every path that sends comes
# through it (the first send, a retry, a backlog after an outage, a dead worker's command). The
# standards engine checks them again at the moment one did go out. See docs/disconnections.md.

FORBIDDEN_HOURS = "forbidden_hours"
NOT_IN_DEBT = "not_in_debt"
PAID_SINCE_ORDER = "paid_since_order"
METER_NOT_HELD = "meter_not_held"
GROUND_TEXTS = {
    FORBIDDEN_HOURS: "outside the hours when disconnection is allowed",
    NOT_IN_DEBT: "the account was not in debt",
    PAID_SINCE_ORDER: "the account had paid since the disconnection was ordered",
    METER_NOT_HELD: "the meter was not the indebted account's",
}


@dataclass(frozen=True)
class DisconnectCheck:
    """The rules for one disconnect going out at `at` and carried out by `until`, as they stood."""

    command: RelayCommand
    policy: BillingPolicy
    at: datetime
    until: datetime
    allowed_from: datetime  # when a send may start: `at` itself when at..until is allowed time
    balance: Decimal
    level: Decimal  # the disconnection level: minus the emergency credit
    payments: tuple[datetime, ...]  # payments since the order that lifted the balance above it
    holder_id: int | None  # the account that held the meter at `at`
    meter_in_service: bool  # prepaid and not removed

    @property
    def grounds(self) -> list[str]:
        """The rules this send breaks; empty when it may go."""
        found = []
        if self.allowed_from != self.at:
            found.append(FORBIDDEN_HOURS)
        if self.balance > self.level:
            found.append(NOT_IN_DEBT)
        if self.payments:
            found.append(PAID_SINCE_ORDER)
        if self.holder_id != self.command.account_id or not self.meter_in_service:
            found.append(METER_NOT_HELD)
        return found

    def evidence(self) -> dict:
        """What was checked, in the utility's local time and currency decimals (JSON)."""
        command, policy = self.command, self.policy
        utility = command.account.utility
        zone = utility.zone

        def local(moment: datetime | None) -> str | None:
            return moment.astimezone(zone).isoformat() if moment else None

        def money(amount: Decimal) -> str:
            return str(money_quantize(amount, minor_unit=utility.currency_minor_unit))

        holder = (
            ConsumerAccount.objects.filter(pk=self.holder_id).values_list("consumer_id", flat=True)
        ).first()
        return {
            "grounds": self.grounds,
            "command": str(command.pk),
            "meter": command.meter.serial,
            "ordered_at": local(command.created_at),
            "sent_at": local(self.at),
            "carried_out_by": local(self.until),
            "friendly_hours": {
                "timezone": utility.timezone,
                "no_disconnection_from": policy.friendly_night_start.strftime("%H:%M"),
                "no_disconnection_until": policy.friendly_night_end.strftime("%H:%M"),
                "not_on_weekends": policy.no_disconnect_on_weekends,
                "not_on_holidays": policy.no_disconnect_on_holidays,
                "allowed_from": local(self.allowed_from),
                "ok": FORBIDDEN_HOURS not in self.grounds,
            },
            "balance": {
                "at": local(self.at),
                "amount": money(self.balance),
                "disconnection_level": money(self.level),
                "currency": utility.currency,
                "ok": self.balance <= self.level,
            },
            "payments_since_order": {
                "paid_at": [local(paid_at) for paid_at in self.payments],
                "ok": not self.payments,
            },
            "meter_holder": {
                "ordered_for": command.account.consumer_id,
                "held_by": holder,
                "in_service": self.meter_in_service,
                "ok": METER_NOT_HELD not in self.grounds,
            },
        }


def disconnect_check(
    *,
    command: RelayCommand,
    at: datetime,
    until: datetime | None = None,
    balance: Decimal | None = None,
) -> DisconnectCheck:
    """The rules for `command` going out at `at` and being carried out by `until`:

    1. Friendly hours: all of at..until is allowed time (disconnect_allowed_from: night, weekend,
       the utility's holidays and no-disconnection days).
    2. Debt: the balance at `at` is at or below the disconnection level (disconnection_level:
       minus the emergency credit, automatic or taken and in force at `at`): `balance` when the
       caller read it under lock, else the ledger's running balance.
    3. No payment since the order: no top-up posted after the order was made and paid by `at`
       whose postings left the balance above that level (a part payment still in debt is none).
    4. The meter: held by the command's account at `at` (its tenancy), prepaid, not removed.
    """
    account = command.account
    utility = account.utility
    policy = policy_for(utility)
    until = max(until or at, at)
    level = disconnection_level(account=account, policy=policy, at=at)
    holder_id = (
        MeterAssignment.objects.filter(meter_id=command.meter_id, start__lte=at)
        .filter(Q(end__isnull=True) | Q(end__gt=at))
        .values_list("account_id", flat=True)
        .first()
    )
    meter = command.meter
    return DisconnectCheck(
        command=command,
        policy=policy,
        at=at,
        until=until,
        allowed_from=_send_allowed_from(utility=utility, policy=policy, start=at, end=until),
        balance=_balance_at(account_id=account.pk, at=at) if balance is None else balance,
        level=level,
        payments=_payments_since_order(command=command, until=at, level=level),
        holder_id=holder_id,
        meter_in_service=meter.payment_mode == Meter.PaymentMode.PREPAID
        and meter.status != Meter.Status.REMOVED,
    )


def _send_allowed_from(
    *, utility: Utility, policy: BillingPolicy, start: datetime, end: datetime
) -> datetime:
    """`start` when all of start..end is allowed time, else the first moment a send may start."""
    first = disconnect_allowed_from(utility=utility, policy=policy, moment=start)
    if first != start:
        return first
    last = disconnect_allowed_from(utility=utility, policy=policy, moment=end)
    return start if last == end else last


def _balance_at(*, account_id: int, at: datetime) -> Decimal:
    """The account's balance at `at`: the running balance of its last ledger entry by then."""
    amount = (
        LedgerEntry.objects.filter(account_id=account_id, created_at__lte=at)
        .order_by("-created_at", "-id")
        .values_list("balance_after", flat=True)
        .first()
    )
    return Decimal(0) if amount is None else amount


def _balance_after_payment(topup_id) -> Decimal | None:
    """The balance a top-up left: the running balance of its last posting (billing.payments posts
    the credit as topup:<id>, then the share of arrears it repays as debt:<id>)."""
    return (
        LedgerEntry.objects.filter(key__in=[f"topup:{topup_id}", f"debt:{topup_id}"])
        .order_by("-id")
        .values_list("balance_after", flat=True)
        .first()
    )


def _payments_since_order(
    *, command: RelayCommand, until: datetime, level: Decimal
) -> tuple[datetime, ...]:
    """When the payments notified by `until` that the order did not know of (posted after it was
    made) were paid, of those that left the balance above `level`."""
    topups = (
        TopUp.objects.filter(
            account_id=command.account_id,
            status=TopUp.Status.SUCCEEDED,
            purpose=TopUp.Purpose.BALANCE,
            paid_at__lte=until,
            ledger_entry__created_at__gte=command.created_at,
        )
        .order_by("paid_at")
        .values_list("pk", "paid_at")
    )
    lifted = []
    for topup_id, paid_at in topups:
        after = _balance_after_payment(topup_id)
        if after is not None and after > level:
            lifted.append(paid_at)
    return tuple(lifted)


def _disconnect_hold(*, check: DisconnectCheck) -> None:
    """A disconnect that may not go out now. Outside friendly hours only: it waits for the next
    allowed moment, and is checked again then. Otherwise it is cancelled: the account is no longer
    in debt, or no longer holds the meter, or paid after the order.

    An order that never went out and was overtaken by a payment while the account is still (or
    again) in debt is made afresh from now: an order never outlives a payment it did not know of.
    One that went out before (a send that timed out, a dead worker's) may have been carried out:
    its meter is reconnected, with the payment's time when a payment is why (the 2-hour standard),
    and the account's next balance check orders again if it is still in debt.
    """
    command, grounds = check.command, check.grounds
    utility = command.account.utility
    at = f"{check.at.astimezone(utility.zone):%Y-%m-%d %H:%M:%S} {utility.timezone}"
    if grounds == [FORBIDDEN_HOURS]:
        until = f"{check.allowed_from.astimezone(utility.zone):%Y-%m-%d %H:%M} {utility.timezone}"
        RelayCommand.objects.filter(pk=command.pk, status=RelayCommand.Status.WAITING).update(
            not_before=check.allowed_from,
            error=f"Not sent at {at}: outside the allowed hours; waits until {until}.",
        )
        logger.info("disconnect %s held until %s: outside the allowed hours", command.pk, until)
        return
    why = "; ".join(GROUND_TEXTS[ground] for ground in grounds if ground != FORBIDDEN_HOURS)
    cancelled = RelayCommand.objects.filter(
        pk=command.pk, status=RelayCommand.Status.WAITING
    ).update(status=RelayCommand.Status.CANCELLED, error=f"Cancelled at {at}: {why}."[:300])
    logger.info("disconnect %s cancelled when due: %s", command.pk, why)
    if not cancelled:
        return
    if command.sent_at is not None:
        if command.meter.account_id is not None:
            reconnect_request(
                meter=command.meter,
                reason="payment" if check.payments else "unconfirmed_disconnect",
                payment_notified_at=check.payments[0] if check.payments else None,
            )
    elif PAID_SINCE_ORDER in grounds and NOT_IN_DEBT not in grounds:
        disconnect_evaluate(account=command.account, now=check.at)


def reconnect_payment_time(*, meter: Meter, before: datetime) -> datetime | None:
    """When the payment that calls for reconnecting `meter` was notified, for a reconnect made
    at `before` without one (a deferred or repeated reconnect): the time an earlier reconnect of
    the same disconnection carried (its command failed), else the first top-up after the
    disconnection went out that left the balance above zero (it came while the disconnect was in
    flight, so its reconnect was deferred). None when no payment explains the reconnect."""
    disconnect = (
        RelayCommand.objects.filter(
            meter=meter,
            action=RelayCommand.Action.DISCONNECT,
            status=RelayCommand.Status.DONE,
            completed_at__lte=before,
        )
        .order_by("-completed_at")
        .first()
    )
    if disconnect is None:
        return None
    since = disconnect.sent_at or disconnect.completed_at
    carried = (
        RelayCommand.objects.filter(
            meter=meter,
            action=RelayCommand.Action.RECONNECT,
            created_at__gte=since,
            created_at__lte=before,
            payment_notified_at__isnull=False,
        )
        .order_by("created_at")
        .values_list("payment_notified_at", flat=True)
        .first()
    )
    if carried is not None:
        return carried
    for topup_id, paid_at in (
        TopUp.objects.filter(
            account_id=disconnect.account_id,
            status=TopUp.Status.SUCCEEDED,
            purpose=TopUp.Purpose.BALANCE,
            paid_at__gte=since,
            paid_at__lte=before,
        )
        .order_by("paid_at")
        .values_list("pk", "paid_at")
    ):
        after = _balance_after_payment(topup_id)
        if after is not None and after > 0:
            return paid_at
    return None


RETRY_DELAYS = [60, 300, 900, 3600]


def relay_dispatch(*, command_id: str) -> RelayCommand | None:
    """Send one due command to the head-end.

    1. Claim it with a conditional UPDATE (waiting → sent): of two workers, one sends. A
       disconnect is first checked, in the claim's transaction, at this very moment
       (disconnect_check): outside friendly hours, counting the time the head-end may take to act
       on it, it waits again until the next allowed moment; an account no longer in debt, paid
       since the order, or no longer holding the meter has it cancelled. The first send, a retry,
       a backlog after an outage and a dead worker's command all come through here.
    2. Send; on success mark it done and set the meter's relay and status. A disconnect is then
       checked again at the moment it went out, by the standards engine: a wrongful one is
       reconnected at once and compensated (disconnect_wrongful_check).
    3. A transient failure puts it back to waiting with a later not_before (for a disconnect, an
       allowed one); a permanent one fails it.
    """
    now = timezone.now()
    command = (
        RelayCommand.objects.select_related("meter", "account__utility")
        .filter(pk=command_id, status=RelayCommand.Status.WAITING, not_before__lte=now)
        .first()
    )
    if command is None:
        return None
    disconnect = command.action == RelayCommand.Action.DISCONNECT
    with transaction.atomic():
        if disconnect:
            # The account's Balance row first, as a payment takes it (topup_confirm): a payment
            # either commits before this check, which sees it, or waits and finds the command sent
            # (its paid_at is then after the send, and its reconnect follows this disconnect).
            balance = (
                Balance.objects.select_for_update()
                .filter(account_id=command.account_id)
                .values_list("amount", flat=True)
                .first()
            )
            # The energy held for the open day becomes its entry first, so the ledger's running
            # balance at the send is the balance checked here: the standard's later look at the
            # send (disconnect_wrongful_check, from the ledger) sees what this check saw.
            energy_days_flush(account_id=command.account_id)
            now = timezone.now()  # the moment of the check and the send, after any lock wait
            check = disconnect_check(
                command=command,
                at=now,
                until=now + headend.relay_send_bound(),
                balance=Decimal(0) if balance is None else balance,
            )
            if check.grounds:
                _disconnect_hold(check=check)
                return None
        claimed = RelayCommand.objects.filter(
            pk=command_id, status=RelayCommand.Status.WAITING, not_before__lte=now
        ).update(status=RelayCommand.Status.SENT, sent_at=now)
        if claimed != 1:
            return None
    try:
        headend.relay_send(
            command=command.action, meter_serial=command.meter.serial, reference=str(command.pk)
        )
    except headend.TransientHeadEndError as exc:
        delay = RETRY_DELAYS[min(command.attempts, len(RETRY_DELAYS) - 1)]
        retry_at = timezone.now() + timedelta(seconds=delay)
        if disconnect:  # step 1 checks the retry again; this spares claims in the night
            utility = command.account.utility
            retry_at = disconnect_allowed_from(
                utility=utility, policy=policy_for(utility), moment=retry_at
            )
        RelayCommand.objects.filter(pk=command.pk).update(
            status=RelayCommand.Status.WAITING,
            attempts=command.attempts + 1,
            not_before=retry_at,
            error=str(exc)[:300],
        )
        return None
    except headend.PermanentHeadEndError as exc:
        RelayCommand.objects.filter(pk=command.pk).update(
            status=RelayCommand.Status.FAILED, error=str(exc)[:300]
        )
        return None
    done = timezone.now()
    with transaction.atomic():
        RelayCommand.objects.filter(pk=command.pk).update(
            status=RelayCommand.Status.DONE, completed_at=done, attempts=command.attempts + 1
        )
        if disconnect:
            Meter.objects.filter(pk=command.meter_id).update(
                relay=Meter.Relay.OPEN, status=Meter.Status.DISCONNECTED
            )
            # In the same transaction: a disconnect is never left done but unchecked.
            disconnect_wrongful_check(command_id=command.pk)
        else:
            Meter.objects.filter(pk=command.meter_id).update(
                relay=Meter.Relay.CLOSED, status=Meter.Status.ACTIVE
            )
    command.refresh_from_db()
    return command


STALE_SENT = timedelta(minutes=10)
RECOVERY_BATCH = 500


def relay_due(*, now: datetime | None = None) -> list[str]:
    """Commands whose time has come, and reconnections that a busy meter deferred.

    1. A worker that died between claiming and confirming leaves a command "sent", which may or
       may not have reached the head-end. A disconnect among them is checked as if carried out
       when it was sent: if that was wrongful the standards engine cancels it, reconnects and
       compensates. The others wait again and go through relay_dispatch's checks like any other
       (the head-end treats a repeated order as the same one): recovered at 18:10, a disconnect
       waits for the next allowed morning.
    2. A meter still off whose account is above zero with nothing pending: its reconnect was
       deferred (a disconnect was in flight when the payment came) or failed. It is reconnected
       with the time of the payment that called for it (reconnect_payment_time), from which the
       2-hour standard is measured.
    3. The waiting commands that are due.
    """
    now = now or timezone.now()
    stale = (
        RelayCommand.objects.filter(status=RelayCommand.Status.SENT, sent_at__lt=now - STALE_SENT)
        .order_by("sent_at")
        .only("pk", "action")[:RECOVERY_BATCH]
    )
    for command in stale:
        if command.action == RelayCommand.Action.DISCONNECT:
            try:
                disconnect_wrongful_check(command_id=command.pk)
            except Exception:  # one bad row must not stop the beat: it is checked again later,
                # behind the others (its sent_at moved on), so it never holds up the batch
                logger.exception("disconnect %s could not be checked", command.pk)
                RelayCommand.objects.filter(pk=command.pk, status=RelayCommand.Status.SENT).update(
                    sent_at=now
                )
                continue
        RelayCommand.objects.filter(pk=command.pk, status=RelayCommand.Status.SENT).update(
            status=RelayCommand.Status.WAITING
        )
    # Deferred reconnects: a balance back above zero, or above the level of emergency credit the
    # consumer took (a reconnect asked while a disconnect was in flight). The open prepaid meters
    # first (the few that are off: the partial index meter_prepaid_relay_open), then each one's
    # balance and credit by their keys; a join to them hashed every balance of the utility.
    paid = Balance.objects.filter(account_id=OuterRef("account_id"), amount__gt=0)
    covered = EmergencyCredit.objects.filter(
        Q(repay_by__isnull=True) | Q(repay_by__gt=now),
        account_id=OuterRef("account_id"),
        status=EmergencyCredit.Status.ACTIVE,
        account__balance__amount__gt=-F("amount"),
    )
    for meter in (
        Meter.objects.filter(payment_mode=Meter.PaymentMode.PREPAID, relay=Meter.Relay.OPEN)
        .exclude(status=Meter.Status.REMOVED)
        .filter(Exists(paid) | Exists(covered))
        .exclude(relay_commands__status__in=["waiting", "sent"])
    ):
        reconnect_request(
            meter=meter,
            reason="payment",
            payment_notified_at=reconnect_payment_time(meter=meter, before=now),
        )
    return [
        str(pk)
        for pk in RelayCommand.objects.filter(
            status=RelayCommand.Status.WAITING, not_before__lte=now
        ).values_list("pk", flat=True)
    ]


# A meter's clock and the head-end's may differ: an event this much before the order went out
# still confirms it.
CONFIRM_SKEW = timedelta(minutes=2)
CONFIRMS = {
    MeterEvent.Kind.RELAY_CLOSED: (RelayCommand.Action.RECONNECT, Meter.Relay.CLOSED),
    MeterEvent.Kind.RELAY_OPEN: (RelayCommand.Action.DISCONNECT, Meter.Relay.OPEN),
}


def relay_events_confirm(sender, *, utility, events, **kwargs) -> None:
    """The meters' own word that their relay switched (meters.signals.meter_events_stored, in the
    ingest's transaction, with the batch's newly stored events).

    1. Only relay events are read; the batch's commands come in one query over their meters.
    2. A relay_closed event confirms the meter's latest reconnect sent (sent or done) by the
       event's time (CONFIRM_SKEW allowed): confirmed_at = the event's time. Not when that one is
       confirmed already (a repeated report), nor when a disconnect went out between it and the
       event (the relay closed for another reason). relay_open likewise confirms the latest
       disconnect. A conditional update: two batches never confirm one command twice.
    3. Meter.relay follows the meter's newest relay event, where it differs (an old event
       arriving late does not undo a newer one).
    4. The reconnection standard is measured again to the confirmation (the standards engine's
       standards_evaluate_reconnection): a compensation recorded on the head-end's acceptance is
       corrected by the difference; one on time by acceptance and late by confirmation is
       recorded now.
    """
    relay_events = sorted(
        (e for e in events if e.kind in CONFIRMS), key=lambda e: (e.occurred_at, e.pk)
    )
    if not relay_events:
        return
    meter_ids = {e.meter_id for e in relay_events}
    latest_event = max(e.occurred_at for e in relay_events)
    commands: dict[int, list[RelayCommand]] = {}
    for command in (
        RelayCommand.objects.filter(
            meter_id__in=meter_ids,
            status__in=[RelayCommand.Status.SENT, RelayCommand.Status.DONE],
            sent_at__lte=latest_event + CONFIRM_SKEW,
        )
        .only("pk", "meter_id", "action", "sent_at", "confirmed_at")
        .order_by("sent_at", "pk")
    ):
        commands.setdefault(command.meter_id, []).append(command)
    confirmed = []
    for event in relay_events:
        action, _ = CONFIRMS[event.kind]
        sent = [
            c
            for c in commands.get(event.meter_id, [])
            if c.sent_at <= event.occurred_at + CONFIRM_SKEW
        ]
        matching = [c for c in sent if c.action == action]
        if not matching:
            continue
        command = matching[-1]
        switched_since = any(
            c.action != action and command.sent_at < c.sent_at < event.occurred_at for c in sent
        )
        if command.confirmed_at is not None or switched_since:
            continue
        if RelayCommand.objects.filter(pk=command.pk, confirmed_at__isnull=True).update(
            confirmed_at=event.occurred_at
        ):
            command.confirmed_at = event.occurred_at
            confirmed.append(command.pk)
    newest_stored = dict(
        MeterEvent.objects.filter(meter_id__in=meter_ids, kind__in=list(CONFIRMS))
        .values("meter_id")
        .annotate(at=Max("occurred_at"))
        .values_list("meter_id", "at")
    )
    for event in relay_events:  # in time order: the last one per meter stands
        if event.occurred_at >= newest_stored.get(event.meter_id, event.occurred_at):
            _, relay = CONFIRMS[event.kind]
            Meter.objects.filter(pk=event.meter_id).exclude(relay=relay).update(relay=relay)
    reconnects = RelayCommand.objects.filter(
        pk__in=confirmed, action=RelayCommand.Action.RECONNECT
    ).select_related("account__utility", "meter")
    if confirmed:
        # Imported here: outages builds on billing and imports it at load (as
        # disconnect_wrongful_check does).
        from outages.standards import standards_evaluate_reconnection

        for command in reconnects:
            standards_evaluate_reconnection(command=command)
