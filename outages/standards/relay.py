"""Reconnection after payment measured to the meter's relay confirmation, and wrongful
disconnections."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Q, QuerySet

from accounts.models import ConsumerAccount
from billing.models import RelayCommand
from billing.relay import GROUND_TEXTS, disconnect_check, reconnect_payment_time
from billing.services import reconnect_request
from core.errors import Conflict, DomainError
from core.money import utility_money
from core.timebuckets import moment_text
from outages.models import (
    Compensation,
    Standard,
    StandardsPolicy,
)
from outages.standards.common import (
    _differs,
    _duration_text,
    amount_beyond,
    compensation_correct,
    compensation_record,
    policy_for,
)

logger = logging.getLogger(__name__)


def standards_evaluate_reconnection(*, command: RelayCommand) -> Compensation | None:
    """A reconnect after payment that took longer than `reconnection_hours` from the payment being
    notified to the supply being back (DOMAIN.md §3: 100, plus 100 per further hour or part).
    Returns the compensation when one is owed.

    1. Measured from the payment however many commands it took: the payment time the command
       carries, or for a payment reconnect without one (made before reconnects found it) the
       payment that called for it (billing.relay.reconnect_payment_time).
    2. To the meter's own relay-closed confirmation (confirmed_at, issue 17) when it has sent
       one; until then to the head-end's acceptance (completed_at).
    3. Once per command: a confirmation that moves the measure after a compensation was
       recorded corrects it (compensation_correct: the difference only, to zero when it was in
       time after all); one that makes an on-time reconnection late records it then.
    """
    if command.action != RelayCommand.Action.RECONNECT:
        return None
    if command.confirmed_at is not None:
        if command.status not in (RelayCommand.Status.SENT, RelayCommand.Status.DONE):
            return None
        reconnected_at = command.confirmed_at
    elif command.status == RelayCommand.Status.DONE and command.completed_at is not None:
        reconnected_at = command.completed_at
    else:
        return None
    paid_at = command.payment_notified_at
    if paid_at is None and command.reason == "payment":
        paid_at = reconnect_payment_time(meter=command.meter, before=command.created_at)
    if paid_at is None:
        return None
    policy = policy_for(command.account.utility)
    if policy is None:
        return None
    utility = policy.utility
    zone = utility.zone
    elapsed = reconnected_at - paid_at
    threshold = timedelta(hours=policy.reconnection_hours)
    late = amount_beyond(
        elapsed=elapsed,
        threshold=threshold,
        base=policy.reconnection_amount,
        per_hour=policy.reconnection_amount_per_hour,
    )
    row = Compensation.objects.filter(
        account=command.account, standard=Standard.RECONNECTION, event_key=f"relay:{command.pk}"
    ).first()
    if late is None and row is None:
        return None
    confirmed = command.confirmed_at is not None
    back = (
        f"the meter confirmed its relay closed at {moment_text(reconnected_at, zone)}"
        if confirmed
        else f"the head-end accepted the order at {moment_text(reconnected_at, zone)}"
    )
    amount, hours = late or (Decimal(0), 0)
    if late is None:
        reason = (
            f"Not owed: reconnected {_duration_text(elapsed)} after the payment was notified "
            f"({back}), within the {policy.reconnection_hours} h standard."
        )
    else:
        reason = (
            f"Reconnected {_duration_text(elapsed)} after the payment was notified ({back}); the "
            f"standard is {policy.reconnection_hours} h: "
            f"{utility_money(policy.reconnection_amount, utility)} + {hours} started hour(s) × "
            f"{utility_money(policy.reconnection_amount_per_hour, utility)}."
        )
    details = {
        "elapsed_minutes": int(elapsed.total_seconds() // 60),
        "hours": hours,
        "payment_notified_at": paid_at.astimezone(zone).isoformat(),
        "reconnected_at": reconnected_at.astimezone(zone).isoformat(),
        "measured_to": "relay_confirmed" if confirmed else "headend_accepted",
    }
    if row is None:
        row, _ = compensation_record(
            policy=policy,
            account=command.account,
            standard=Standard.RECONNECTION,
            event_key=f"relay:{command.pk}",
            amount=amount,
            failure_at=paid_at + threshold,
            reason=reason,
            details=details,
            relay_command=command,
        )
    elif _differs(
        row, amount=amount, reason=reason, details=details, minor_unit=utility.currency_minor_unit
    ):
        row = compensation_correct(
            compensation_id=row.pk,
            amount=amount,
            reason=reason,
            details=details,
            correction="confirmed" if confirmed else "measured",
            take_back_at_once=True,
        )
    return row if row is not None and row.amount > 0 else None


def reconnections_recent(*, now: datetime, days: int = 35) -> QuerySet[RelayCommand]:
    """Reconnects after payment carried out (accepted by the head-end, or confirmed by the meter)
    in the last `days` days: read through the partial indexes of reconnect commands by time
    (relay_reconnect_completed, relay_reconnect_confirmed), not every command ever ordered."""
    since = now - timedelta(days=days)
    return (
        RelayCommand.objects.filter(action=RelayCommand.Action.RECONNECT)
        .filter(
            Q(status=RelayCommand.Status.DONE, completed_at__gte=since)
            | Q(
                status__in=[RelayCommand.Status.SENT, RelayCommand.Status.DONE],
                confirmed_at__gte=since,
            )
        )
        .filter(Q(payment_notified_at__isnull=False) | Q(reason="payment"))
        .select_related("account__utility", "meter")
    )


def reconnections_evaluate(*, now: datetime, days: int = 35) -> int:
    """Evaluate every recent reconnect after payment (reconnections_recent); returns how many owe."""
    commands = reconnections_recent(now=now, days=days)
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
