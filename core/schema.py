"""The OpenAPI schema is the contract: every refusal an operation can answer is documented with the
one error format (core/errors.py), beside its typed answers.

Most refusals follow from what an operation is, and are added here to every operation:
- 400 when it reads a body or query parameters (they may be invalid);
- 401 and 403 when it authenticates its caller (a missing or bad credential; one that may not);
- 404 when its path names something by id (it may not exist, or not be the caller's);
- 413 and 415 when it reads a body (too large; a media type it does not read);
- 429 when a DRF throttle guards it.
What only the view knows (409 for a refusal by state, 410, 429 from a service's own budget, 404 for
an object named in the body) it says with `@refuses(409, ...)` on the method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.urls import register_converter
from django.urls.converters import get_converters
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

# A moment a client names in a query: a local date (2026-11-01, its local midnight) or an ISO time
# (without an offset: local). What a pattern cannot say (a real date, a sane year, an order) the
# parameter's description says.
# Years 2000 to 2100-01-01 (core.timebuckets: EARLIEST_DATE .. LATEST_DATE), months and days and
# hours in range; a day past its month's end (02-30) only the description can rule out.
MOMENT_PATTERN = (
    r"^(20\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])|2100-01-01)"
    r"(T([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?)?$"
)

# The largest id a path takes: 18 digits stay inside a 64-bit integer column on every backend.
ID_MAX = 10**18 - 1


class IdConverter:
    """`<id:meter_id>`: a database id, 1 to 18 digits. A longer one names nothing a column can
    hold, and is answered 404 like any other unknown id, never an overflow in the database."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


def id_converter_register() -> None:
    """Called by each app's urls.py that names ids (once is enough; again is harmless)."""
    if "id" not in get_converters():
        register_converter(IdConverter, "id")


# Why each status is answered, as a client reads it in the schema.
ERROR_DESCRIPTIONS = {
    400: "The input is invalid: `error.code` says why, `error.fields` which field.",
    401: "No valid credential: missing, expired, revoked or of the wrong kind.",
    403: "The credential may not do this.",
    404: "Nothing with this id, or nothing of the caller's.",
    409: "Refused in the current state (a closed account, a request already settled, ...).",
    410: "Gone: used or expired for good.",
    413: "The request body is larger than this operation accepts.",
    415: "A media type this operation does not read.",
    429: "Too many requests: `error.retry_after` (and the Retry-After header) says when to retry.",
}


class FieldError(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ErrorDetail(serializers.Serializer):
    """Some refusals carry more keys (`retry_after`, an ingest batch's `rejections`)."""

    code = serializers.CharField(help_text="Machine-readable: what to do differs by code.")
    message = serializers.CharField(help_text="For people, in English.")
    fields = serializers.DictField(
        child=FieldError(many=True), help_text="By field (dotted paths into the body)."
    )
    retry_after = serializers.IntegerField(
        required=False, help_text="Seconds, on a 429 (also in the Retry-After header)."
    )


class Error(serializers.Serializer):
    error = ErrorDetail()


def idempotency_key_header(description: str) -> OpenApiParameter:
    """The required Idempotency-Key header of a POST a client may retry (billing.payments.idempotent)."""
    return OpenApiParameter(
        "Idempotency-Key",
        {"type": "string", "minLength": 1, "maxLength": 100},
        location=OpenApiParameter.HEADER,
        required=True,
        description=description,
    )


def refuses(*statuses: int) -> Callable:
    """Document refusals a view raises that the schema cannot infer: `@refuses(409, 429)`."""

    def mark(method: Callable) -> Callable:
        method.refuses = (*getattr(method, "refuses", ()), *statuses)
        return method

    return mark


class ApiSchema(AutoSchema):
    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        for status in sorted(self._error_statuses(operation)):
            if str(status) not in responses:
                answer = OpenApiResponse(Error, description=ERROR_DESCRIPTIONS[status])
                responses[str(status)] = self._get_response_for_code(
                    answer, str(status), media_types=["application/json"]
                )
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _error_statuses(self, operation: dict[str, Any]) -> set[int]:
        from rest_framework_simplejwt.views import TokenViewBase

        statuses: set[int] = set()
        parameters = operation.get("parameters", [])
        has_body = "requestBody" in operation
        if has_body or any(p["in"] in ("query", "header") for p in parameters):
            statuses.add(400)
        if has_body:
            statuses |= {413, 415}
        if any(p["in"] == "path" for p in parameters):
            statuses.add(404)
        # An operation open to all answers 401 too when it reads a credential it may refuse
        # (simplejwt's token views refuse a bad refresh token that way).
        if self.view.get_authenticators() or isinstance(self.view, TokenViewBase):
            statuses.add(401)
        if {} not in (operation.get("security") or [{}]):
            statuses |= {401, 403}
        if getattr(self.view, "throttle_classes", None):
            statuses.add(429)
        handler = getattr(self.view, self.method.lower(), None)
        statuses.update(getattr(handler, "refuses", ()))
        return statuses
