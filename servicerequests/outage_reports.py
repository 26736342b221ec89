"""A consumer's "my power is off" from the app (issue 17).

Where the account's meter is in an outage already known (detected from the meters or entered by
staff), the report is attached to it and the consumer is told so, with the restoration estimate.
Where none is, the report opens a "no supply" service request (seed.SUPPLY_FAULT, a target in
hours) through the ordinary request path, or points to the one still open. Reporting again changes
nothing: the same outage, or the same open request, gives back the first report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import ConsumerAccount, User
from accounts.selectors import account_get_for_user
from core.errors import Conflict
from notifications.messages import (
    REPORT_FAULT,
    REPORT_FAULT_UNTIMED,
    REPORT_KNOWN_OUTAGE,
    REPORT_KNOWN_OUTAGE_OVERDUE,
    reply_render,
)
from servicerequests import selectors, services
from servicerequests.models import OutageReport, RequestType
from servicerequests.seed import SUPPLY_FAULT

logger = logging.getLogger(__name__)

KNOWN_OUTAGE = "known_outage"
FAULT_REPORTED = "fault_reported"


@dataclass(frozen=True)
class Filed:
    report: OutageReport
    created: bool  # False: an earlier report of the same outage or open request, given back


def outage_report_create(
    *, user: User, account_id: int, note: str = "", now: datetime | None = None
) -> Filed:
    """The user reports that the account's supply is off.

    1. The account must be linked to the user and open (as for any request).
    2. One of its meters is in an outage on now: the report is attached to it (once per outage).
    3. Otherwise the account's open "no supply" request, or a new one (its deadline in hours,
       the note as its description), and the report points to it (once per request).
    """
    now = now or timezone.now()
    account = account_get_for_user(user=user, account_id=account_id, acting=True)
    with transaction.atomic():
        # Two taps of the button at once would both find no report and open two requests: the
        # account's row, locked, puts one after the other (the second finds the first's report).
        account = ConsumerAccount.objects.select_for_update().get(pk=account.pk)
        meter_ids = selectors.account_meter_ids_now(account=account)
        affected = selectors.outage_on_now(meter_ids=meter_ids, now=now)
        if affected is not None:
            earlier = (
                OutageReport.objects.filter(account=account, outage_id=affected.outage_id)
                .order_by("created_at", "id")
                .first()
            )
            if earlier is not None:
                return Filed(earlier, created=False)
            report = OutageReport.objects.create(
                account=account,
                user=user,
                meter_id=affected.meter_id,
                outage_id=affected.outage_id,
                note=note,
                created_at=now,
            )
            logger.info("Outage report %s attached to outage %s", report.pk, affected.outage_id)
            return Filed(report, created=True)

        request = selectors.fault_request_open(account=account)
        if request is not None:
            earlier = (
                OutageReport.objects.filter(account=account, service_request=request)
                .order_by("created_at", "id")
                .first()
            )
            if earlier is not None:
                return Filed(earlier, created=False)
        else:
            if not RequestType.objects.filter(
                utility_id=account.utility_id, code=SUPPLY_FAULT, is_active=True
            ).exists():
                raise Conflict(
                    "This utility takes no-supply reports by its helpline only.",
                    code="fault_reports_unavailable",
                    extra={"helpline": account.utility.helpline},
                )
            request = services.request_create(
                user=user,
                account_id=account.pk,
                type_code=SUPPLY_FAULT,
                details={},
                description=note,
            )
        report = OutageReport.objects.create(
            account=account,
            user=user,
            meter_id=meter_ids[0] if meter_ids else None,
            service_request=request,
            note=note,
            created_at=now,
        )
        logger.info("Outage report %s opened or joined request %s", report.pk, request.pk)
        return Filed(report, created=True)


def report_status(report: OutageReport) -> str:
    return KNOWN_OUTAGE if report.outage_id else FAULT_REPORTED


def report_message(*, report: OutageReport, language: str, now: datetime | None = None) -> str:
    """What the consumer is told, in their language, with times in the utility's zone."""
    now = now or timezone.now()
    utility = report.account.utility
    context = {"consumer_id": report.account.consumer_id}
    if report.outage_id:
        outage = report.outage
        reply = REPORT_KNOWN_OUTAGE if outage.planned_end > now else REPORT_KNOWN_OUTAGE_OVERDUE
        context["end"] = outage.planned_end
    else:
        request = report.service_request
        reply = REPORT_FAULT if request.deadline_at else REPORT_FAULT_UNTIMED
        context |= {"request_id": request.pk, "end": request.deadline_at}
    return reply_render(reply=reply, language=language, context=context, utility=utility).body
