"""Reads for service requests. Every consumer read is scoped to the accounts the user has a live
link to: another consumer's request, or staff through the consumer API, is simply not found."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import ConsumerAccount, User
from accounts.selectors import visible_to
from core.errors import Conflict, NotFound
from servicerequests.models import (
    Attachment,
    OpeningHours,
    RequestEvent,
    RequestType,
    ServiceRequest,
)


def request_types_for_account(*, account: ConsumerAccount) -> QuerySet[RequestType]:
    return RequestType.objects.filter(utility_id=account.utility_id, is_active=True)


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
