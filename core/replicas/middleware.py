"""The middleware that opens the router's scope for each request: MIDDLEWARE names it (as
core.replicas.ReplicaReadMiddleware)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.core.exceptions import MiddlewareNotUsed
from django.db import DEFAULT_DB_ALIAS, connections
from django.db import Error as DatabaseError
from django.http import HttpRequest, HttpResponse

from core.replicas.lag import replica_aliases, replica_unusable
from core.replicas.scope import ReadScope, read_scope, writer_mark, writer_recent, writes_seen

logger = logging.getLogger(__name__)

SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")

# Consumer read views (URL names) whose GET and HEAD may read a replica: what a consumer reads
# most, where a few seconds of lag harm nobody. Not here: a top-up's status (the payment page
# polls it for the money it waits on), devices and preferences (settings pages), the admin,
# partners' and the head-end's APIs, and every write.
REPLICA_READ_URL_NAMES = frozenset(
    {
        # meters: usage, patterns, exports
        "meters",
        "meter-detail",
        "meter-consumption",
        "meter-pattern",
        "meter-export",
        # billing: balance, statements, bills, the top-up history, the run-out forecast
        "account-balance",
        "account-statement",
        "account-bills",
        "account-topups",
        "account-forecast",
        # notifications: the inbox (not one alert by id: a push tapped the moment it arrives
        # names a row a standby may not have yet)
        "notifications",
        "notifications-unread-count",
        "notification-categories",
        # outages
        "outages",
        "outage-detail",
        "compensations",
        # insight
        "account-bill-forecast",
        "account-bill-comparison",
        "account-time-of-day",
        "account-demand",
    }
)


class ReplicaReadMiddleware:
    """Opens the router's scope for each request.

    1. Before the view: a GET or HEAD of a consumer read view, by a user named in a valid bearer
       token (DRF authenticates JWTs later, in the view; the token's signature is checked here)
       who wrote nothing lately, is replica-eligible.
    2. During it: a write on the primary sends the rest of the request's reads there too.
    3. After it: a request that was not safe, or that wrote, marks its user as a recent writer
       for READ_YOUR_WRITES_SECONDS.
    4. A database error in the view while it read a replica takes that replica out for a while.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        if not replica_aliases():
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        scope = ReadScope()
        request.replica_scope = scope  # what the router was told, for logs and tests
        token = read_scope.set(scope)
        try:
            with connections[DEFAULT_DB_ALIAS].execute_wrapper(writes_seen):
                response = self.get_response(request)
            if scope.replica and response.status_code == 503:
                # DRF answered a database error while the request read a standby
                # (core.errors): the exception never reaches process_exception.
                logger.warning("A read on replica %s failed: answered 503", scope.replica)
                replica_unusable(scope.replica)
        finally:
            read_scope.reset(token)
            if scope.wrote or request.method not in SAFE_METHODS:
                user_id = scope.user_id or _request_user_id(request)
                if user_id is not None:
                    writer_mark(user_id=user_id)
        return response

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> None:
        scope = read_scope.get()
        match = request.resolver_match
        if (
            scope is None
            or request.method not in ("GET", "HEAD")
            or match is None
            or match.url_name not in REPLICA_READ_URL_NAMES
        ):
            return
        scope.user_id = _bearer_user_id(request)
        if scope.user_id is not None and not writer_recent(user_id=scope.user_id):
            scope.eligible = True

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        scope = read_scope.get()
        if scope is not None and scope.replica and isinstance(exception, DatabaseError):
            logger.warning("A read on replica %s failed: %s", scope.replica, exception)
            replica_unusable(scope.replica)


def _bearer_user_id(request: HttpRequest) -> str | None:
    """The user a valid access token names, without reading the database."""
    from rest_framework_simplejwt.authentication import JWTAuthentication
    from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
    from rest_framework_simplejwt.settings import api_settings

    authentication = JWTAuthentication()
    header = authentication.get_header(request)
    raw = authentication.get_raw_token(header) if header is not None else None
    if raw is None:
        return None
    try:
        token = authentication.get_validated_token(raw)
    except (InvalidToken, TokenError):
        return None  # DRF answers 401, from the primary
    user_id = token.get(api_settings.USER_ID_CLAIM)
    return None if user_id is None else str(user_id)


def _request_user_id(request: HttpRequest) -> str | None:
    # DRF sets request.user on the Django request when it authenticates a JWT; the admin's
    # session user is there from AuthenticationMiddleware.
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return str(user.pk)
