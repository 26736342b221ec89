"""Prepaid disconnection and reconnection, within each utility's friendly hours."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import ConsumerAccount, Utility
from billing import headend
from billing.models import Balance, BillingPolicy, RelayCommand
from meters.models import Meter

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
    return day in utility.holidays_in(day.year) or day in utility.no_disconnection_days_in(
        day.year
    )


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


def disconnect_evaluate(
    *, account: ConsumerAccount, now: datetime | None = None
) -> list[RelayCommand]:
    """Order a disconnection when a prepaid balance has used up its emergency credit.

    The command waits for the next allowed time; a top-up before then cancels it.
    """
    now = now or timezone.now()
    policy = policy_for(account.utility)
    balance = Balance.objects.filter(account=account).first()
    if balance is None or balance.amount > -policy.emergency_credit:
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
    """A payment lifted the balance above zero: cancel waiting disconnections and reconnect at once."""
    balance = Balance.objects.filter(account=account).first()
    if balance is None or balance.amount <= 0:
        return []
    RelayCommand.objects.filter(
        account=account, action=RelayCommand.Action.DISCONNECT, status=RelayCommand.Status.WAITING
    ).update(status=RelayCommand.Status.CANCELLED)
    commands = []
    for meter in _active_meters(account).exclude(relay=Meter.Relay.CLOSED):
        command = reconnect_request(
            meter=meter, reason="payment", payment_notified_at=payment_notified_at
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


RETRY_DELAYS = [60, 300, 900, 3600]


def relay_dispatch(*, command_id: str) -> RelayCommand | None:
    """Send one due command to the head-end.

    1. Claim it with a conditional UPDATE (waiting → sent): of two workers, one sends.
    2. Send; on success mark it done and set the meter's relay and status.
    3. A transient failure puts it back to waiting with a later not_before; a permanent one fails it.
    """
    now = timezone.now()
    claimed = RelayCommand.objects.filter(
        pk=command_id, status=RelayCommand.Status.WAITING, not_before__lte=now
    ).update(status=RelayCommand.Status.SENT, sent_at=now)
    if claimed != 1:
        return None
    command = RelayCommand.objects.select_related("meter").get(pk=command_id)
    try:
        headend.relay_send(
            command=command.action, meter_serial=command.meter.serial, reference=str(command.pk)
        )
    except headend.TransientHeadEndError as exc:
        delay = RETRY_DELAYS[min(command.attempts, len(RETRY_DELAYS) - 1)]
        RelayCommand.objects.filter(pk=command.pk).update(
            status=RelayCommand.Status.WAITING,
            attempts=command.attempts + 1,
            not_before=now + timedelta(seconds=delay),
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
        if command.action == RelayCommand.Action.DISCONNECT:
            Meter.objects.filter(pk=command.meter_id).update(
                relay=Meter.Relay.OPEN, status=Meter.Status.DISCONNECTED
            )
        else:
            Meter.objects.filter(pk=command.meter_id).update(
                relay=Meter.Relay.CLOSED, status=Meter.Status.ACTIVE
            )
    command.refresh_from_db()
    return command


def relay_due(*, now: datetime | None = None) -> list[str]:
    """Commands whose time has come, and reconnections that a busy meter deferred."""
    now = now or timezone.now()
    # A worker that died between claiming and confirming leaves a command "sent": send it again
    # (the head-end treats a repeated disconnect or reconnect as the same order).
    RelayCommand.objects.filter(
        status=RelayCommand.Status.SENT, sent_at__lt=now - timedelta(minutes=10)
    ).update(status=RelayCommand.Status.WAITING)
    for meter in (
        Meter.objects.filter(
            payment_mode=Meter.PaymentMode.PREPAID,
            relay=Meter.Relay.OPEN,
            account__balance__amount__gt=0,
        )
        .exclude(status=Meter.Status.REMOVED)
        .exclude(relay_commands__status__in=["waiting", "sent"])
    ):
        reconnect_request(meter=meter, reason="payment")
    return [
        str(pk)
        for pk in RelayCommand.objects.filter(
            status=RelayCommand.Status.WAITING, not_before__lte=now
        ).values_list("pk", flat=True)
    ]
