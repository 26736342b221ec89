"""One error format for every 4xx: {"error": {"code", "message", "fields"}}.

Services raise DomainError (or a subclass); DRF's own exceptions and Django's are translated here, so a
client always gets a machine-readable code and a human-readable message. A database that cannot
serve the request (a primary failing over) is a 503 in the same format, for the client to retry.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class DomainError(Exception):
    """A refusal a client can act on. Subclasses fix the HTTP status."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: dict[str, list[dict[str, str]]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = fields or {}
        self.extra = extra or {}

    @classmethod
    def for_field(cls, field: str, message: str, *, code: str) -> DomainError:
        return cls(message, code=code, fields={field: [{"code": code, "message": message}]})


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class PermissionDenied(DomainError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "permission_denied"


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class Gone(DomainError):
    status_code = status.HTTP_410_GONE
    code = "gone"


class RateLimited(DomainError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code, extra={"retry_after": retry_after})
        self.retry_after = retry_after


def error_body(
    code: str, message: str, fields: dict | None = None, **extra: Any
) -> dict[str, dict[str, Any]]:
    return {"error": {"code": code, "message": message, "fields": fields or {}, **extra}}


def _field_errors(detail: Any) -> dict[str, list[dict[str, str]]]:
    """Flatten DRF's nested ErrorDetail structure into {field: [{code, message}]}, dotted paths."""
    out: dict[str, list[dict[str, str]]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        elif (
            isinstance(value, list)
            and value
            and not all(isinstance(v, exceptions.ErrorDetail) for v in value)
        ):
            for index, sub in enumerate(value):
                if sub:
                    walk(f"{prefix}.{index}" if prefix else str(index), sub)
        else:
            items = value if isinstance(value, list) else [value]
            out.setdefault(prefix or "non_field_errors", []).extend(
                {"code": getattr(item, "code", "invalid"), "message": str(item)} for item in items
            )

    walk("", detail)
    return out


# SQLSTATEs of a database that is going away or could not take the transaction now, where the
# same request may well succeed in a moment: connection exceptions (class 08), the server shutting
# down or starting (57P01–57P03), too many connections, and a serialization failure or deadlock.
RETRYABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300", "40001", "40P01"})


def database_unavailable(exc: OperationalError | InterfaceError) -> bool:
    """Whether a database error means "retry shortly" (a 503) rather than a fault of ours (a 500,
    with its traceback): a statement timeout, a full disk or a missing table is not cured by
    retrying, and must reach the error log, not a client's retry loop."""
    if isinstance(exc, InterfaceError):
        return True  # the connection is unusable (closed under us)
    cause = exc.__cause__
    if isinstance(cause, sqlite3.OperationalError):
        return "locked" in str(cause) or "busy" in str(cause)
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate is None:
        return True  # the client's own: no connection could be made, or it broke mid-query
    return sqlstate.startswith("08") or sqlstate in RETRYABLE_SQLSTATES


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    headers: dict[str, str] = {}
    if isinstance(exc, DomainError):
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after)
        body = error_body(exc.code, exc.message, exc.fields, **exc.extra)
        return Response(body, status=exc.status_code, headers=headers)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body(
                "payload_too_large", "The request body is larger than this endpoint accepts."
            ),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, SuspiciousOperation):
        return Response(error_body("bad_request", "The request was malformed."), status=400)
    if isinstance(exc, OperationalError | InterfaceError) and database_unavailable(exc):
        # The connection broke or could not be made (a primary killed, a standby not yet
        # promoted), or the database gave up on the transaction (a deadlock). Nothing was
        # acknowledged: a retry is safe, and one with the same Idempotency-Key, partner reference
        # or event id is done once whatever the first attempt left (docs/failover.md).
        logger.warning(
            "Database unavailable: %s: %s", type(exc).__name__, " ".join(str(exc).split())
        )
        return Response(
            error_body("database_unavailable", "The service is briefly unavailable; retry."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: Django's 500 handler logs it

    if isinstance(exc, exceptions.ValidationError):
        fields = _field_errors(exc.detail)
        non_field = fields.pop("non_field_errors", [])
        if non_field and not fields:
            code, message = non_field[0]["code"], non_field[0]["message"]
        else:
            code, message = "invalid", "Some fields are invalid; see fields."
            if non_field:
                fields["non_field_errors"] = non_field
        response.data = error_body(code, message, fields)
        return response

    detail = getattr(exc, "detail", None)
    if isinstance(detail, dict):  # simplejwt's InvalidToken carries a dict
        code = str(detail.get("code") or getattr(exc, "default_code", "error"))
        message = str(detail.get("detail") or exc)
    else:
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        message = str(detail) if detail is not None else str(exc)
    extra: dict[str, Any] = {}
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        extra["retry_after"] = int(exc.wait + 0.999)
    response.data = error_body(str(code), message, **extra)
    return response


def _api_or_html(status_code: int, code: str, message: str, html_view):
    """JSON in the one error format under /api/; Django's own pages for the admin."""

    def view(request, exception=None):
        if request.path.startswith("/api/") or request.path.startswith("/healthz"):
            return JsonResponse(error_body(code, message), status=status_code)
        if status_code == 500:
            return html_view(request)
        return html_view(request, exception)

    return view


handler400 = _api_or_html(400, "bad_request", "The request was malformed.", defaults.bad_request)
handler403 = _api_or_html(
    403, "permission_denied", "You may not do this.", defaults.permission_denied
)
handler404 = _api_or_html(
    404, "not_found", "There is nothing at this address.", defaults.page_not_found
)
handler500 = _api_or_html(
    500,
    "server_error",
    "Something went wrong on our side; it has been logged.",
    defaults.server_error,
)
