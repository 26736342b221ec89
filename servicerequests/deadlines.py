"""Deadlines of service requests in working days of the utility's country (or, for urgent types
such as no supply, in plain hours), and the compensation a missed connection deadline owes under
the guaranteed standards (DOMAIN.md §3).

Counting (core.workdays): the day the clock starts is day zero; the deadline is the local midnight
that ends the Nth working day after it. Weekends are Utility.weekend_days, public holidays come
from the `holidays` package for Utility.country. A type with `target_hours` runs around the clock:
its deadline is that many hours after the clock starts, nights, weekends and holidays included.

When compensation is recorded (docs/service-requests.md):
1. The deadline check (a beat task) finds an open regulated request late by at least one working
   day and records its compensation at once, with the failure at the deadline: the exemption
   window (10 working days) and the month to pay run from the real failure.
2. At completion the amount is settled on the working days actually late: the pending row is
   raised to the final amount; if it was already credited, the rest is a second compensation
   (`request:<id>:further`); if an exemption cancelled it, nothing more is owed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from core.money import money_quantize, utility_money
from core.workdays import utility_working_days_between, utility_working_deadline
from outages.models import Compensation, StandardsPolicy
from outages.standards import compensation_record
from servicerequests.models import ConnectionPolicy, ServiceRequest, Standard

logger = logging.getLogger(__name__)


def deadline_days(*, request: ServiceRequest) -> int | None:
    """Working days the request has: its standard's (a connection by voltage) or the type's target."""
    if request.type.standard == Standard.CONNECTION:
        policy = ConnectionPolicy.objects.filter(utility_id=request.utility_id).first()
        if policy is not None:
            return policy.days_for(str(request.details.get("voltage", "")))
    return request.type.target_working_days


def clock_start(*, request: ServiceRequest, at: datetime) -> None:
    """Start the request's clock at `at` (submission, or payment of its estimate): `target_hours`
    after it for an urgent type, else the end of its last working day."""
    hours = request.type.target_hours
    days = None if hours else deadline_days(request=request)
    request.clock_started_at = at
    request.deadline_working_days = days
    if hours:
        request.deadline_at = at + timedelta(hours=hours)
    elif days is not None:
        request.deadline_at = utility_working_deadline(
            utility=request.utility, moment=at, days=days
        )
    else:
        request.deadline_at = None
    request.save(update_fields=["clock_started_at", "deadline_working_days", "deadline_at"])


def late_working_days(*, request: ServiceRequest, at: datetime) -> int:
    """Working days, after the deadline, that had begun by `at`: any part of a working day counts
    as a whole one ("per further working day or part"); weekends and public holidays never count.
    Finished at 09:00 on the third working day after the deadline is 3; finished on the weekend
    right after the deadline is 0 (the standard was met)."""
    if request.deadline_at is None or at <= request.deadline_at:
        return 0
    utility = request.utility
    zone = utility.zone
    last_day = request.deadline_at.astimezone(zone).date() - timedelta(days=1)
    return utility_working_days_between(
        utility=utility, start=last_day, end=at.astimezone(zone).date()
    )


def connection_amount(*, policy: ConnectionPolicy, late_days: int) -> Decimal | None:
    """DOMAIN.md §3, connection requests: "400, plus 20 per further working day or part".

    Read as the outage standards read their hours (outages.standards.amount_beyond): a request
    finished within its working days owes nothing; past them, `amount` (400) is owed plus
    `amount_per_day` (20) for every working day or part of one beyond the deadline, the first one
    included. Three working days late: 400 + 3 × 20 = 460. None when the standard was met."""
    if late_days < 1:
        return None
    return policy.amount + policy.amount_per_day * late_days


def _policies(request: ServiceRequest) -> tuple[ConnectionPolicy, StandardsPolicy] | None:
    """Both policies, or None: only a regulated connection of a utility with guaranteed standards
    owes compensation."""
    if request.type.standard != Standard.CONNECTION or request.deadline_at is None:
        return None
    connection = ConnectionPolicy.objects.filter(utility_id=request.utility_id).first()
    standards = StandardsPolicy.objects.filter(utility_id=request.utility_id).first()
    if connection is None or standards is None:
        return None
    return connection, standards


def _reason(request: ServiceRequest, policy: ConnectionPolicy, late_days: int, done: bool) -> str:
    utility = request.utility
    deadline = request.deadline_at.astimezone(utility.zone) - timedelta(days=1)
    state = "completed" if done else "still open"
    return (
        f"Service request #{request.pk} ({request.type.name_en}) {state} {late_days} working "
        f"day(s) after its deadline of {request.deadline_working_days} working days "
        f"(end of {deadline:%Y-%m-%d}): {utility_money(policy.amount, utility)} + {late_days} × "
        f"{utility_money(policy.amount_per_day, utility)}."
    )


def _record(request, connection, standards, *, late_days: int, amount: Decimal, done: bool, key):
    return compensation_record(
        policy=standards,
        account=request.account,
        standard=Standard.CONNECTION,
        event_key=key,
        amount=amount,
        failure_at=request.deadline_at,
        reason=_reason(request, connection, late_days, done),
        details={
            "service_request": request.pk,
            "late_working_days": late_days,
            "deadline_working_days": request.deadline_working_days,
            "final": done,
        },
    )


def request_deadline_missed(*, request_id: int, now: datetime | None = None) -> bool:
    """Mark an open request whose deadline has passed by at least one working day (any time past
    it, for a type counted in hours), and record its compensation (as of now) if it is a regulated
    connection. Returns whether it was marked."""
    now = now or timezone.now()
    with transaction.atomic():
        request = (
            ServiceRequest.objects.select_for_update(of=("self",))
            .select_related("type", "utility", "account__utility")
            .filter(pk=request_id, deadline_missed_at__isnull=True)
            .first()
        )
        if request is None or not request.is_open:
            return False
        if request.type.target_hours:
            # Hours run around the clock: late is past the deadline, whatever the day.
            if request.deadline_at is None or now <= request.deadline_at:
                return False
        elif late_working_days(request=request, at=now) < 1:
            return False
        request.deadline_missed_at = now
        request.save(update_fields=["deadline_missed_at"])
        policies = _policies(request)
        if policies is not None:
            connection, standards = policies
            late = late_working_days(request=request, at=now)
            amount = connection_amount(policy=connection, late_days=late)
            _record(
                request,
                connection,
                standards,
                late_days=late,
                amount=amount,
                done=False,
                key=f"request:{request.pk}",
            )
    return True


def deadlines_check(*, now: datetime | None = None) -> int:
    """Beat: every open request past its deadline and not yet marked. Returns how many were."""
    now = now or timezone.now()
    ids = ServiceRequest.objects.filter(
        status__in=ServiceRequest.OPEN, deadline_at__lte=now, deadline_missed_at__isnull=True
    ).values_list("pk", flat=True)
    return sum(1 for pk in list(ids) if request_deadline_missed(request_id=pk, now=now))


def compensation_on_completion(*, request: ServiceRequest) -> Compensation | None:
    """Settle the compensation of a (locked) request just completed: see the module's docstring."""
    policies = _policies(request)
    if policies is None:
        return None
    connection, standards = policies
    late = late_working_days(request=request, at=request.completed_at)
    total = connection_amount(policy=connection, late_days=late)
    if total is None:
        return None
    minor = request.utility.currency_minor_unit
    key = f"request:{request.pk}"
    existing = (
        Compensation.objects.select_for_update()
        .filter(account=request.account, standard=Standard.CONNECTION, event_key=key)
        .first()
    )
    if existing is None:
        compensation, _ = _record(
            request, connection, standards, late_days=late, amount=total, done=True, key=key
        )
        return compensation
    if existing.status == Compensation.Status.PENDING:
        # Locked: the pay task credits under the same lock, so it pays either amount, never half.
        existing.amount = money_quantize(total, minor_unit=minor)
        existing.reason = _reason(request, connection, late, True)[:300]
        existing.details = {**existing.details, "late_working_days": late, "final": True}
        existing.save(update_fields=["amount", "reason", "details"])
        return existing
    if existing.status == Compensation.Status.CREDITED and total > existing.amount:
        further, _ = _record(
            request,
            connection,
            standards,
            late_days=late,
            amount=total - existing.amount,
            done=True,
            key=f"{key}:further",
        )
        return further
    return existing  # cancelled by an approved exemption, or already paid in full
