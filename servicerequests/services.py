"""Writes for service requests: create, comment, cancel, and the staff side (assign, reply, move,
issue an estimate), through one status machine. Paying estimates is in estimates.py, deadlines and
compensation in deadlines.py, attachments in attachments.py."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import AccountLink, User
from accounts.selectors import account_get_for_user
from core.errors import Conflict, DomainError, NotFound
from core.money import PLAIN_NUMBER, money_parse, utility_money
from core.timebuckets import EARLIEST_DATE, LATEST_DATE, date_in_range
from notifications import categories as c
from notifications.services import alert_create
from servicerequests import deadlines
from servicerequests.models import RequestEvent, RequestType, ServiceRequest

logger = logging.getLogger(__name__)
S = ServiceRequest.Status

# Staff moves. ESTIMATE_ISSUED is reached only by estimate_issue (it needs an amount), PAID only
# by the payment (estimates.estimate_payment_settle), CANCELLED only by the consumer.
TRANSITIONS: dict[str, set[str]] = {
    S.SUBMITTED: {S.UNDER_REVIEW, S.REJECTED},
    S.UNDER_REVIEW: {S.IN_PROGRESS, S.COMPLETED, S.REJECTED},
    S.ESTIMATE_ISSUED: {S.REJECTED},
    S.PAID: {S.IN_PROGRESS, S.COMPLETED},
    S.IN_PROGRESS: {S.COMPLETED},
}
# The consumer may cancel while nothing has been paid.
CANCELLABLE = {S.SUBMITTED, S.UNDER_REVIEW, S.ESTIMATE_ISSUED}
CLOSED = {S.COMPLETED, S.REJECTED, S.CANCELLED}

# What the consumer reads, in their language (the alert quotes it).
STATUS_LABELS: dict[str, dict[str, str]] = {
    S.SUBMITTED: {"en": "submitted", "ar": "مُقدَّم", "hi": "जमा किया गया"},
    S.UNDER_REVIEW: {"en": "under review", "ar": "قيد المراجعة", "hi": "जाँच में"},
    S.ESTIMATE_ISSUED: {
        "en": "cost estimate ready to pay",
        "ar": "صدر عرض التكلفة وهو جاهز للدفع",
        "hi": "लागत अनुमान तैयार है, भुगतान करें",
    },
    S.PAID: {"en": "estimate paid", "ar": "تم دفع عرض التكلفة", "hi": "अनुमान का भुगतान हो गया"},
    S.IN_PROGRESS: {"en": "in progress", "ar": "قيد التنفيذ", "hi": "काम चल रहा है"},
    S.COMPLETED: {"en": "completed", "ar": "مكتمل", "hi": "पूरा हुआ"},
    S.REJECTED: {"en": "rejected", "ar": "مرفوض", "hi": "अस्वीकृत"},
    S.CANCELLED: {"en": "cancelled", "ar": "مُلغى", "hi": "रद्द"},
}
TEXT_MAX = 2000


def status_label(status: str, language: str) -> str:
    labels = STATUS_LABELS.get(status, {})
    return labels.get(language) or labels.get("en") or status


# --- Field specs ------------------------------------------------------------------------------

# A number in a request's details has at most this many digits before or after the point (its
# `adjusted()` exponent): more is no meter reading, area or count, and int() of 1e999999999
# would build a billion digits.
NUMBER_MAX_DIGITS = 15


def _field_error(errors: dict, name: str, code: str, message: str) -> None:
    errors.setdefault(f"details.{name}", []).append({"code": code, "message": message})


def _value_check(spec: dict, value: Any) -> tuple[Any, tuple[str, str] | None]:
    """One value against its spec: the cleaned value, or an error (code, message)."""
    kind = spec.get("type", "text")
    if kind == "text":
        if not isinstance(value, str) or not value.strip():
            return None, ("invalid", "Give this as text.")
        limit = int(spec.get("max_length") or 500)
        if len(value) > limit:
            return None, ("too_long", f"At most {limit} characters.")
        return value.strip(), None
    if kind == "choice":
        choices = [str(x) for x in spec.get("choices", [])]
        if value not in choices:
            return None, ("invalid_choice", f"Choose one of: {', '.join(choices)}.")
        return value, None
    if kind in ("integer", "decimal"):
        # Plain notation only, as amounts are read (core.money): Decimal alone would take
        # "1_000" and "Infinity".
        text = str(value).strip() if isinstance(value, str | int | float | Decimal) else ""
        if isinstance(value, bool) or not PLAIN_NUMBER.fullmatch(text):
            return None, ("invalid_number", "Give a number.")
        try:
            number = Decimal(text)
        except (InvalidOperation, ValueError):
            return None, ("invalid_number", "Give a number.")
        # Bounded before any arithmetic: int() of 1e999999999 would build a billion digits.
        if abs(number.adjusted()) > NUMBER_MAX_DIGITS:
            return None, ("out_of_range", f"At most {NUMBER_MAX_DIGITS} digits.")
        if not number.is_finite() or (kind == "integer" and number != number.to_integral()):
            return None, (
                "invalid_number",
                "Give a whole number." if kind == "integer" else "Give a number.",
            )
        low, high = spec.get("min"), spec.get("max")
        if low is not None and number < Decimal(str(low)):
            return None, ("out_of_range", f"At least {low}.")
        if high is not None and number > Decimal(str(high)):
            return None, ("out_of_range", f"At most {high}.")
        return (int(number) if kind == "integer" else str(number)), None
    if kind == "date":
        try:
            day = dt.date.fromisoformat(str(value))
        except ValueError:
            return None, ("invalid_date", "Give a date as YYYY-MM-DD.")
        if not date_in_range(day):
            return None, ("out_of_range", f"Give a date from {EARLIEST_DATE} to {LATEST_DATE}.")
        return day.isoformat(), None
    if kind == "boolean":
        if not isinstance(value, bool):
            return None, ("invalid", "Give true or false.")
        return value, None
    raise ValueError(f"unknown field type {kind!r} in a request type")


def details_validate(*, request_type: RequestType, details: object) -> dict[str, Any]:
    """The consumer's answers checked against the type's field specs: every required field present,
    each value of its type, nothing the form does not ask. All problems are reported at once."""
    if not isinstance(details, dict):
        raise DomainError.for_field("details", "Give the details as an object.", code="invalid")
    errors: dict[str, list[dict[str, str]]] = {}
    specs = {spec["name"]: spec for spec in request_type.fields}
    cleaned: dict[str, Any] = {}
    for name in details:
        if name not in specs:
            _field_error(errors, name, "unknown_field", "This request type has no such field.")
    for name, spec in specs.items():
        value = details.get(name)
        if value is None or value == "":
            if spec.get("required"):
                _field_error(errors, name, "required", "This field is required.")
            continue
        value, error = _value_check(spec, value)
        if error:
            _field_error(errors, name, *error)
        else:
            cleaned[name] = value
    if errors:
        raise DomainError(
            "Some details are missing or invalid; see fields.", code="invalid", fields=errors
        )
    return cleaned


def _text(value: object, field: str, *, required: bool) -> str:
    text = (value or "").strip() if isinstance(value, str | type(None)) else None
    if text is None:
        raise DomainError.for_field(field, "Give this as text.", code="invalid")
    if required and not text:
        raise DomainError.for_field(field, "Write something.", code="required")
    if len(text) > TEXT_MAX:
        raise DomainError.for_field(field, f"At most {TEXT_MAX} characters.", code="too_long")
    return text


# --- Timeline and notifications ----------------------------------------------------------------


def _event(request: ServiceRequest, kind: str, *, actor=None, **values) -> RequestEvent:
    return RequestEvent.objects.create(
        request=request,
        kind=kind,
        actor=actor if getattr(actor, "pk", None) else None,
        by_staff=bool(getattr(actor, "is_staff", False)),
        **values,
    )


def _notify_status(request: ServiceRequest, event: RequestEvent) -> None:
    """Tell every user linked to the request's account, in their language, once per event."""
    links = AccountLink.objects.filter(
        account=request.account, unlinked_at=None, role="holder"
    ).select_related("user")
    for link in links:
        language = link.user.language
        alert_create(
            user=link.user,
            category=c.SERVICE_REQUEST_UPDATE,
            dedupe_key=f"service-request-event:{event.pk}",
            context={
                "request_id": request.pk,
                "request_type": request.type.name_in(language),
                "status": status_label(request.status, language),
                "consumer_id": request.account.consumer_id,
                "account_id": request.account_id,
            },
            utility=request.utility,
        )


def transition_apply(
    request: ServiceRequest, to_status: str, *, actor=None, text: str = "", at=None
) -> RequestEvent:
    """Move a locked request (no checks: callers check), write the timeline and notify.

    Completing a request also settles its deadline: a regulated one finished late records its
    compensation (deadlines.compensation_on_completion)."""
    at = at or timezone.now()
    before = request.status
    request.status = to_status
    fields = ["status", "updated_at"]
    if to_status == S.COMPLETED:
        request.completed_at = at
        fields.append("completed_at")
    if to_status in CLOSED:
        request.closed_at = at
        fields.append("closed_at")
    request.save(update_fields=fields)
    event = _event(
        request,
        RequestEvent.Kind.STATUS,
        actor=actor,
        at=at,
        from_status=before,
        to_status=to_status,
        text=text,
    )
    if to_status == S.COMPLETED:
        deadlines.compensation_on_completion(request=request)
    _notify_status(request, event)
    return event


def _locked(request_id: int) -> ServiceRequest:
    request = (
        ServiceRequest.objects.select_for_update(of=("self",))
        .select_related("type", "account__utility", "utility")
        .filter(pk=request_id)
        .first()
    )
    if request is None:
        raise NotFound("There is no such service request.", code="request_not_found")
    return request


# --- The consumer -------------------------------------------------------------------------------


def request_create(
    *, user: User, account_id: int, type_code: str, details: object, description: object = ""
) -> ServiceRequest:
    """A consumer opens a request on one of their accounts.

    1. The account must be linked to the user; the type must be an active one of its utility.
    2. The details are checked against the type's field specs (all errors at once).
    3. The request, its first timeline entry, and (for types without an estimate) its clock.
    """
    account = account_get_for_user(user=user, account_id=account_id, acting=True)
    request_type = RequestType.objects.filter(
        utility=account.utility, code=type_code, is_active=True
    ).first()
    if request_type is None:
        raise DomainError.for_field(
            "type", "This utility offers no such request type.", code="unknown_request_type"
        )
    cleaned = details_validate(request_type=request_type, details=details)
    description = _text(description, "description", required=False)
    if account.status == account.Status.CLOSED:
        raise Conflict("This consumer account is closed.", code="account_closed")
    with transaction.atomic():
        request = ServiceRequest.objects.create(
            utility=account.utility,
            account=account,
            type=request_type,
            details=cleaned,
            description=description,
            created_by=user,
        )
        _event(request, RequestEvent.Kind.CREATED, actor=user, to_status=S.SUBMITTED)
        if not request_type.takes_estimate:
            deadlines.clock_start(request=request, at=request.created_at)
    return request


def request_comment_add(*, user: User, request: ServiceRequest, text: object) -> RequestEvent:
    text = _text(text, "text", required=True)
    with transaction.atomic():
        request = _locked(request.pk)
        if request.status in CLOSED:
            raise Conflict(
                f"This request is {request.get_status_display().lower()}; "
                "start a new one if you need more.",
                code="request_closed",
            )
        return _event(request, RequestEvent.Kind.COMMENT, actor=user, text=text)


def request_cancel(*, user: User, request: ServiceRequest, reason: object = "") -> ServiceRequest:
    reason = _text(reason, "reason", required=False)
    with transaction.atomic():
        request = _locked(request.pk)
        if request.status not in CANCELLABLE:
            raise Conflict(
                f"A request that is {request.get_status_display().lower()} can no longer be "
                "cancelled.",
                code="illegal_transition",
                extra={"status": request.status},
            )
        transition_apply(request, S.CANCELLED, actor=user, text=reason)
    return request


# --- Staff --------------------------------------------------------------------------------------


def request_transition(
    *, request_id: int, to_status: str, actor: User, text: str = ""
) -> ServiceRequest:
    """Staff move a request along the status machine, optionally with a reply the consumer reads."""
    text = _text(text, "text", required=False)
    if to_status not in S.values:
        raise DomainError.for_field("status", "No such status.", code="unknown_status")
    with transaction.atomic():
        request = _locked(request_id)
        allowed = TRANSITIONS.get(request.status, set())
        if to_status not in allowed:
            hint = {
                S.ESTIMATE_ISSUED: " Issue an estimate with its amount instead.",
                S.PAID: " A request becomes paid when the consumer's payment arrives.",
                S.CANCELLED: " Only the consumer cancels; reject it instead.",
            }.get(to_status, "")
            raise Conflict(
                f"A request that is {request.get_status_display().lower()} cannot become "
                f"{S(to_status).label.lower()}.{hint}",
                code="illegal_transition",
                extra={"status": request.status, "allowed": sorted(allowed)},
            )
        if (
            request.status == S.UNDER_REVIEW
            and to_status in (S.IN_PROGRESS, S.COMPLETED)
            and request.type.takes_estimate
        ):
            raise Conflict(
                "This request type needs a paid cost estimate before work starts.",
                code="estimate_required",
            )
        transition_apply(request, to_status, actor=actor, text=text)
    return request


def request_reply(*, request_id: int, actor: User, text: str) -> RequestEvent:
    text = _text(text, "text", required=True)
    with transaction.atomic():
        request = _locked(request_id)
        return _event(request, RequestEvent.Kind.REPLY, actor=actor, text=text)


def request_assign(*, request_id: int, assignee: User | None, actor: User) -> ServiceRequest:
    from core.admin import staff_utility_ids

    with transaction.atomic():
        request = _locked(request_id)
        if assignee is not None:
            allowed = staff_utility_ids(assignee)
            if not assignee.is_staff or (allowed is not None and request.utility_id not in allowed):
                raise DomainError.for_field(
                    "assignee",
                    "Assign the request to a staff member of its utility.",
                    code="not_staff_of_utility",
                )
        request.assigned_to = assignee
        request.save(update_fields=["assigned_to", "updated_at"])
        _event(
            request,
            RequestEvent.Kind.ASSIGNED,
            actor=actor,
            text=str(assignee) if assignee else "unassigned",
            visible_to_consumer=False,
        )
    return request


def estimate_issue(*, request_id: int, amount: object, note: str, actor: User) -> ServiceRequest:
    """Staff price the work; the consumer pays it in the app (estimates.estimate_pay_start)."""
    note = _text(note, "note", required=False)
    with transaction.atomic():
        request = _locked(request_id)
        if not request.type.takes_estimate:
            raise Conflict("This request type takes no cost estimate.", code="no_estimate")
        if request.status != S.UNDER_REVIEW:
            raise Conflict(
                "An estimate is issued once a request is under review, and only once.",
                code="illegal_transition",
                extra={"status": request.status},
            )
        utility = request.utility
        request.estimate_amount = money_parse(
            amount, minor_unit=utility.currency_minor_unit, field="amount"
        )
        request.estimate_note = note
        request.estimate_issued_at = timezone.now()
        request.save(update_fields=["estimate_amount", "estimate_note", "estimate_issued_at"])
        _event(
            request,
            RequestEvent.Kind.ESTIMATE,
            actor=actor,
            text=f"{utility_money(request.estimate_amount, utility)}. {note}".strip(),
        )
        transition_apply(request, S.ESTIMATE_ISSUED, actor=actor)
    return request
