from __future__ import annotations

import re

from django.conf import settings
from django.http import HttpRequest
from rest_framework.pagination import LimitOffsetPagination


def client_ip(request: HttpRequest) -> str | None:
    """The caller's address. X-Forwarded-For is only believed behind a proxy we run (a setting)."""
    if settings.USE_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        first = forwarded.split(",")[0].strip()
        if first:
            return first
    return request.META.get("REMOTE_ADDR") or None


def content_length(request: HttpRequest) -> int:
    """The body's declared length; 0 when absent or malformed (a view still bounds what it reads)."""
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """limit/offset pages whose numbers are what the schema says, and stay within what the
    database takes.

    DRF's LimitOffsetPagination reads a limit or offset it cannot parse (`?offset=null`) as the
    default, and passes any positive integer through: ?limit=99999999999999999999 became LIMIT
    99999999999999999999, which PostgreSQL refuses ("bigint out of range") as a server error.
    Here a value that is not a whole number in range is refused (400 invalid_page); a limit above
    max_limit is read as max_limit; an offset past MAX_OFFSET is past the end of any list we keep,
    and answers an empty page as any offset past the end does.
    """

    max_limit = 1000
    MAX_OFFSET = 10**15
    DIGITS = re.compile(r"[0-9]{1,30}")

    def _number(self, request, name: str, *, minimum: int) -> int | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        if not self.DIGITS.fullmatch(raw) or int(raw) < minimum:
            from core.errors import DomainError  # core.errors imports DRF, which imports this

            raise DomainError.for_field(
                name, f"{name} must be a whole number of at least {minimum}.", code="invalid_page"
            )
        return int(raw)

    def get_limit(self, request) -> int | None:
        limit = self._number(request, self.limit_query_param, minimum=1)
        return self.default_limit if limit is None else min(limit, self.max_limit)

    def get_offset(self, request) -> int:
        offset = self._number(request, self.offset_query_param, minimum=0)
        return 0 if offset is None else min(offset, self.MAX_OFFSET)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit},
            self.offset_query_param: {"minimum": 0},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters
