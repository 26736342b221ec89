"""Force-majeure exemptions: filed by staff within the window, decided by an approver."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from core.errors import Conflict, DomainError
from outages.models import (
    Compensation,
    ExemptionRequest,
)


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
