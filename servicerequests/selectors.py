"""Reads for service requests. Every consumer read is scoped to the accounts the user has a live
link to: another consumer's request, or staff through the consumer API, is simply not found."""

from __future__ import annotations

from datetime import datetime

from django.db.models import F, Q, QuerySet
from django.utils import timezone

from accounts.models import ConsumerAccount, User
from accounts.selectors import visible_to
from core.errors import Conflict, NotFound
from meters.models import MeterAssignment
from outages.models import AffectedMeter, Outage
from servicerequests.models import (
    Attachment,
    OpeningHours,
    OutageReport,
    RequestEvent,
    RequestType,
    ServiceRequest,
)
from servicerequests.seed import REPORT_ONLY_TYPES, SUPPLY_FAULT


def request_types_for_account(*, account: ConsumerAccount) -> QuerySet[RequestType]:
    """What the request form offers: "no supply" has its own button (the outage report), which
    looks for a known outage before it opens a request."""
    return RequestType.objects.filter(utility_id=account.utility_id, is_active=True).exclude(
        code__in=REPORT_ONLY_TYPES
    )


def requests_for_user(
    *,
    user: User,
    account_id: int | None = None,
    status: str | None = None,
    acting: bool = False,
) -> QuerySet[ServiceRequest]:
    """The user's requests; with `acting` (comment, cancel, attach, pay) only those of accounts
    the user holds now: a closed account's former holder reads its requests, nothing more."""
    requests = (
        ServiceRequest.objects.filter(visible_to(user, acting=acting))
        .distinct()
        .select_related("type", "utility", "account", "estimate_topup")
    )
    if account_id is not None:
        requests = requests.filter(account_id=account_id)
    if status:
        requests = requests.filter(status=status)
    return requests.order_by("-created_at", "-id")


def request_get_for_user(*, user: User, request_id: int, acting: bool = False) -> ServiceRequest:
    request = requests_for_user(user=user, acting=acting).filter(pk=request_id).first()
    if request is None:
        if acting and requests_for_user(user=user).filter(pk=request_id).exists():
            raise Conflict(
                "This request's account is closed; it can be read but nothing more.",
                code="account_closed",
            )
        raise NotFound("You have no such service request.", code="request_not_found")
    return request


def request_timeline(*, request: ServiceRequest) -> QuerySet[RequestEvent]:
    return request.events.filter(visible_to_consumer=True).order_by("at", "id")


def attachment_get_for_user(*, user: User, request_id: int, attachment_id: int) -> Attachment:
    request = request_get_for_user(user=user, request_id=request_id)
    attachment = request.attachments.filter(pk=attachment_id).first()
    if attachment is None:
        raise NotFound("This request has no such attachment.", code="attachment_not_found")
    return attachment


def helpline_for_account(*, account: ConsumerAccount, now: datetime | None = None) -> dict:
    """The utility's helpline and service-centre hours, and whether it is open now (local time;
    closed on the utility's days off: its calendar, holidays staff added included)."""
    utility = account.utility
    local = (now or timezone.now()).astimezone(utility.zone)
    hours = list(OpeningHours.objects.filter(utility=utility))
    holiday = local.date() in utility.holidays_in(local.year)
    open_now = not holiday and any(
        row.weekday == local.weekday() and row.opens <= local.time() < row.closes for row in hours
    )
    return {
        "utility": utility.code,
        "name": utility.name,
        "helpline": utility.helpline,
        "timezone": utility.timezone,
        "open_now": open_now,
        "public_holiday_today": holiday,
        "opening_hours": [
            {
                "weekday": row.weekday,
                "opens": row.opens.strftime("%H:%M"),
                "closes": row.closes.strftime("%H:%M"),
            }
            for row in hours
        ],
    }


# --- Outage reports -----------------------------------------------------------------------------


def account_meter_ids_now(*, account: ConsumerAccount) -> list[int]:
    """The meters the account holds now: its open tenancies."""
    return list(
        MeterAssignment.objects.filter(account=account, end__isnull=True)
        .order_by("start", "meter_id")
        .values_list("meter_id", flat=True)
    )


def outage_on_now(*, meter_ids: list[int], now: datetime) -> AffectedMeter | None:
    """The outage one of these meters is in now, with its row for that meter: one in progress, or
    a published planned one whose time has come (and not yet gone: a planned cut left published
    long after its end is not what cuts the supply today). Merged ones are left out (the outage
    they were merged into stands for them); cancelled and restored ones are over. The latest
    begun first, when several are."""
    if not meter_ids:
        return None
    on_now = Q(outage__status=Outage.Status.IN_PROGRESS) | Q(
        outage__status=Outage.Status.PUBLISHED,
        outage__kind=Outage.Kind.PLANNED,
        outage__planned_start__lte=now,
        outage__planned_end__gt=now,
    )
    return (
        AffectedMeter.objects.filter(on_now, meter_id__in=meter_ids, outage__merged_into=None)
        .select_related("outage__utility")
        .order_by(F("outage__actual_start").desc(nulls_last=True), "-outage__planned_start", "-id")
        .first()
    )


def fault_request_open(*, account: ConsumerAccount) -> ServiceRequest | None:
    """The account's "no supply" request still open, the oldest if staff opened more."""
    return (
        ServiceRequest.objects.filter(
            account=account, type__code=SUPPLY_FAULT, status__in=ServiceRequest.OPEN
        )
        .order_by("created_at", "id")
        .first()
    )


def outage_reports_for_account(*, account: ConsumerAccount) -> QuerySet[OutageReport]:
    """The account's reports the reader may see (from their own link's start), newest first.
    `account` comes from account_get_for_user, annotated with the reader's `visible_from`."""
    reports = OutageReport.objects.filter(account=account)
    visible_from = getattr(account, "visible_from", None)
    if visible_from is not None:
        reports = reports.filter(created_at__gte=visible_from)
    return reports.select_related(
        "account__utility", "outage__utility", "service_request__utility"
    ).order_by("-created_at", "-id")
