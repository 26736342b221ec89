"""Paying what is owed once its exemption window has closed."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import AccountLink
from billing.ledger import ledger_post
from billing.models import LedgerEntry
from core.timebuckets import moment_text
from notifications import categories as c
from notifications.services import alert_create
from outages.models import (
    Compensation,
    ExemptionRequest,
    Standard,
)
from outages.standards.common import (
    PAY_MARGIN,
    REASONS,
    _corrections_settle,
    policy_for,
)

logger = logging.getLogger(__name__)


def compensations_payable(*, now: datetime) -> list[int]:
    """Pending compensations to credit now: the exemption window has closed and no exemption is
    pending for their event, or the month is about to run out (then a pending request is not
    waited for)."""
    pending_events = set(
        ExemptionRequest.objects.filter(status=ExemptionRequest.Status.PENDING).values_list(
            "standard", "event_key"
        )
    )
    # A pending row corrected to zero (the evidence says nothing is owed) is not paid; it stays
    # pending, so a later correction back up is paid in full once.
    rows = Compensation.objects.filter(
        status=Compensation.Status.PENDING, exemption_deadline__lte=now, amount__gt=0
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
            amount__gt=0,
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
            .filter(pk=compensation_id, status=Compensation.Status.PENDING, amount__gt=0)
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
    if compensation.standard == Standard.RESTORATION and details.get("off_at"):
        when = datetime.fromisoformat(details["off_at"])  # the consumer's own, from the evidence
    links = AccountLink.objects.filter(
        account=compensation.account, unlinked_at=None, receives_alerts=True
    ).select_related("user")
    for link in links:
        language = link.user.language if link.user.language in ("ar", "en", "hi") else "en"
        reason = REASONS[compensation.standard][language].format(
            when=moment_text(when, utility.zone),
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
