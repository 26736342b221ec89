from __future__ import annotations

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


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """limit/offset pages whose numbers stay within what the database takes.

    DRF's LimitOffsetPagination passes any positive integer through: ?limit=99999999999999999999
    becomes LIMIT 99999999999999999999, which PostgreSQL refuses ("bigint out of range") as a
    server error. A limit above MAX_LIMIT is read as MAX_LIMIT; an offset past MAX_OFFSET is past
    the end of any list we keep, and answers an empty page as any offset past the end does.
    """

    max_limit = 1000
    MAX_OFFSET = 10**15

    def get_offset(self, request) -> int:
        return min(super().get_offset(request), self.MAX_OFFSET)
